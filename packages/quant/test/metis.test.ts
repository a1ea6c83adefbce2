// Metis (packages/quant/src/metis.ts, spectral.ts) against independent references: closed-form eigenvalues and
// matrices built from known orthonormal bases (DCT-II columns) and known singular values, float64 scalar loops for
// the projection, the spectral learning-rate rule and the dual-range regularizer, central finite differences for
// the regularizer's gradient. None of the expected numbers comes from the code under test.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import type { GemmFormat } from '@bitdistill/config';
import { Rng, silentLogger } from '@bitdistill/core';
import { loadModel, type Decoder } from '@bitdistill/model';
import { LOWBIT_FORMATS, type LowBitFormat } from '../src/lowbit.ts';
import {
  applyLowBitGemm,
  applyMetis,
  dualRange,
  fakeQuantGemmOperand,
  lowBitLinear,
  metisLinear,
  metisRank,
  orthonormalColumns,
  randomizedSvd,
  symmetricEigen,
  type MetisSettings,
} from '../src/index.ts';

/** Column j of the orthonormal DCT-II basis of R^n (entry i): an orthonormal set known in closed form. */
function dct(n: number, j: number, i: number): number {
  return j === 0 ? 1 / Math.sqrt(n) : Math.sqrt(2 / n) * Math.cos((Math.PI * (i + 0.5) * j) / n);
}

/** sum_j sigma_j a_j b_j^T with a_j, b_j DCT columns of R^m and R^n (distinct frequencies, so orthonormal). */
function planted(m: number, n: number, sigma: readonly number[]): Float32Array {
  const w = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let c = 0; c < n; c++) {
      let acc = 0;
      sigma.forEach((s, j) => (acc += s * dct(m, j, i) * dct(n, j + 1, c)));
      w[i * n + c] = acc;
    }
  return w;
}

function uniform(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** a [r, k] @ b [k, c] in float64. */
function mm(a: ArrayLike<number>, b: ArrayLike<number>, r: number, k: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++)
    for (let j = 0; j < c; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += (a[i * k + t] as number) * (b[t * c + j] as number);
      out[i * c + j] = s;
    }
  return out;
}

function tr(a: ArrayLike<number>, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j] as number;
  return out;
}

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i] as number));
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs((got[i] as number) - (want[i] as number)));
  return m / Math.max(scale, 1e-30);
}

const SETTINGS: MetisSettings = {
  rankFraction: 0.1,
  refreshEvery: 2,
  powerIterations: 2,
  spectralLr: { enabled: true, dominantScale: 0.25, tailScale: 1.5 },
  dualRange: { weight: 0.01, rangeSigmas: 3 },
};

/**
 * The dual-range value by scalar loops (float64): s = rangeSigmas * rms(r) / max unless `scale` is given,
 * u = |r| / s, mean(relu(u / max - 1)^2) + mean(relu(4 u (m - u) / m^2)), m = 2^(1 - bias - mantissaBits).
 */
function dualRangeRef(r: ArrayLike<number>, fmt: LowBitFormat, rangeSigmas: number, scale?: number): number {
  let ss = 0;
  for (let i = 0; i < r.length; i++) ss += (r[i] as number) ** 2;
  const s = scale ?? (rangeSigmas * Math.sqrt(ss / r.length)) / fmt.max;
  const m = 2 ** (1 - fmt.bias - fmt.mantissaBits);
  let high = 0;
  let low = 0;
  for (let i = 0; i < r.length; i++) {
    const u = Math.abs(r[i] as number) / s;
    if (u > fmt.max) high += (u / fmt.max - 1) ** 2;
    if (u < m) low += (4 * u * (m - u)) / (m * m);
  }
  return (high + low) / r.length;
}

