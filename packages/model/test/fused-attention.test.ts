// The fused causal attention kernel of the native engine (RoPE, scores, causal softmax, weighted sum, forward
// and backward in one call each) against the op-by-op form written out here with tf ops (the same formulas as
// Decoder's unfused path: rotate_half RoPE, scale * q k^T + a -1e9 mask, softmax, P v), on random shapes with
// GQA and odd sizes; then tiny Qwen3 (GQA, q/k-norm) with the fused ops on and off.
// Tolerance: float32 sums in different orders (blocked GEMM vs tf matMul, sequential vs split softmax sums):
// |fused - twin| <= 2e-5 (1 + |twin|) for y, and 2e-5 of max|twin| for the gradients.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { nativeStatus } from '@bitdistill/kernels-cpu/engine';
import { fusedKernel, loadModel, setFusedOps, type Decoder } from '@bitdistill/model';
import { ATTENTION_KERNEL, fusedAttention } from '../src/ops.ts';

function ropeTables(T: number, d: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const cos = new Float32Array(T * d);
  const sin = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < d / 2; i++) {
      const a = t / Math.pow(theta, (2 * i) / d);
      cos[t * d + i] = cos[t * d + i + d / 2] = Math.cos(a);
      sin[t * d + i] = sin[t * d + i + d / 2] = Math.sin(a);
    }
  }
  return { cos: tf.tensor2d(cos, [T, d]), sin: tf.tensor2d(sin, [T, d]) };
}

/** The op-by-op twin: q [B, T, H, d], k, v [B, T, Hkv, d] -> [B, T, H, d]. */
function twin(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, scale: number): tf.Tensor4D {
  const [B, T, H, d] = q.shape;
  const Hkv = k.shape[2];
  const r = H / Hkv;
  const rope = (x: tf.Tensor4D) => {
    const [x1, x2] = tf.split(x, 2, -1) as [tf.Tensor4D, tf.Tensor4D];
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin)) as tf.Tensor4D;
  };
  const qh = rope(tf.transpose(q, [0, 2, 1, 3]) as tf.Tensor4D); // [B, H, T, d]
  const kh = rope(tf.transpose(k, [0, 2, 1, 3]) as tf.Tensor4D);
  const vh = tf.transpose(v, [0, 2, 1, 3]);
  const mask = tf.tensor2d(
    Float32Array.from({ length: T * T }, (_, i) => (i % T > Math.floor(i / T) ? -1e9 : 0)),
    [T, T],
  );
  const raw = tf.reshape(tf.matMul(tf.reshape(qh, [B * Hkv, r * T, d]), tf.reshape(kh, [B * Hkv, T, d]), false, true), [B * H, T, T]);
  const att = tf.softmax(tf.add(tf.mul(raw, scale), mask));
  const y = tf.matMul(tf.reshape(att, [B * Hkv, r * T, T]), tf.reshape(vh, [B * Hkv, T, d]));
  return tf.transpose(tf.reshape(y, [B, H, T, d]), [0, 2, 1, 3]) as tf.Tensor4D;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

