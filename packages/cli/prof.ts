import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
await initBackend(process.argv[2] as 'wasm');
const { model } = loadModel('models/stories260K');
if (process.argv[3] === 'student') prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
const ids = tf.tensor2d(Array.from({ length: 32 * 64 }, (_, i) => (i * 7) % 512), [32, 64], 'int32');
const vars = [...model.params.values()];
for (let i = 0; i < 4; i++) {
  const t0 = performance.now();
  tf.tidy(() => { model.forward(ids).logits.dataSync(); });
  const t1 = performance.now();
  tf.tidy(() => { const { grads } = tf.variableGrads(() => tf.mean(model.forward(ids).logits) as tf.Scalar, vars); Object.values(grads)[0]!.dataSync(); });
  const t2 = performance.now();
  console.log(`fwd ${(t1 - t0).toFixed(0)} ms, fwd+bwd ${(t2 - t1).toFixed(0)} ms, tensors ${tf.memory().numTensors}`);
}
const prof = await tf.profile(() => tf.tidy(() => { const { grads } = tf.variableGrads(() => tf.mean(model.forward(ids).logits) as tf.Scalar, vars); return Object.values(grads)[0]!.clone(); }));
const byName = new Map<string, number>();
for (const k of prof.kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + (k.kernelTimeMs as number));
console.log([...byName].sort((a, b) => b[1] - a[1]).slice(0, 12));
