import { expect } from 'chai';
import { Rng, ShapeError } from '@bitdistill/core';
import {
  batchMatmulF32,
  binaryF32,
  broadcastBatch,
  broadcastPlan,
  castToF32,
  compare,
  copyStrided32,
  gatherRows32,
  matmulF32Ref,
  nativeStatus,
  reduceF32,
  rmsNormF32,
  rmsNormGradF32,
  setIsa,
  setThreads,
  availableIsas,
  tile32,
  transpose32,
  unaryF32,
  BINARY_OPS,
  COMPARE_OPS,
  REDUCE_OPS,
  UNARY_OPS,
  type Isa,
  type UnaryOp,
} from '../src/index.ts';
import { binaryF32Ts, compareTs, reduceF32Ts, rmsNormF32Ts, rmsNormGradF32Ts, unaryF32Ts } from '../src/tensor-ops.ts';
import { firstDiff, randomF32 } from './util.ts';

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Relative error budget per unary op, in float32 ulps of the result (the twin rounds the float64 value once). */
const UNARY_ULPS: Record<UnaryOp, number> = {
  exp: 2,
  log: 1,
  neg: 0,
  abs: 0,
  sqrt: 0,
  rsqrt: 1,
  square: 0,
  sigmoid: 3,
  round: 0,
  clip: 0,
  reciprocal: 0,
};

function expectUlps(got: Float32Array, want: Float32Array, ulps: number, what: string): void {
  for (let i = 0; i < got.length; i++) {
    const g = got[i] as number;
    const w = want[i] as number;
    if (Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w))) continue;
    const tol = ulps * 2 ** -23 * Math.abs(w) + (ulps > 0 ? 1e-44 : 0);
    if (!(Math.abs(g - w) <= tol)) expect.fail(`${what}: element ${i}: got ${g}, want ${w} (${ulps} ulps)`);
  }
}

/** |got - want| <= tol * (1 + |want|) everywhere. */
function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  for (let i = 0; i < got.length; i++) {
    const w = want[i] as number;
    if (!(Math.abs((got[i] as number) - w) <= tol * (1 + Math.abs(w)))) expect.fail(`${what}: element ${i}: got ${got[i]}, want ${w}`);
  }
}

// Pairs of broadcastable shapes: equal, scalar, row, column, middle, rank mismatch, size-1 dims on both sides.
const BROADCASTS: [number[], number[]][] = [
  [
    [37, 53],
    [37, 53],
  ],
  [[300, 257], []],
  [[], [7, 9]],
  [[64, 130], [130]],
  [
    [64, 130],
    [64, 1],
  ],
  [
    [1, 130],
    [64, 1],
  ],
  [
    [2, 3, 40, 64],
    [40, 64],
  ],
  [
    [8, 1, 33],
    [1, 5, 1],
  ],
  [
    [4, 1, 1, 7],
    [3, 1, 7],
  ],
  [[0, 5], [5]],
  [[70000], [1]],
];

