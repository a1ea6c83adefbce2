import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { AdamW } from '@bitdistill/trainer';
import { clipByGlobalNorm, clipScale } from '../src/clip.ts';
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

  it('AdamW on the native engine updates every parameter in one kernel call: several shapes, skipped and frozen ones, against the scalar reference', async () => {
    const info = await initBackend('native');
    try {
      const rng = new Rng(5);
      const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
      const shapes: Record<string, number[]> = { a: [7, 13], b: [64], c: [3, 5, 11], frozen: [4], nograd: [6] };
      const params = new Map<string, tf.Variable>();
      const ref = new Map<string, { p: Float64Array; m: Float64Array; v: Float64Array }>();
      for (const [name, shape] of Object.entries(shapes)) {
        const n = shape.reduce((x, y) => x * y, 1);
        const p0 = Float64Array.from({ length: n }, () => rng.normal());
        params.set(name, tf.variable(tf.tensor(Float32Array.from(p0), shape), name !== 'frozen'));
        ref.set(name, { p: p0, m: new Float64Array(n), v: new Float64Array(n) });
      }
      const opt = new AdamW(o);
      const calls: string[] = [];
      const e = tf.engine() as unknown as { runKernel: (name: string, ...rest: unknown[]) => unknown };
      const runKernel = e.runKernel;
      e.runKernel = function (this: unknown, name: string, ...rest: unknown[]) {
        calls.push(name);
        return runKernel.call(this, name, ...rest);
      };
      try {
        for (let s = 1; s <= 3; s++) {
          const grads: Record<string, tf.Tensor> = {};
          for (const name of ['a', 'b', 'c', 'frozen']) {
            const r = ref.get(name) as { p: Float64Array; m: Float64Array; v: Float64Array };
            const g = Float64Array.from({ length: r.p.length }, () => rng.normal());
            grads[name] = tf.tensor(Float32Array.from(g), shapes[name]);
            if (name !== 'frozen')
              adamwRef(
                r.p,
                g.map((x) => x * 0.25),
                r.m,
                r.v,
                s,
                1e-2,
                o,
              );
          }
          calls.length = 0;
          opt.apply(params, grads, 1e-2, 0.25);
          expect(
            calls.filter((c) => c === 'BitDistillAdamW'),
            `step ${s}: one update kernel call for the three parameters`,
          ).to.have.length(1);
          tf.dispose(Object.values(grads));
        }
      } finally {
        e.runKernel = runKernel;
      }
      expect(info.name).to.equal('native');
      for (const [name, r] of ref) {
        const got = (params.get(name) as tf.Variable).dataSync();
        for (let i = 0; i < r.p.length; i++) expect(got[i], `${name}[${i}]`).to.be.closeTo(r.p[i] as number, 1e-5);
      }
      expect(opt.m.has('frozen') || opt.m.has('nograd'), 'no moments for frozen or gradient-less parameters').to.equal(false);
      opt.dispose();
      for (const p of params.values()) p.dispose();
    } finally {
      await initBackend('cpu');
    }
  });

  it('AdamW on the native engine groups large parameters into calls of at most 64 MiB of new parameters (no second copy of the model)', async () => {
    await initBackend('native');
    try {
      const o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
      const n = 9 * 2 ** 20; // 36 MiB each: two do not fit one group
      const params = new Map<string, tf.Variable>([
        ['a', tf.variable(tf.fill([n], 1), true)],
        ['b', tf.variable(tf.fill([n], 2), true)],
        ['c', tf.variable(tf.fill([10], 3), true)],
      ]);
      const grads: Record<string, tf.Tensor> = { a: tf.fill([n], 0.5), b: tf.fill([n], -0.5), c: tf.fill([10], 0.5) };
      const opt = new AdamW(o);
      const calls: number[] = [];
      const e = tf.engine() as unknown as { runKernel: (name: string, inputs: unknown, ...rest: unknown[]) => unknown };
      const runKernel = e.runKernel;
      e.runKernel = function (this: unknown, name: string, inputs: unknown, ...rest: unknown[]) {
        if (name === 'BitDistillAdamW') calls.push((inputs as unknown[]).length / 4);
        return runKernel.call(this, name, inputs, ...rest);
      };
      try {
        opt.apply(params, grads, 1e-2);
      } finally {
        e.runKernel = runKernel;
      }
      expect(calls, 'parameters per call').to.deep.equal([1, 2]);
      // First step of Adam: each element moves by lr * sign(g) (m / sqrt(v) = g / |g| after bias correction).
      for (const [name, want] of [
        ['a', 1 - 1e-2],
        ['b', 2 + 1e-2],
        ['c', 3 - 1e-2],
      ] as const) {
        const got = (params.get(name) as tf.Variable).dataSync();
        for (const i of [0, got.length - 1]) expect(got[i], `${name}[${i}]`).to.be.closeTo(want, 1e-6);
      }
      opt.dispose();
      tf.dispose([...params.values(), ...Object.values(grads)]);
    } finally {
      await initBackend('cpu');
    }
  });

  it('clipScale on the native engine (one squared-sums kernel) matches a float64 norm and the tf-ops path on the cpu backend', async () => {
    const rng = new Rng(8);
    const data = [[300, 257], [64], [5, 7, 3], [70000]].map((shape) => ({
      shape,
      v: Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => rng.normal()),
    }));
    let sq = 0;
    for (const { v } of data) for (const x of v) sq += x * x;
    const want = Math.sqrt(sq) / 4;
    const run = async (): Promise<{ norm: number; scale: number }> => {
      const grads: Record<string, tf.Tensor> = {};
      data.forEach(({ shape, v }, i) => (grads[`g${i}`] = tf.tensor(v, shape)));
      const r = await clipScale(grads, 1, 4);
      tf.dispose(Object.values(grads));
      return r;
    };
    await initBackend('native');
    let native: { norm: number; scale: number };
    try {
      expect(tf.getKernel('BitDistillSquaredSums', tf.getBackend())).to.not.equal(undefined);
      native = await run();
    } finally {
      await initBackend('cpu');
    }
    const cpu = await run();
    expect(native.norm).to.be.closeTo(want, want * 1e-6);
    expect(cpu.norm).to.be.closeTo(want, want * 1e-5);
    expect(native.scale).to.be.closeTo(1 / (want + 1e-6) / 4, 1e-9);
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
