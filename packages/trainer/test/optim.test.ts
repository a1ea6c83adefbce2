import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { AdamW } from '@bitdistill/trainer';
import { clipByGlobalNorm } from '../src/clip.ts';
import { adamwRef } from '../src/adamw.ts';
import { learningRate } from '../src/schedule.ts';

describe('optimizer pieces', () => {
  before(async () => {
    await initBackend('cpu');
  });

  it('AdamW matches the scalar reference over 5 steps, weight decay decoupled', () => {
    const rng = new Rng(11);
    const n = 23;
    const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const p0 = Float64Array.from({ length: n }, () => rng.normal());
    const ref = { p: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
    const params = new Map([['w', tf.variable(tf.tensor1d(Float32Array.from(p0)), true)]]);
    const opt = new AdamW(o);
    for (let s = 1; s <= 5; s++) {
      const g = Float64Array.from({ length: n }, () => rng.normal());
      const lr = 1e-2 * s;
      adamwRef(ref.p, g, ref.m, ref.v, s, lr, o);
      const gt = tf.tensor1d(Float32Array.from(g));
      opt.apply(params, { w: gt }, lr);
      gt.dispose();
    }
    const got = (params.get('w') as tf.Variable).dataSync();
    for (let i = 0; i < n; i++) expect(got[i]).to.be.closeTo(ref.p[i] as number, 1e-5);
    // With a zero gradient, AdamW still shrinks weights by lr * wd (decoupled), unlike Adam + L2.
    const opt2 = new AdamW({ ...o, weightDecay: 0.5 });
    const q = new Map([['q', tf.variable(tf.tensor1d([2]), true)]]);
    opt2.apply(q, { q: tf.tensor1d([0]) }, 0.1);
    expect((q.get('q') as tf.Variable).dataSync()[0]).to.be.closeTo(2 * (1 - 0.05), 1e-6);
    opt.dispose();
    opt2.dispose();
  });

  it('AdamW on the native engine (BitDistillAdamW kernel): the scalar reference with a gradient scale, new parameters from the buffer pool', async () => {
    const info = await initBackend('native');
    try {
      expect(tf.getKernel('BitDistillAdamW', info.name), 'the engine registers the update kernel').to.not.equal(undefined);
      const rng = new Rng(12);
      const n = 1000;
      const o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const p0 = Float64Array.from({ length: n }, () => rng.normal());
      const ref = { p: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) };
      const params = new Map([['w', tf.variable(tf.tensor2d(Float32Array.from(p0), [40, 25]), true)]]);
      const opt = new AdamW(o);
      const pool = (): { hits: number; recycled: number } => (tf.backend() as unknown as { poolStats(): { hits: number; recycled: number } }).poolStats();
      let before = pool();
      for (let s = 1; s <= 4; s++) {
        const g = Float64Array.from({ length: n }, () => rng.normal());
        const scale = 0.5 / s;
        adamwRef(
          ref.p,
          g.map((x) => x * scale),
          ref.m,
          ref.v,
          s,
          1e-2,
          o,
        );
        const gt = tf.tensor2d(Float32Array.from(g), [40, 25]);
        if (s === 2) before = pool();
        opt.apply(params, { w: gt }, 1e-2, scale);
        gt.dispose();
      }
      const after = pool();
      // From the second step on, the old parameter buffer (pool-made) goes back and the next update takes it.
      expect(after.recycled - before.recycled, 'parameter buffers recycled').to.be.at.least(2);
      expect(after.hits - before.hits, 'updates served from the pool').to.be.at.least(2);
      const w = params.get('w') as tf.Variable;
      expect(w.shape).to.deep.equal([40, 25]);
      const got = w.dataSync();
      for (let i = 0; i < n; i++) expect(got[i]).to.be.closeTo(ref.p[i] as number, 1e-5);
      const m = (opt.m.get('w') as tf.Variable).dataSync();
      for (let i = 0; i < n; i += 97) expect(m[i]).to.be.closeTo(ref.m[i] as number, 1e-6);
      opt.dispose();
      w.dispose();
    } finally {
      await initBackend('cpu');
    }
  });

  it('AdamW state round-trips through state()/load()', async () => {
    const o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 };
    const params = new Map([['w', tf.variable(tf.tensor1d([1, 2, 3]), true)]]);
    const a = new AdamW(o);
    a.apply(params, { w: tf.tensor1d([0.1, -0.2, 0.3]) }, 0.01);
    const st = await a.state();
    const b = new AdamW(o);
    b.load(st.step, st.tensors);
    expect(b.step).to.equal(1);
    expect([...(b.m.get('w') as tf.Variable).dataSync()]).to.deep.equal([...(a.m.get('w') as tf.Variable).dataSync()]);
    a.dispose();
    b.dispose();
  });

  it('schedules: warmup, linear, cosine, wsd, constant', () => {
    const base = { peakLr: 1, totalSteps: 100, warmupSteps: 10 };
    expect(learningRate({ ...base, kind: 'linear' }, 0)).to.be.closeTo(0.1, 1e-12);
    expect(learningRate({ ...base, kind: 'linear' }, 9)).to.be.closeTo(1, 1e-12);
    expect(learningRate({ ...base, kind: 'linear' }, 55)).to.be.closeTo(0.5, 1e-12);
    expect(learningRate({ ...base, kind: 'linear' }, 100)).to.equal(0);
    expect(learningRate({ ...base, kind: 'cosine' }, 55)).to.be.closeTo(0.5, 1e-12);
    expect(learningRate({ ...base, kind: 'cosine' }, 10)).to.be.closeTo(1, 1e-12);
    expect(learningRate({ ...base, kind: 'wsd', decayRatio: 0.2 }, 79)).to.equal(1);
    expect(learningRate({ ...base, kind: 'wsd', decayRatio: 0.2 }, 90)).to.be.closeTo(0.5, 1e-12);
    expect(learningRate({ ...base, kind: 'constant' }, 99)).to.equal(1);
  });

  it('clipByGlobalNorm scales to the max norm and reports the norm before clipping', () => {
    const g = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
    const { grads, norm } = clipByGlobalNorm(g, 1);
    expect(norm).to.be.closeTo(5, 1e-6);
    expect((grads['a'] as tf.Tensor).dataSync()[0]).to.be.closeTo(0.6, 1e-5);
    expect((grads['b'] as tf.Tensor).dataSync()[1]).to.be.closeTo(0.8, 1e-5);
    const same = clipByGlobalNorm(g, 10);
    expect(same.grads).to.equal(g);
  });
});
