import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { encodeExample, getTask, readExamples } from '@bitdistill/data';
import { loadModel } from '@bitdistill/model';
import { restoreStudent } from '@bitdistill/quant';
import { TernaryRuntime } from '@bitdistill/runtime';
await initBackend('wasm');
const rt = TernaryRuntime.load('/tmp/dbg-exp');
const student = loadModel('/tmp/dbg-ckpt', { trainable: false }).model; restoreStudent(student);
const task = getTask('sst2');
const [ex] = await readExamples('datasets/glue/SST-2/dev.tsv', task, { limit: 1 });
const ids = encodeExample(rt.tokenizer, task, ex!).promptIds.slice(0, 20);
console.log(ids);
const V = 512;
const tfl = (n: number) => tf.tidy(() => student.forward(tf.tensor2d([ids.slice(0, n)], [1, n], 'int32')).logits.dataSync());
const a20 = rt.forward(ids, { allPositions: true });
const a9 = rt.forward(ids.slice(0, 9), { allPositions: true });
const b20 = tfl(20); const b9 = tfl(9);
const md = (x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number) => { let m = 0; for (let v = 0; v < V; v++) m = Math.max(m, Math.abs(x[xo + v]! - y[yo + v]!)); return m.toFixed(4); };
console.log('rt9 vs rt20 @8', md(a9, 8 * V, a20, 8 * V), 'tf9 vs tf20 @8', md(b9, 8 * V, b20, 8 * V), 'rt9 vs tf9 @8', md(a9, 8 * V, b9, 8 * V), '@7', md(a9, 7 * V, b9, 7 * V));
console.log(ids.slice(0, 10));
const badTok: string[] = [];
for (let id = 0; id < 512; id++) {
  const a = rt.forward([1, id], { allPositions: true });
  const b = tf.tidy(() => student.forward(tf.tensor2d([[1, id]], [1, 2], 'int32')).logits.dataSync());
  const m = Number(md(a, V, b, V));
  if (m > 0.01) badTok.push(`${id}:${m}`);
}
console.log('tokens with diff', badTok.length, badTok.slice(0, 20).join(' '));
