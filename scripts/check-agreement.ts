// Argmax agreement between the packed-ternary kernels runtime and the fake-quantized tfjs student, at every
// prompt position of a GLUE dev set (issue: >= 99.5% on SST-2 dev).
//   node --import tsx scripts/check-agreement.ts out/sst2-tiny runs/sst2-tiny/distill/final [task]
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { encodeExample, readExamples } from '@bitdistill/data';
import { defaultDataFile, readModelBlock, taskForModel } from '@bitdistill/eval';
import { loadModel } from '@bitdistill/model';
import { restoreStudent } from '@bitdistill/quant';
import { TernaryRuntime } from '@bitdistill/runtime';

const [exportDir, checkpoint, taskName = 'sst2'] = process.argv.slice(2);
if (exportDir === undefined || checkpoint === undefined) {
  console.error('usage: node --import tsx scripts/check-agreement.ts EXPORT_DIR CHECKPOINT_DIR [TASK]');
  process.exit(2);
}
await initBackend('wasm');
const rt = TernaryRuntime.load(exportDir);
const student = loadModel(checkpoint, { trainable: false }).model;
restoreStudent(student);
const block = readModelBlock(exportDir);
const task = taskForModel(taskName, block);
const maxLen = typeof block?.['maxSeqLen'] === 'number' ? block['maxSeqLen'] : 512;
const examples = await readExamples(defaultDataFile(task, 'dev'), task);
const V = rt.config.vocabSize;
let agree = 0;
let positions = 0;
let lastAgree = 0;
for (const ex of examples) {
  const ids = encodeExample(rt.tokenizer, task, ex).promptIds.slice(-maxLen);
  const a = rt.forward(ids, { allPositions: true });
  const b = tf.tidy(() => student.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).logits.dataSync());
  for (let t = 0; t < ids.length; t++) {
    let am = 0;
    let bm = 0;
    for (let v = 1; v < V; v++) {
      if ((a[t * V + v] as number) > (a[t * V + am] as number)) am = v;
      if ((b[t * V + v] as number) > (b[t * V + bm] as number)) bm = v;
    }
    if (am === bm) {
      agree++;
      if (t === ids.length - 1) lastAgree++;
    }
    positions++;
  }
}
console.log(
  JSON.stringify({
    exportDir,
    checkpoint,
    task: task.name,
    examples: examples.length,
    positions,
    agree,
    fraction: agree / positions,
    lastPositionAgree: lastAgree,
  }),
);
