/**
 * One training step of a random decoder, measured in unique tensor bytes (what the backend really holds:
 * tf.memory().numBytes counts a clone's shared buffer twice, so this hooks the engine's per-dataId table).
 * Prints one JSON line: the peak of forward + backward above the weights, the gradients it leaves, and the
 * peak of the optimizer update (clipScale + AdamW.apply, as loop.ts runs them) above weights + moments + grads.
 * fit.ts runs this over random shapes and fits memory.ts's coefficients.
 *
 *   node --import tsx scripts/memory/profile-step.ts BACKEND C L H HKV D I V B T MODE
 *   MODE: dense (full-precision model, CE on every row) | student (prepareStudent allnorm) | forward (a frozen
 *         model's forward in a tidy: the teacher / evaluation figure); RECOMPUTE=1 sets Decoder.recompute
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { initDecoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { answerCrossEntropy } from '@bitdistill/losses';
import { AdamW, clipScale } from '@bitdistill/trainer';

const [backend = 'native', C = '64', L = '2', H = '4', Hkv = '2', d = '16', I = '128', V = '512', B = '2', T = '16', mode = 'dense'] = process.argv.slice(2);
await initBackend(backend as never);
const arch = {
  model_type: 'qwen3',
  hidden_size: +C,
  num_hidden_layers: +L,
  num_attention_heads: +H,
  num_key_value_heads: +Hkv,
  head_dim: +d,
  intermediate_size: +I,
  vocab_size: +V,
  tie_word_embeddings: true,
};
const model = initDecoder(arch, 0);
if (mode === 'student') prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean', quantizeActivations: true });
// RECOMPUTE=1: Decoder.recompute (each block's input kept, the block rerun in backward).
if (process.env['RECOMPUTE'] === '1') (model as unknown as { recompute: boolean }).recompute = true;

// Live unique bytes: the engine's tensorInfo table has one entry per data buffer.
const ti = (tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { bytes: number }> } }).state.tensorInfo;
let live = 0;
let peak = 0;
const set = ti.set.bind(ti);
const del = ti.delete.bind(ti);
ti.set = (k: object, v: { bytes: number }) => {
  if (!ti.has(k)) {
    live += v.bytes;
    if (live > peak) peak = live;
  }
  return set(k, v);
};
ti.delete = (k: object) => {
  const v = ti.get(k);
  if (v !== undefined) live -= v.bytes;
  return del(k);
};

const ids = tf.tensor2d(
  Int32Array.from({ length: +B * +T }, (_, i) => (i * 7) % +V),
  [+B, +T],
  'int32',
);
const labels = tf.tensor2d(
  Int32Array.from({ length: +B * +T }, (_, i) => (i * 5) % +V),
  [+B, +T],
  'int32',
);
const mask = tf.ones([+B, +T]);
const MiB = (x: number) => Number((x / 2 ** 20).toFixed(4));
const weightsBytes = [...model.params.values()].reduce((a, v) => a + v.size * 4, 0);
const maxParamBytes = Math.max(...[...model.params.values()].map((v) => v.size * 4));

if (mode === 'forward') {
  const before = live;
  peak = live;
  tf.tidy(() => {
    model.forward(ids);
  });
  console.log(JSON.stringify({ weightsMiB: MiB(weightsBytes), stepMiB: MiB(peak - before), gradsMiB: 0 }));
  process.exit(0);
}

const vars = [...model.params.values()];
const optimizer = new AdamW({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
const step = async () => {
  const before = live;
  peak = live;
  const { value, grads } = tf.variableGrads(() => answerCrossEntropy(model.forward(ids).logits, labels, mask), vars);
  value.dispose();
  const stepPeak = peak - before;
  const gradBytes = live - before;
  const named: Record<string, tf.Tensor> = {};
  for (const [n, v] of model.params) if (grads[v.name] !== undefined) named[n] = grads[v.name] as tf.Tensor;
  const beforeUpdate = live;
  peak = live;
  const { scale } = await clipScale(named, 1e-9); // clipping active, as it usually is early in training
  optimizer.apply(model.params, named, 1e-3, scale);
  tf.dispose(Object.values(named));
  return { stepPeak, gradBytes, updatePeak: peak - beforeUpdate };
};
await step(); // the first update creates the moments
const s = await step();
console.log(
  JSON.stringify({
    weightsMiB: MiB(weightsBytes),
    maxParamMiB: MiB(maxParamBytes),
    stepMiB: MiB(s.stepPeak - s.gradBytes),
    gradsMiB: MiB(s.gradBytes),
    updateMiB: MiB(s.updatePeak),
  }),
);