describe('Metis: spectral split, spectral learning rate, dual-range regularizer', function () {
  this.timeout(300_000);
  before(() => initBackend('native', silentLogger));

  it('symmetricEigen: a 2 x 2 matches the closed form; H diag(l) H (H a Householder reflection) gives back l and its columns', () => {
    const [a, b, c] = [2.5, -1.25, 0.75];
    const { values } = symmetricEigen([a, b, b, c], 2);
    const mid = (a + c) / 2;
    const rad = Math.sqrt(((a - c) / 2) ** 2 + b * b);
    expect(values[0]).to.be.closeTo(mid + rad, 1e-14);
    expect(values[1]).to.be.closeTo(mid - rad, 1e-14);

    const n = 7;
    const lambda = [-3, 0.5, 9, 2, 2.000001, -0.25, 5]; // a near-tie and negative values too
    const h = Array.from({ length: n }, (_, i) => i + 1 - 0.3 * i * i);
    const hh = h.reduce((s, x) => s + x * x, 0);
    const H = (i: number, j: number): number => (i === j ? 1 : 0) - (2 * (h[i] as number) * (h[j] as number)) / hh;
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) for (let t = 0; t < n; t++) A[i * n + j] = (A[i * n + j] as number) + H(i, t) * (lambda[t] as number) * H(t, j);
    const { values: got, vectors } = symmetricEigen(A, n);
    const sorted = [...lambda].sort((x, y) => y - x);
    got.forEach((v, j) => expect(v, `eigenvalue ${j}`).to.be.closeTo(sorted[j] as number, 1e-12));
    // Each column v_j: A v_j = lambda_j v_j, unit length.
    for (let j = 0; j < n; j++) {
      let norm = 0;
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let t = 0; t < n; t++) av += (A[i * n + t] as number) * (vectors[t * n + j] as number);
        expect(av).to.be.closeTo((got[j] as number) * (vectors[i * n + j] as number), 1e-11);
        norm += (vectors[i * n + j] as number) ** 2;
      }
      expect(norm).to.be.closeTo(1, 1e-12);
    }
  });

  it('orthonormalColumns: Q^T Q = I, Q Q^T A = A, and a dependent column becomes zero', () => {
    const rng = new Rng(3);
    const [rows, cols] = [12, 4];
    const a = Float64Array.from(uniform(rng, rows * cols));
    for (let r = 0; r < rows; r++) a[r * cols + 3] = 2 * (a[r * cols] as number) - (a[r * cols + 1] as number); // column 3 = 2 c0 - c1
    const q = orthonormalColumns(a, rows, cols);
    const qtq = mm(tr(q, rows, cols), q, cols, rows, cols);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) expect(qtq[i * cols + j]).to.be.closeTo(i === j ? 1 : 0, 1e-13);
    for (let r = 0; r < rows; r++) expect(q[r * cols + 3]).to.equal(0);
    const back = mm(q, mm(tr(q, rows, cols), a, cols, rows, cols), rows, cols, cols);
    expect(maxRel(back, a)).to.be.below(1e-12);
  });

  it('randomizedSvd recovers a planted spectrum: the top singular values, and ||W - U S V^T||_F^2 = the sum of the tail sigma^2', () => {
    const [m, n] = [48, 40];
    const sigma = [9, 6, 4, 1, 0.5, 0.3, 0.2, 0.1, 0.05];
    const w = tf.tensor2d(planted(m, n, sigma), [m, n]);
    const r = randomizedSvd(w, 3, { rng: new Rng(7), powerIterations: 2 });
    [...r.s].forEach((s, j) => expect(s, `sigma_${j}`).to.be.closeTo(sigma[j] as number, 1e-4 * (sigma[j] as number)));
    const wv = w.dataSync();
    const usv = mm(
      Float64Array.from(r.u, (x, i) => x * (r.s[i % 3] as number)),
      tr(r.v, n, 3),
      m,
      3,
      n,
    );
    let res = 0;
    for (let i = 0; i < m * n; i++) res += ((wv[i] as number) - (usv[i] as number)) ** 2;
    const tail = sigma.slice(3).reduce((a, s) => a + s * s, 0); // 1.3875
    expect(res).to.be.closeTo(tail, 1e-3 * tail);
    // U and V have orthonormal columns.
    const utu = mm(tr(r.u, m, 3), r.u, 3, m, 3);
    const vtv = mm(tr(r.v, n, 3), r.v, 3, n, 3);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) expect([utu[i * 3 + j], vtv[i * 3 + j]]).to.satisfy((p: number[]) => p.every((x) => Math.abs(x - (i === j ? 1 : 0)) < 1e-5));
    // An exactly rank-3 matrix leaves float32 rounding only; the same seed gives the same factors.
    const exact = tf.tensor2d(planted(m, n, sigma.slice(0, 3)), [m, n]);
    const e = randomizedSvd(exact, 3, { rng: new Rng(1), powerIterations: 0 });
    const ev = exact.dataSync();
    const eusv = mm(
      Float64Array.from(e.u, (x, i) => x * (e.s[i % 3] as number)),
      tr(e.v, n, 3),
      m,
      3,
      n,
    );
    expect(maxRel(eusv, ev)).to.be.below(1e-5);
    const again = randomizedSvd(exact, 3, { rng: new Rng(1), powerIterations: 0 });
    expect([...again.u]).to.deep.equal([...e.u]);
    tf.dispose([w, exact]);
  });

  it('metisRank: k = max(1, round(f min(m, n))), 0 for f = 0', () => {
    expect(metisRank(0.01, 64, 172)).to.equal(1);
    expect(metisRank(0.01, 1024, 3072)).to.equal(10);
    expect(metisRank(0.05, 64, 64)).to.equal(3);
    expect(metisRank(0, 1024, 3072)).to.equal(0);
  });

  for (const [fwd, bwd] of [
    ['nvfp4', 'fp8-e5m2'],
    ['fp8-e4m3', 'fp8-e5m2'],
  ] as const) {
    it(`no split (k = 0): the Metis projection is the low-bit GEMM bit for bit (${fwd} / ${bwd})`, () => {
      const rng = new Rng(5);
      const x = tf.tensor2d(uniform(rng, 6 * 20), [6, 20]);
      const w = tf.tensor2d(uniform(rng, 9 * 20, 0.3), [9, 20]);
      const g = tf.tensor2d(uniform(rng, 6 * 9), [6, 9]);
      const f = (lin: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D) =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lin(a as tf.Tensor2D, b as tf.Tensor2D), g)))([x, w]);
      const plain = lowBitLinear({ forward: fwd, backward: bwd });
      const metis = metisLinear({ forward: fwd, backward: bwd }, { split: null });
      expect([...metis(x, w).dataSync()]).to.deep.equal([...plain(x, w).dataSync()]);
      const [a, b] = [f(metis), f(plain)];
      a.forEach((t, i) => expect([...t.dataSync()]).to.deep.equal([...(b[i] as tf.Tensor).dataSync()]));
      tf.dispose([x, w, g, ...a, ...b]);
    });
  }

  it('with a split: y = x L^T + q(x) q(W - L)^T, dx = dy L + q(dy) q(W - L), dW = q(dy)^T q(x) (L = U S V^T; float64 loops)', () => {
    const rng = new Rng(9);
    const [N, out, inp, k] = [5, 8, 16, 2];
    const fwd: GemmFormat = 'fp4-e2m1';
    const bwd: GemmFormat = 'fp8-e4m3';
    // Dyadic factors: U S V^T is exact in float32, so the residual below is the one the op forms.
    const us = Float32Array.from({ length: out * k }, () => (rng.int(9) - 4) / 4);
    const v = Float32Array.from({ length: inp * k }, () => (rng.int(9) - 4) / 8);
    const x = uniform(rng, N * inp);
    const w = uniform(rng, out * inp, 0.5);
    const dy = uniform(rng, N * out);
    const L = mm(us, tr(v, inp, k), out, k, inp);
    const wres = Float32Array.from(w, (x2, i) => x2 - (L[i] as number));
    const xq = fakeQuantGemmOperand(x, N, inp, fwd);
    const wq = fakeQuantGemmOperand(wres, out, inp, fwd);
    const dyq = fakeQuantGemmOperand(dy, N, out, bwd);
    const yWant = mm(x, tr(L, out, inp), N, inp, out).map((a, i) => a + (mm(xq, tr(wq, out, inp), N, inp, out)[i] as number));
    const dxWant = mm(dy, L, N, out, inp).map((a, i) => a + (mm(dyq, wq, N, out, inp)[i] as number));
    const dwWant = mm(tr(dyq, N, out), xq, out, N, inp);

    const split = { us: tf.tensor2d(us, [out, k]), u: tf.tensor2d(us, [out, k]), v: tf.tensor2d(v, [inp, k]) };
    const lin = metisLinear({ forward: fwd, backward: bwd }, { split });
    const [xt, wt, gt] = [tf.tensor2d(x, [N, inp]), tf.tensor2d(w, [out, inp]), tf.tensor2d(dy, [N, out])];
    const y = lin(xt, wt);
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lin(a as tf.Tensor2D, b as tf.Tensor2D), gt)))([xt, wt]);
    expect(maxRel(y.dataSync(), yWant)).to.be.below(1e-5);
    expect(maxRel((dx as tf.Tensor).dataSync(), dxWant)).to.be.below(1e-5);
    expect(maxRel((dw as tf.Tensor).dataSync(), dwWant)).to.be.below(1e-5);
    tf.dispose([split.us, split.u, split.v, xt, wt, gt, y, dx as tf.Tensor, dw as tf.Tensor]);
  });

  /** The tiny fixture model's hidden rows under some linear setup, and the gradients of a fixed projection of them. */
  function forwardAndGrads(setup: (m: Decoder) => void): { hidden: Float32Array; grads: Map<string, Float32Array> } {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    setup(model);
    const rng = new Rng(2);
    const ids = tf.tensor2d(
      Array.from({ length: 2 * 12 }, () => rng.int(512)),
      [2, 12],
      'int32',
    );
    const probe = tf.tensor2d(uniform(rng, 24 * 32), [24, 32]);
    let hidden: Float32Array = new Float32Array();
    const vars = [...model.params.values()];
    const { value, grads } = tf.variableGrads(() => {
      const h = model.forward(ids, { output: 'hidden' }).hidden as tf.Tensor;
      hidden = h.dataSync() as Float32Array;
      return tf.sum(tf.mul(h.reshape([24, 32]), probe)) as tf.Scalar;
    }, vars);
    const out = new Map<string, Float32Array>();
    for (const [name, v] of model.params) out.set(name, (grads[v.name] as tf.Tensor).dataSync() as Float32Array);
    tf.dispose([ids, probe, value, ...Object.values(grads)]);
    model.dispose();
    return { hidden, grads: out };
  }

  it('rankFraction 0 on a whole decoder: forward and every gradient equal the plain lowbitGemm path bit for bit', () => {
    const formats = { forward: 'nvfp4', backward: 'fp8-e5m2' } as const;
    const plain = forwardAndGrads((m) => applyLowBitGemm(m, formats));
    const metis = forwardAndGrads((m) => {
      const t = applyMetis(m, formats, { ...SETTINGS, rankFraction: 0, spectralLr: { ...SETTINGS.spectralLr, enabled: false } }, 0);
      t.refresh(0);
      expect(t.metrics()['metis.rank']).to.equal(0);
    });
    expect([...metis.hidden]).to.deep.equal([...plain.hidden]);
    for (const [name, g] of plain.grads) expect([...(metis.grads.get(name) as Float32Array)], name).to.deep.equal([...g]);
  });

  it("the spectral rule G' = a P + b (G - P), P = U U^T G V V^T, equals a scalar loop; refresh keeps its schedule and seed", () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const metis = applyMetis(model, { forward: 'fp8-e4m3', backward: 'fp8-e5m2' }, { ...SETTINGS, rankFraction: 0.1 }, 4);
    const name = 'model.layers.1.mlp.down_proj.weight'; // [32, 48]: k = round(0.1 * 32) = 3
    expect(metis.refresh(0)).to.equal(true);
    expect(metis.refresh(1)).to.equal(false);
    const split = metis.splitOf(name);
    if (split === null) throw new Error('no split');
    const [m, k] = split.u.shape;
    const n = split.v.shape[0];
    expect([m, n, k]).to.deep.equal([32, 48, 3]);
    const u = split.u.dataSync();
    const v = split.v.dataSync();
    const gv = uniform(new Rng(8), m * n);
    // P_ij = sum_{a,b} U_ia (sum_{r,c} U_ra G_rc V_cb) V_jb
    const core = new Float64Array(k * k);
    for (let a = 0; a < k; a++)
      for (let b = 0; b < k; b++)
        for (let r = 0; r < m; r++)
          for (let c = 0; c < n; c++)
            core[a * k + b] = (core[a * k + b] as number) + (u[r * k + a] as number) * (gv[r * n + c] as number) * (v[c * k + b] as number);
    const want = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let p = 0;
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) p += (u[i * k + a] as number) * (core[a * k + b] as number) * (v[j * k + b] as number);
        want[i * n + j] = 0.25 * p + 1.5 * ((gv[i * n + j] as number) - p);
      }
    const other = tf.ones([4]);
    const out = metis.transformGrads({ [name]: tf.tensor2d(gv, [m, n]), 'model.norm.weight': other });
    expect(maxRel((out[name] as tf.Tensor).dataSync(), want)).to.be.below(1e-5);
    expect(out['model.norm.weight']).to.equal(other); // not a projection: passed through
    // Refresh at step 2 (refreshEvery 2) from the same weights and seed gives a split of the same subspace; a
    // fresh owner refreshing at step 2 draws the same embedding (the seed depends on run seed, step, projection).
    const tensorsBefore = tf.memory().numTensors;
    expect(metis.refresh(2)).to.equal(true);
    expect(tf.memory().numTensors).to.equal(tensorsBefore); // the old split is disposed
    const at2 = [...(metis.splitOf(name)?.v.dataSync() ?? [])];
    const { model: model2 } = loadModel('test/fixtures/tiny-qwen3');
    const metis2 = applyMetis(model2, { forward: 'fp8-e4m3', backward: 'fp8-e5m2' }, { ...SETTINGS, rankFraction: 0.1 }, 4);
    metis2.refresh(2);
    expect([...(metis2.splitOf(name)?.v.dataSync() ?? [])]).to.deep.equal(at2);
    expect(metis.metrics()['metis.refreshedAt']).to.equal(2);
    tf.dispose([out[name] as tf.Tensor, other]);
    metis.dispose();
    metis2.dispose();
    model.dispose();
    model2.dispose();
  });

  for (const fmt of [LOWBIT_FORMATS.e2m1, LOWBIT_FORMATS.e4m3]) {
    it(`dualRange (${fmt.name}): value equals a scalar loop, gradient equals central finite differences with the scale held`, () => {
      const rng = new Rng(12);
      const n = 64;
      const r = uniform(rng, n, 0.1);
      r[3] = 2.5; // outliers beyond rangeSigmas RMS
      r[17] = -1.9;
      const rms = Math.sqrt(r.reduce((a, x) => a + x * x, 0) / n);
      const s = (3 * rms) / fmt.max;
      const m = 2 ** (1 - fmt.bias - fmt.mantissaBits);
      // Values inside the underflow band (0, m s) for this grid, on both sides of its middle.
      for (const [i, f] of [
        [5, 0.2],
        [6, 0.7],
        [7, -0.4],
        [8, 0.9],
      ] as const)
        r[i] = f * m * s;
      const t = tf.tensor1d(r);
      const value = dualRange(t, fmt, 3);
      const want = dualRangeRef(r, fmt, 3);
      expect(want).to.be.greaterThan(0);
      expect(value.dataSync()[0]).to.be.closeTo(want, 1e-5 * want);
      const grad = tf
        .grad((x: tf.Tensor) => dualRange(x, fmt, 3))(t)
        .dataSync();
      const s0 = (3 * Math.sqrt(Float64Array.from(r).reduce((a, x) => a + x * x, 0) / n)) / fmt.max;
      for (const i of [0, 3, 5, 6, 7, 8, 17, 40]) {
        const h = 1e-4 * m * s0;
        const plus = Float64Array.from(r);
        const minus = Float64Array.from(r);
        plus[i] = (plus[i] as number) + h;
        minus[i] = (minus[i] as number) - h;
        const fd = (dualRangeRef(plus, fmt, 3, s0) - dualRangeRef(minus, fmt, 3, s0)) / (2 * h);
        const scale = Math.max(Math.abs(fd), 1e-3 * Math.abs((2 * 4) / (m * s0 * n)));
        expect(grad[i], `d/dr[${i}]`).to.be.closeTo(fd, 2e-3 * scale);
      }
      tf.dispose([t, value]);
    });
  }

  it('the dual-range loss of a Metis model is the mean over projections of dualRange(W - U S V^T), and leaves no tensor behind', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const metis = applyMetis(model, { forward: 'nvfp4', backward: 'nvfp4' }, SETTINGS, 0);
    metis.refresh(0);
    const before = tf.memory().numTensors;
    const got = metis.dualRangeLoss();
    let sum = 0;
    let count = 0;
    for (const [name, p] of model.params) {
      if (!/_proj\.weight$/.test(name)) continue;
      const split = metis.splitOf(name);
      if (split === null) throw new Error(`${name}: no split`);
      const [out, k] = split.us.shape;
      const inp = split.v.shape[0];
      const L = mm(split.us.dataSync(), tr(split.v.dataSync(), inp, k), out, k, inp);
      sum += dualRangeRef(
        Float64Array.from(p.dataSync(), (x, i) => x - (L[i] as number)),
        LOWBIT_FORMATS.e2m1,
        3,
      );
      count++;
    }
    expect(count).to.equal(14);
    expect(got.dataSync()[0]).to.be.closeTo(sum / count, 1e-4 * (sum / count));
    got.dispose();
    expect(tf.memory().numTensors).to.equal(before);
    metis.dispose();
    model.dispose();
  });
});