describe('fused causal attention (native engine)', () => {
  before(async function () {
    await initBackend('native');
    if (!nativeStatus().native || !fusedKernel(ATTENTION_KERNEL)) this.skip();
  });
  after(() => setFusedOps(true));

  const shapes: [number, number, number, number, number][] = [
    [1, 1, 1, 1, 2],
    [2, 7, 4, 2, 6],
    [3, 33, 6, 3, 16],
    [2, 64, 8, 2, 64],
    [1, 130, 2, 1, 128],
  ];
  for (const [B, T, H, Hkv, d] of shapes) {
    it(`B=${B} T=${T} H=${H} Hkv=${Hkv} d=${d}: value and dq, dk, dv equal the op-by-op twin`, () => {
      const rng = new Rng(B * 1000 + T);
      const rand = (shape: [number, number, number, number]) =>
        tf.tensor(
          Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()),
          shape,
        ) as tf.Tensor4D;
      const [q, k, v, dy] = [rand([B, T, H, d]), rand([B, T, Hkv, d]), rand([B, T, Hkv, d]), rand([B, T, H, d])];
      const { cos, sin } = ropeTables(T, d, 10000);
      const scale = Math.fround(1 / Math.sqrt(d));
      const run = (f: typeof twin) =>
        tf.tidy(() => {
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => f(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, cos, sin, scale))(
            [q, k, v],
            dy,
          );
          return [f(q, k, v, cos, sin, scale), ...g].map((t) => t.dataSync() as Float32Array);
        });
      const fused = run(fusedAttention);
      const ref = run(twin);
      ['y', 'dq', 'dk', 'dv'].forEach((name, j) => {
        const a = fused[j] as Float32Array;
        const b = ref[j] as Float32Array;
        const gmax = maxAbs(b);
        for (let i = 0; i < b.length; i++) {
          const tol = j === 0 ? 2e-5 * (1 + Math.abs(b[i] as number)) : 2e-5 * gmax + 1e-12;
          if (!(Math.abs((a[i] as number) - (b[i] as number)) <= tol)) expect.fail(`${name}[${i}]: fused ${a[i]}, twin ${b[i]}, tolerance ${tol}`);
        }
      });
      tf.dispose([q, k, v, dy, cos, sin]);
    });
  }

  it('a captured layer (the relation KD input) runs the fused attention too: captured Q, K, V and every gradient equal the op-by-op path', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    try {
      const r = new Rng(9);
      const ids = tf.tensor2d(
        Int32Array.from({ length: 2 * 11 }, () => r.int(model.config.vocabSize)),
        [2, 11],
        'int32',
      );
      const layer = 1;
      const step = (m: Decoder) =>
        tf.tidy(() => {
          const vars = [...m.params.values()];
          let qkv: Float32Array[] = [];
          const { value, grads } = tf.variableGrads(() => {
            const out = m.forward(ids, { captureLayers: [layer] });
            const c = out.captured.get(layer);
            if (c === undefined) throw new Error('layer not captured');
            qkv = [c.q, c.k, c.v].map((t) => t.dataSync() as Float32Array);
            // Every captured tensor feeds the loss, so its gradient path is exercised as the relation KD's is.
            const extra = tf.addN([c.q, c.k, c.v].map((t, i) => tf.mul(tf.mean(tf.square(t)), i + 1)));
            return tf.add(tf.mean(tf.square(out.logits)), extra) as tf.Scalar;
          }, vars);
          return { loss: value.dataSync()[0] as number, qkv, grads: vars.map((v) => (grads[v.name] as tf.Tensor).dataSync() as Float32Array) };
        });
      setFusedOps(true);
      const fused = step(model);
      setFusedOps(false);
      const plain = step(model);
      setFusedOps(true);
      expect(fused.loss).to.be.closeTo(plain.loss, 1e-5 * Math.abs(plain.loss));
      plain.qkv.forEach((t, i) => {
        const f = fused.qkv[i] as Float32Array;
        expect(f.length).to.equal(t.length);
        const tol = 1e-5 * maxAbs(t) + 1e-12;
        for (let j = 0; j < t.length; j++)
          if (!(Math.abs((f[j] as number) - (t[j] as number)) <= tol)) expect.fail(`captured ${'qkv'[i]} [${j}]: fused ${f[j]}, plain ${t[j]}`);
      });
      plain.grads.forEach((g, i) => {
        const f = fused.grads[i] as Float32Array;
        const tol = 1e-4 * maxAbs(g) + 1e-12;
        for (let j = 0; j < g.length; j++)
          if (!(Math.abs((f[j] as number) - (g[j] as number)) <= tol)) expect.fail(`gradient ${i} [${j}]: fused ${f[j]}, plain ${g[j]}`);
      });
      ids.dispose();
    } finally {
      model.dispose();
    }
  });

  it('tiny Qwen3 (GQA, q/k-norm): loss and every gradient with the fused attention equal the op-by-op path', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    try {
      const r = new Rng(8);
      const ids = tf.tensor2d(
        Int32Array.from({ length: 2 * 13 }, () => r.int(model.config.vocabSize)),
        [2, 13],
        'int32',
      );
      const step = (m: Decoder) =>
        tf.tidy(() => {
          const vars = [...m.params.values()];
          const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(m.forward(ids).logits)) as tf.Scalar, vars);
          return { loss: value.dataSync()[0] as number, grads: vars.map((v) => (grads[v.name] as tf.Tensor).dataSync() as Float32Array) };
        });
      setFusedOps(true);
      const fused = step(model);
      setFusedOps(false);
      const plain = step(model);
      setFusedOps(true);
      expect(fused.loss).to.be.closeTo(plain.loss, 1e-5 * Math.abs(plain.loss));
      plain.grads.forEach((g, i) => {
        const f = fused.grads[i] as Float32Array;
        const tol = 1e-4 * maxAbs(g) + 1e-12;
        for (let j = 0; j < g.length; j++)
          if (!(Math.abs((f[j] as number) - (g[j] as number)) <= tol)) expect.fail(`gradient ${i} [${j}]: fused ${f[j]}, plain ${g[j]}`);
      });
      ids.dispose();
    } finally {
      model.dispose();
    }
  });
});