describe('tensor ops (native vs TypeScript twin)', function () {
  const rng = new Rng(11);
  const native = nativeStatus().native;
  before(function () {
    if (!native) this.skip();
  });
  after(() => setThreads(nativeStatus().threads));

  it('broadcastPlan merges dims and follows numpy rules', () => {
    expect(broadcastPlan([2, 3, 40, 64], [40, 64])).to.deep.equal({ outShape: [2, 3, 40, 64], shape: [6, 2560], aStrides: [2560, 1], bStrides: [0, 1] });
    expect(broadcastPlan([64, 130], [64, 1])).to.deep.equal({ outShape: [64, 130], shape: [64, 130], aStrides: [130, 1], bStrides: [1, 0] });
    expect(broadcastPlan([], [])).to.deep.equal({ outShape: [], shape: [1], aStrides: [0], bStrides: [0] });
    expect(() => broadcastPlan([3, 4], [5])).to.throw(ShapeError);
    const bb = broadcastBatch([2, 1], [1, 3]);
    expect(bb.shape).to.deep.equal([2, 3]);
    expect([...bb.aIndex]).to.deep.equal([0, 0, 0, 1, 1, 1]);
    expect([...bb.bIndex]).to.deep.equal([0, 1, 2, 0, 1, 2]);
  });

  for (const threads of [1, 2]) {
    it(`binary ops and compares are bit-exact with broadcasting (${threads} thread(s))`, () => {
      setThreads(threads);
      for (const [sa, sb] of BROADCASTS) {
        const a = randomF32(rng, size(sa));
        const b = randomF32(rng, size(sb));
        // Shared values so that equality compares see some equal pairs.
        for (let i = 0; i < Math.min(a.length, b.length); i += 3) a[i] = b[i] as number;
        const plan = broadcastPlan(sa, sb);
        for (const op of BINARY_OPS) {
          const got = binaryF32(op, a, sa, b, sb);
          const want = binaryF32Ts(op, a, b, plan, new Float32Array(size(plan.outShape)));
          expect(firstDiff(got, want), `${op} ${sa} x ${sb}`).to.equal(-1);
        }
        const ai = Int32Array.from(a, (v) => Math.round(v * 3));
        const bi = Int32Array.from(b, (v) => Math.round(v * 3));
        for (const op of COMPARE_OPS) {
          const n = size(plan.outShape);
          expect(firstDiff(compare(op, a, sa, b, sb), compareTs(op, a, b, plan, new Uint8Array(n))), `${op} f32 ${sa} x ${sb}`).to.equal(-1);
          expect(firstDiff(compare(op, ai, sa, bi, sb), compareTs(op, ai, bi, plan, new Uint8Array(n))), `${op} i32 ${sa} x ${sb}`).to.equal(-1);
        }
      }
    });

    it(`unary ops stay within their ulp budgets, including extremes (${threads} thread(s))`, () => {
      setThreads(threads);
      const special = [
        0,
        -0,
        1,
        -1,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        88.7,
        89,
        -87.3,
        -103,
        -104,
        -1e9,
        1e9,
        Infinity,
        -Infinity,
        Number.NaN,
        1e-40,
        8388609,
        -8388609.5,
      ];
      const x = new Float32Array(70_003);
      x.set(special);
      for (let i = special.length; i < x.length; i++) x[i] = rng.normal() * 20;
      const pos = x.map(Math.abs);
      for (const op of UNARY_OPS) {
        const input = op === 'log' || op === 'sqrt' || op === 'rsqrt' ? pos : x;
        const got = unaryF32(op, input, undefined, -0.75, 2);
        const want = unaryF32Ts(op, input, new Float32Array(input.length), -0.75, 2);
        expectUlps(got, want, UNARY_ULPS[op], op);
      }
    });

    it(`reductions of [outer, r, inner] match float64 sums within float32 accumulation error (${threads} thread(s))`, () => {
      setThreads(threads);
      const cases: [number, number, number][] = [
        [1, 1000, 1],
        [300, 257, 1],
        [1, 1024, 256],
        [3, 200, 130],
        [37, 1, 9],
        [5, 0, 3],
        [2, 70000, 1],
      ];
      for (const [outer, r, inner] of cases) {
        const x = randomF32(rng, outer * r * inner);
        for (const op of REDUCE_OPS) {
          const got = reduceF32(op, x, outer, r, inner);
          const want = reduceF32Ts(op, x, outer, r, inner, new Float32Array(outer * inner));
          for (let i = 0; i < got.length; i++) {
            const g = got[i] as number;
            const w = want[i] as number;
            if (op === 'max' || op === 'min' || r === 0) {
              expect(Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w)), `${op} [${outer}, ${r}, ${inner}] at ${i}: ${g} vs ${w}`).to.equal(true);
            } else {
              // Both are float32 sums of r terms of size ~1 (different orders): r * 2^-23 * sqrt-ish bound, generous.
              expect(Math.abs(g - w), `${op} [${outer}, ${r}, ${inner}] at ${i}`).to.be.at.most((r + 2) * 2 ** -22 * (op === 'mean' ? 1 / r : 1) * 4 + 1e-6);
            }
          }
        }
      }
    });

    it(`transpose32, copyStrided32 and gatherRows32 move bits exactly (${threads} thread(s))`, () => {
      setThreads(threads);
      const cases: [number[], number[]][] = [
        [
          [1024, 256],
          [1, 0],
        ],
        [
          [37, 53],
          [1, 0],
        ],
        [
          [8, 128, 4, 64],
          [0, 2, 1, 3],
        ],
        [
          [8, 4, 128, 64],
          [0, 2, 1, 3],
        ],
        [
          [32, 128, 64],
          [0, 2, 1],
        ],
        [
          [3, 5, 7, 2],
          [3, 1, 0, 2],
        ],
        [
          [2, 1, 9],
          [2, 1, 0],
        ],
        [[5], [0]],
        [
          [4, 0, 3],
          [2, 0, 1],
        ],
      ];
      for (const [isa, [shape, perm]] of availableIsas().flatMap((i) => cases.map((c) => [i, c] as const))) {
        setIsa(isa);
        const x = new Float32Array(size(shape));
        // Int32 bit patterns, including a NaN payload, must survive.
        const xi = new Int32Array(x.buffer);
        for (let i = 0; i < xi.length; i++) xi[i] = (i * 2654435761) | 0;
        const got = transpose32(x, shape, perm);
        const gi = new Int32Array(got.buffer);
        const outShape = perm.map((p) => shape[p] as number);
        const inStr = shape.map((_, d) => size(shape.slice(d + 1)));
        const idx = new Array<number>(shape.length).fill(0);
        for (let o = 0; o < gi.length; o++) {
          let rem = o;
          for (let d = outShape.length - 1; d >= 0; d--) {
            idx[d] = rem % (outShape[d] as number);
            rem = Math.floor(rem / (outShape[d] as number));
          }
          const src = perm.reduce((s, p, d) => s + (idx[d] as number) * (inStr[p] as number), 0);
          if (gi[o] !== xi[src]) expect.fail(`${isa}: transpose [${shape}] perm [${perm}]: output ${o}`);
        }
      }
      setIsa(nativeStatus().isa as Isa);
      // tile: out[idx] = x[idx mod shape], including broadcasts (dims of 1) and repeats of whole dims.
      for (const [shape, reps] of [
        [
          [3, 1, 4],
          [2, 5, 3],
        ],
        [
          [8, 128, 1],
          [1, 1, 300],
        ],
        [[5], [4]],
        [
          [2, 3],
          [1, 1],
        ],
        [
          [2, 0],
          [3, 2],
        ],
      ] as [number[], number[]][]) {
        const x = Float32Array.from({ length: size(shape) }, (_, i) => i + 0.5);
        const outShape = shape.map((d, i) => d * (reps[i] as number));
        const got = tile32(x, shape, reps);
        expect(got.length).to.equal(size(outShape));
        const idx = new Array<number>(shape.length).fill(0);
        for (let o = 0; o < got.length; o++) {
          let rem = o;
          for (let d = shape.length - 1; d >= 0; d--) {
            idx[d] = rem % (outShape[d] as number);
            rem = Math.floor(rem / (outShape[d] as number));
          }
          const src = idx.reduce((acc, v, d) => acc * (shape[d] as number) + (v % (shape[d] as number)), 0);
          if (got[o] !== x[src]) expect.fail(`tile [${shape}] x [${reps}]: output ${o}`);
        }
      }
      // Concat-like copy into a column window of a wider matrix.
      const src = randomF32(rng, 50 * 7);
      const dst = new Float32Array(50 * 20).fill(-1);
      copyStrided32(src, { offset: 0, strides: [7, 1] }, dst, { offset: 3, strides: [20, 1] }, [50, 7]);
      for (let r = 0; r < 50; r++) {
        for (let c = 0; c < 20; c++) expect(dst[r * 20 + c]).to.equal(c >= 3 && c < 10 ? src[r * 7 + c - 3] : -1);
      }
      expect(() => copyStrided32(src, { offset: 1, strides: [7, 1] }, dst, { offset: 0, strides: [20, 1] }, [50, 7])).to.throw(/out of range/);
      const table = randomF32(rng, 100 * 33);
      const ids = Int32Array.from({ length: 500 }, () => rng.int(100));
      const rows = gatherRows32(table, 33, ids);
      for (let i = 0; i < ids.length; i++)
        expect(firstDiff(rows.subarray(i * 33, (i + 1) * 33), table.subarray((ids[i] as number) * 33, (ids[i] as number) * 33 + 33))).to.equal(-1);
      expect(() => gatherRows32(table, 33, Int32Array.from([3, 100]))).to.throw(/index 100 at position 1/);
    });

    it(`castToF32 and rmsNorm forward / gradient match their twins (${threads} thread(s))`, () => {
      setThreads(threads);
      const b = Uint8Array.from({ length: 40_000 }, (_, i) => i % 2);
      expect(firstDiff(castToF32(b), Float32Array.from(b))).to.equal(-1);
      const ints = Int32Array.from({ length: 40_000 }, (_, i) => (i - 20_000) * 1001);
      expect(firstDiff(castToF32(ints), Float32Array.from(ints))).to.equal(-1);
      for (const [rows, dim] of [
        [1024, 256],
        [7, 688],
        [3, 5],
      ] as [number, number][]) {
        const x = randomF32(rng, rows * dim);
        const g = randomF32(rng, dim);
        const dy = randomF32(rng, rows * dim);
        const y = rmsNormF32(x, g, 1e-5);
        expectNear(y, rmsNormF32Ts(x, g, 1e-5, new Float32Array(x.length)), 1e-5, `rmsNorm [${rows}, ${dim}]`);
        const { dx, dgain } = rmsNormGradF32(x, g, 1e-5, dy);
        const ref = rmsNormGradF32Ts(x, g, 1e-5, dy, new Float32Array(x.length), new Float32Array(dim));
        expectNear(dx, ref.dx, 1e-5, `rmsNorm dx [${rows}, ${dim}]`);
        expectNear(dgain, ref.dgain, 1e-5 * Math.sqrt(rows), `rmsNorm dgain [${rows}, ${dim}]`);
      }
    });

    it(`batchMatmulF32 broadcasts batch dims and handles every transpose (${threads} thread(s))`, () => {
      setThreads(threads);
      const cases: { batchA: number[]; batchB: number[]; m: number; k: number; n: number }[] = [
        { batchA: [32], batchB: [32], m: 17, k: 16, n: 19 },
        { batchA: [2, 1], batchB: [1, 3], m: 5, k: 7, n: 3 },
        { batchA: [4], batchB: [], m: 30, k: 9, n: 40 },
        { batchA: [], batchB: [3], m: 12, k: 33, n: 32 },
        { batchA: [2], batchB: [2], m: 200, k: 300, n: 150 },
        { batchA: [3], batchB: [3], m: 4, k: 0, n: 5 },
      ];
      for (const s of cases) {
        const { shape, aIndex, bIndex } = broadcastBatch(s.batchA, s.batchB);
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = randomF32(rng, size(s.batchA) * s.m * s.k);
            const b = randomF32(rng, size(s.batchB) * s.k * s.n);
            const c = batchMatmulF32(a, b, s, { transA, transB });
            expect(c.length).to.equal(size(shape) * s.m * s.n);
            for (let i = 0; i < aIndex.length; i++) {
              const ai = (aIndex[i] as number) * s.m * s.k;
              const bi = (bIndex[i] as number) * s.k * s.n;
              const want = matmulF32Ref(a.subarray(ai, ai + s.m * s.k), b.subarray(bi, bi + s.k * s.n), s.m, s.k, s.n, transA, transB);
              expectNear(
                c.subarray(i * s.m * s.n, (i + 1) * s.m * s.n),
                want,
                1e-5 * Math.sqrt(s.k + 1),
                `${JSON.stringify(s)} tA=${transA} tB=${transB} item ${i}`,
              );
            }
          }
        }
      }
    });
  }
});
