// Scratch: unique tensor bytes at the peak of fusedHeadLoss (CE, optionally + KD) forward+backward.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { fusedHeadLoss } from '@bitdistill/losses';

const [N = '256', C = '64', V = '4096', r = '64', kd = '0'] = process.argv.slice(2);
await initBackend((process.env['BK'] ?? 'native') as never);
const eng = tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { bytes: number }> } };
const ti = eng.state.tensorInfo;
let liveBytes = 0;
let peak = 0;
const origSet = ti.set.bind(ti);
const origDel = ti.delete.bind(ti);
ti.set = (k: object, v: { bytes: number }) => {
  if (!ti.has(k)) {
    liveBytes += v.bytes;
    if (liveBytes > peak) peak = liveBytes;
  }
  return origSet(k, v);
};
ti.delete = (k: object) => {
  const v = ti.get(k);
  if (v !== undefined) liveBytes -= v.bytes;
  return origDel(k);
};
const h = tf.variable(tf.randomNormal([+N, +C]));
const w = tf.variable(tf.randomNormal([+V, +C], 0, 0.02));
const th = tf.randomNormal([+N, +C]);
const tw = tf.randomNormal([+V, +C], 0, 0.02);
const labels = tf.tensor1d(
  Int32Array.from({ length: +N }, (_, i) => i % +V),
  'int32',
);
const mask = tf.ones([+N]);
const live0 = liveBytes;
peak = live0;
const r1 = tf.variableGrads(
  () =>
    fusedHeadLoss(h, w, { ce: { labels, mask }, ...(kd === '1' ? { kd: { teacherHidden: th, teacherWeight: tw, mask, temperature: 5 } } : {}), chunkRows: +r })
      .loss,
  [h, w],
);
const grads = liveBytes - live0;
console.log(JSON.stringify({ N: +N, C: +C, V: +V, r: +r, kd: +kd, peakAboveMiB: (peak - live0) / 2 ** 20, gradsMiB: grads / 2 ** 20 }));
tf.dispose([r1.value, ...Object.values(r1.grads)]);
