// Scratch: unique tensor bytes at the peak of attentionRelationKd forward+backward.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { attentionRelationKd } from '@bitdistill/losses';

const [B = '2', H = '4', Hkv = '2', T = '32', d = '16', R = '4'] = process.argv.slice(2);
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
const mk = (h: string) => tf.variable(tf.randomNormal([+B, +h, +T, +d]));
const s = { q: mk(H), k: mk(Hkv), v: mk(Hkv) };
const t = { q: tf.randomNormal([+B, +H, +T, +d]), k: tf.randomNormal([+B, +Hkv, +T, +d]), v: tf.randomNormal([+B, +Hkv, +T, +d]) };
const live0 = liveBytes;
peak = live0;
tf.variableGrads(() => attentionRelationKd(t, s, { relationHeads: +R, relation: 'cosine' }), [s.q, s.k, s.v]);
console.log(
  JSON.stringify({
    B: +B,
    H: +H,
    Hkv: +Hkv,
    T: +T,
    d: +d,
    R: +R,
    peakAboveMiB: (peak - live0) / 2 ** 20,
    relMiB: (+B * +R * +T * +T * 4) / 2 ** 20,
    qkvMiB: (+B * +T * (+H + 2 * +Hkv) * +d * 4) / 2 ** 20,
  }),
);
