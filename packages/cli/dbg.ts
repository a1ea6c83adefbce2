import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { encodeExample, getTask, readExamples } from '@bitdistill/data';
import { loadModel, saveModel } from '@bitdistill/model';
import { prepareStudent, restoreStudent } from '@bitdistill/quant';
import { exportTernary } from '@bitdistill/export';
import { TernaryRuntime } from '@bitdistill/runtime';
await initBackend('wasm');
const { model } = loadModel('models/stories260K');
prepareStudent(model, { subln: (process.env.SUBLN ?? 'none') as 'none', weightQuant: 'absmean' });
await saveModel(model, '/tmp/dbg-ckpt', { tokenizerFrom: 'models/stories260K' });
exportTernary({ from: '/tmp/dbg-ckpt', out: '/tmp/dbg-exp' });
const rt = TernaryRuntime.load('/tmp/dbg-exp');
const student = loadModel('/tmp/dbg-ckpt', { trainable: false }).model; restoreStudent(student);
const task = getTask('sst2');
const examples = await readExamples('datasets/glue/SST-2/dev.tsv', task, { limit: 10 });
for (const ex of examples) {
  const ids = encodeExample(rt.tokenizer, task, ex).promptIds.slice(0, 64);
  const a = rt.forward(ids, { allPositions: true });
  const b = tf.tidy(() => student.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).logits.dataSync());
  const V = 512; const bad: string[] = [];
  for (let t = 0; t < ids.length; t++) { let m = 0; for (let v = 0; v < V; v++) m = Math.max(m, Math.abs(a[t*V+v]! - b[t*V+v]!)); if (m > 0.05) bad.push(`${t}:${m.toFixed(2)}`); }
  console.log(ids.length, bad.join(' '));
}
