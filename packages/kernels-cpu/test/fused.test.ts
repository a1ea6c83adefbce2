// The fused training ops (bitLinearF32 / swigluF32 and their gradients): native against the TypeScript twins
// (plain loops, float64 sums) on shapes that split unevenly across the pool, odd sizes included.
// Tolerances: the BitLinear forward is an exact integer product times the same float32 factor on both sides,
// so it must match bit for bit; the backward products accumulate in float32 natively (float64 in the twin):
// |native - twin| <= 1e-5 * sum_p |a_p b_p| per element; SwiGLU: 4 float32 ulps (exp to ~1 ulp).
import { expect } from 'chai';
import { Rng, ShapeError } from '@bitdistill/core';
import {
  bitLinearF32,
  bitLinearF32Ts,
  bitLinearGradF32,
  bitLinearGradF32Ts,
  nativeStatus,
  swigluF32,
  swigluF32Ts,
  swigluGradF32,
  swigluGradF32Ts,
  headLossF32,
  normBitLinearF32,
  normBitLinearF32Ts,
  normBitLinearGradF32,
  normBitLinearGradF32Ts,
  rmsNormF32,
  rmsNormGradF32,
  headLossF32Ts,
  type BitLinearShape,
  setGradPrecision,
  bf16GradAvailable,
  bitLinearGradBf16Ts,
  roundBf16,
  setIsa,
  gradMatmulF32,
  gradMatmulBf16Ts,
  ropeHeadsF32,
  ropeHeadsF32Ts,
  ternaryStatsF32,
} from '../src/index.ts';
import { matmulF32Ts } from '../src/gemm.ts';
import { randomF32 } from './util.ts';

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 33, 9],
  [64, 300, 130],
  [130, 257, 67],
  // the int8 GEMM's edges (avx512vnni / amx): rows past a 12-row block, features past a 32-wide block, k not a
  // multiple of 4, several L2 passes over the features (k = 1030: 192 KiB / (258 x 128 B) = 5 blocks per pass)
  [70, 600, 45],
  [33, 1030, 9],
  [25, 1030, 200],
  [12, 4, 32],
];

function withinSum(got: Float32Array, want: Float32Array, bound: Float64Array, rel: number, what: string): void {
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs((got[i] as number) - (want[i] as number));
    if (!(d <= rel * (bound[i] as number) + 1e-30)) expect.fail(`${what}[${i}]: native ${got[i]}, twin ${want[i]}, bound ${rel * (bound[i] as number)}`);
  }
}

/** sum_p |dy[i, j]| |b[j, p]| for every (i, p): the scale of each element of dy @ b. */
function absProduct(dy: Float32Array, b: Float32Array, m: number, n: number, k: number, transDy: boolean): Float64Array {
  const rows = transDy ? n : m;
  const inner = transDy ? m : n;
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < inner; j++) {
      const g = Math.abs((transDy ? dy[j * n + i] : dy[i * n + j]) as number);
      for (let p = 0; p < k; p++) out[i * k + p] = (out[i * k + p] as number) + g * Math.abs(b[j * k + p] as number);
    }
  }
  return out;
}

describe('fused bitLinear', () => {
  for (const perRow of [false, true]) {
    it(`forward: native equals the twin bit for bit (${perRow ? 'perRow' : 'absmean'})`, function () {
      if (!nativeStatus().native) this.skip();
      const rng = new Rng(11);
      for (const [m, k, n] of SHAPES) {
        const s: BitLinearShape = { m, k, n, perRow };
        const x = randomF32(rng, m * k);
        const w = Float32Array.from(randomF32(rng, n * k), (v) => v * 0.02);
        if (m > 2) x.fill(0, 0, k); // an all-zero token: s = 127 / 1e-5
        const got = bitLinearF32(x, w, s);
        const want = bitLinearF32Ts(x, w, s, new Float32Array(m * n));
        // === (not Object.is): an all-zero dot product is +0 or -0 depending on the order of the signed zero terms.
        const diff = want.findIndex((v, i) => got[i] !== v);
        expect(diff, `m=${m} k=${k} n=${n}: native ${got[diff]} vs twin ${want[diff]}`).to.equal(-1);
        if (m > 2) expect(Array.from(got.subarray(0, n)).every((v) => v === 0)).to.equal(true);
      }
    });

    it(`backward: native matches the twin within 1e-5 of sum |a b| (${perRow ? 'perRow' : 'absmean'})`, function () {
      if (!nativeStatus().native) this.skip();
      const rng = new Rng(12);
      for (const [m, k, n] of SHAPES) {
        const s: BitLinearShape = { m, k, n, perRow };
        const x = randomF32(rng, m * k);
        const w = Float32Array.from(randomF32(rng, n * k), (v) => v * 0.02);
        const dy = randomF32(rng, m * n);
        const got = bitLinearGradF32(x, w, s, dy);
        const want = bitLinearGradF32Ts(x, w, s, dy, new Float32Array(m * k), new Float32Array(n * k));
        // The twin's own dequantized operands bound each product.
        const big = Float32Array.from({ length: n * k }, () => 0.1); // |c d| <= a few d, d ~ 0.016; loose but not vacuous
        withinSum(got.dx, want.dx, absProduct(dy, big, m, n, k, false), 1e-5, `dx m=${m} k=${k} n=${n}`);
        const xs = Float32Array.from(x, Math.abs);
        withinSum(got.dw, want.dw, absProduct(dy, xs, m, n, k, true), 1e-5, `dw m=${m} k=${k} n=${n}`);
      }
    });
  }

  // The bf16 precision (setGradPrecision('bf16')): only the gradient operand is rounded, so native and its twin
  // differ by the fp32 accumulation alone (the same 1e-5 bound); against the fp32 twin the difference is the
  // operand rounding, at most 2^-8 of sum |a b| (bf16 keeps 8 significant bits).
  for (const perRow of [false, true]) {
    it(`backward in bf16: native matches its twin within 1e-5, the fp32 twin within 2^-8 of sum |a b| (${perRow ? 'perRow' : 'absmean'})`, function () {
      if (!bf16GradAvailable()) this.skip();
      const rng = new Rng(21);
      expect(setGradPrecision('bf16')).to.equal(true);
      try {
        for (const [m, k, n] of [...SHAPES, [13, 40, 33] as [number, number, number]]) {
          const s: BitLinearShape = { m, k, n, perRow };
          const x = randomF32(rng, m * k);
          const w = Float32Array.from(randomF32(rng, n * k), (v) => v * 0.02);
          const dy = randomF32(rng, m * n);
          const got = bitLinearGradF32(x, w, s, dy);
          const want = bitLinearGradBf16Ts(x, w, s, dy, new Float32Array(m * k), new Float32Array(n * k));
          const fp32 = bitLinearGradF32Ts(x, w, s, dy, new Float32Array(m * k), new Float32Array(n * k));
          const big = Float32Array.from({ length: n * k }, () => 0.1);
          const bx = absProduct(dy, big, m, n, k, false);
          const xs = Float32Array.from(x, Math.abs);
          const bw = absProduct(dy, xs, m, n, k, true);
          withinSum(got.dx, want.dx, bx, 1e-5, `dx m=${m} k=${k} n=${n}`);
          withinSum(got.dw, want.dw, bw, 1e-5, `dw m=${m} k=${k} n=${n}`);
          withinSum(got.dx, fp32.dx, bx, 2 ** -8, `dx vs fp32 m=${m} k=${k} n=${n}`);
          withinSum(got.dw, fp32.dw, bw, 2 ** -8, `dw vs fp32 m=${m} k=${k} n=${n}`);
          // and it is not the fp32 path: some element differs from fp32 by more than float32 accumulation could
          if (m * n > 100) {
            const moved = got.dw.some((v, i) => Math.abs(v - (fp32.dw[i] as number)) > 1e-5 * (bw[i] as number) + 1e-30);
            expect(moved, `m=${m} k=${k} n=${n}: bf16 rounding visible`).to.equal(true);
          }
        }
      } finally {
        setGradPrecision('fp32');
      }
    });
  }

  it('bf16 precision: roundBf16 rounds to nearest even; without AVX512_BF16 (or on another ISA) setGradPrecision says false', function () {
    expect(roundBf16(1 + 2 ** -8)).to.equal(1); // tie -> even (mantissa 0)
    expect(roundBf16(1 + 3 * 2 ** -8)).to.equal(1 + 2 ** -6); // tie -> even (odd 1 + 2^-7 rounds up)
    expect(roundBf16(1 + 2 ** -8 + 2 ** -20)).to.equal(1 + 2 ** -7);
    expect(roundBf16(-3.140625)).to.equal(-3.140625);
    expect(Object.is(roundBf16(-(2 ** -130)), -0)).to.equal(true); // subnormal: flushed, as vcvtne2ps2bf16
    if (!nativeStatus().native) {
      expect(setGradPrecision('bf16')).to.equal(false);
      return;
    }
    const isa = nativeStatus().isa;
    try {
      setIsa('scalar');
      expect(setGradPrecision('bf16')).to.equal(false);
      expect(setGradPrecision('fp32')).to.equal(true);
    } finally {
      setIsa(isa as Parameters<typeof setIsa>[0]);
      setGradPrecision('fp32');
    }
  });

  it('the twin is the straight-through gradient: dx = dy @ ternary(W), dW = dy^T @ int8(x) (hand-worked 1x2x2)', () => {
    // x = [1, -0.5]: s = 127, q = [127, -64] (-63.5 rounds half to even), x_q = [1, -64/127].
    // W = [[0.3, -0.1], [0, 0.5]]: d = mean|W| = 0.225, W/d = [1.33, -0.44, 0, 2.22] -> c = [1, 0, 0, 1].
    const s: BitLinearShape = { m: 1, k: 2, n: 2, perRow: false };
    const x = Float32Array.of(1, -0.5);
    const w = Float32Array.of(0.3, -0.1, 0, 0.5);
    const f = Math.fround;
    const d = f((f(0.3) + f(0.1) + f(0.5)) / 4); // the float64 sum of the float32 values, rounded once
    const y = bitLinearF32Ts(x, w, s, new Float32Array(2));
    expect(y[0]).to.equal(f(127 * f(d / 127)));
    expect(y[1]).to.equal(f(-64 * f(d / 127)));
    const g = bitLinearGradF32Ts(x, w, s, Float32Array.of(1, 2), new Float32Array(2), new Float32Array(4));
    expect(Array.from(g.dx)).to.deep.equal([d, f(2 * d)]);
    const xq1 = f(-64 / 127);
    expect(Array.from(g.dw)).to.deep.equal([1, xq1, 2, f(2 * xq1)]);
  });

  it('rejects operands whose sizes do not match the shape', () => {
    const s: BitLinearShape = { m: 2, k: 3, n: 4, perRow: false };
    expect(() => bitLinearF32(new Float32Array(5), new Float32Array(12), s)).to.throw(ShapeError, /x has 5 values, expected 6/);
    expect(() => bitLinearGradF32(new Float32Array(6), new Float32Array(12), s, new Float32Array(7))).to.throw(ShapeError, /dy has 7 values/);
  });
});

// gradMatmulF32, the backward products of the dense linears and the head: matmulF32 at fp32; at bf16 both operands
// rounded to nearest even, products exact in fp32, sums fp32 - native vs its twin (the same roundings, float64
// sums) within 1e-5 of sum |a b|, vs the fp32 twin within 2^-7 (two operands of 8 significant bits), and visibly
// not the fp32 product.
describe('gradMatmulF32 (backward products, fp32 / bf16)', () => {
  const CASES: [number, number, number, boolean, boolean][] = [
    [1, 1, 1, false, false],
    [13, 40, 33, false, false],
    [37, 29, 65, false, true],
    [70, 131, 19, true, false],
    [25, 64, 100, true, true],
    [130, 257, 67, false, true],
  ];
  const scale = (a: Float32Array, b: Float32Array, m: number, k: number, n: number, ta: boolean, tb: boolean): Float64Array =>
    Float64Array.from(matmulF32Ts(Float32Array.from(a, Math.abs), Float32Array.from(b, Math.abs), m, k, n, ta, tb, new Float32Array(m * n)));

  it('fp32 (the default): the fp32 GEMM, within 1e-5 of sum |a b| of the float32 twin', () => {
    const rng = new Rng(41);
    for (const [m, k, n, ta, tb] of CASES) {
      const a = randomF32(rng, m * k);
      const b = randomF32(rng, k * n);
      const got = gradMatmulF32(a, b, m, k, n, { transA: ta, transB: tb });
      const want = matmulF32Ts(a, b, m, k, n, ta, tb, new Float32Array(m * n));
      withinSum(got, want, scale(a, b, m, k, n, ta, tb), 1e-5, `m=${m} k=${k} n=${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`);
    }
  });

  it('bf16: native matches its twin within 1e-5, the fp32 product within 2^-7 of sum |a b|, and differs from it', function () {
    if (!bf16GradAvailable()) this.skip();
    const rng = new Rng(42);
    expect(setGradPrecision('bf16')).to.equal(true);
    try {
      for (const [m, k, n, ta, tb] of CASES) {
        const a = randomF32(rng, m * k);
        const b = randomF32(rng, k * n);
        const what = `m=${m} k=${k} n=${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
        const got = gradMatmulF32(a, b, m, k, n, { transA: ta, transB: tb });
        const bound = scale(a, b, m, k, n, ta, tb);
        withinSum(got, gradMatmulBf16Ts(a, b, m, k, n, ta, tb, new Float32Array(m * n)), bound, 1e-5, `${what} vs bf16 twin`);
        const fp32 = matmulF32Ts(a, b, m, k, n, ta, tb, new Float32Array(m * n));
        withinSum(got, fp32, bound, 2 ** -7, `${what} vs fp32`);
        if (m * n > 100)
          expect(
            got.some((v, i) => Math.abs(v - (fp32[i] as number)) > 1e-5 * (bound[i] as number)),
            `${what}: bf16 moved nothing`,
          ).to.equal(true);
      }
    } finally {
      setGradPrecision('fp32');
    }
  });

  // accumulate: c += op(a) op(b) in place (the head's dW over row chunks), against c0 + the twin's product; at
  // bf16 also an inner size past the K-blocking threshold (8192: the head's dh = g W, inner = V), in blocks.
  it('accumulate adds into c (fp32, and bf16 with a long inner size taken in blocks)', function () {
    const rng = new Rng(43);
    const cases: [number, number, number, boolean, boolean][] = [
      [13, 40, 33, false, false],
      [70, 131, 19, true, false],
      [25, 20000, 37, false, false],
      [37, 9000, 21, true, false],
    ];
    const run = (bf16: boolean): void => {
      for (const [m, k, n, ta, tb] of cases) {
        const a = randomF32(rng, m * k);
        const b = randomF32(rng, k * n);
        const c0 = randomF32(rng, m * n);
        const what = `${bf16 ? 'bf16' : 'fp32'} m=${m} k=${k} n=${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;
        const got = gradMatmulF32(a, b, m, k, n, { transA: ta, transB: tb, accumulate: true }, Float32Array.from(c0));
        const prod = bf16 ? gradMatmulBf16Ts(a, b, m, k, n, ta, tb, new Float32Array(m * n)) : matmulF32Ts(a, b, m, k, n, ta, tb, new Float32Array(m * n));
        const want = Float32Array.from(prod, (v, i) => v + (c0[i] as number));
        const bound = Float64Array.from(scale(a, b, m, k, n, ta, tb), (v, i) => v + Math.abs(c0[i] as number));
        withinSum(got, want, bound, 1e-5, what);
        // Without accumulate the same call overwrites c.
        const fresh = gradMatmulF32(a, b, m, k, n, { transA: ta, transB: tb }, Float32Array.from(c0));
        withinSum(fresh, prod, scale(a, b, m, k, n, ta, tb), 1e-5, `${what}, no accumulate`);
      }
    };
    run(false);
    if (!bf16GradAvailable()) return;
    expect(setGradPrecision('bf16')).to.equal(true);
    try {
      run(true);
    } finally {
      setGradPrecision('fp32');
    }
  });

  it('rejects operands that do not fit m, k, n', () => {
    expect(() => gradMatmulF32(new Float32Array(6), new Float32Array(5), 2, 3, 2)).to.throw(ShapeError, /b has 5 values, expected 6/);
    expect(() => gradMatmulF32(new Float32Array(6), new Float32Array(6), 2, 3, 2, { accumulate: true })).to.throw(/accumulate needs out/);
  });
});

// ropeHeadsF32 (the relation KD's RoPE'd [B, H, T, d] view): native vs the float32 twin within 2^-22 of
// |x c| + |x' s| per element (a fused multiply-add may round once where the twin rounds twice); the backward is
// the forward's transpose: <dy, F(x)> = <F^T(dy), x> in float64, to 1e-6 relative.
describe('ropeHeadsF32 (relation-KD view of q, k, v)', () => {
  for (const [B, T, H, d] of [
    [1, 1, 1, 2],
    [2, 11, 3, 8],
    [3, 37, 2, 16],
    [2, 5, 4, 64],
    [1, 9, 2, 6],
  ] as [number, number, number, number][]) {
    it(`[${B}, ${T}, ${H}, ${d}]: forward and backward, with and without RoPE, match the twin; backward is the transpose`, () => {
      const rng = new Rng(B * 1000 + T * 10 + d);
      const n = B * T * H * d;
      const x = randomF32(rng, n);
      const dy = randomF32(rng, n);
      const ang = Float64Array.from({ length: T * d }, (_, i) => Math.floor(i / d) * (0.3 + (i % d) * 0.01));
      const cos = Float32Array.from(ang, Math.cos);
      const sin = Float32Array.from(ang, Math.sin);
      const s = { B, T, H, d };
      for (const rope of [true, false]) {
        for (const backward of [false, true]) {
          const src = backward ? dy : x;
          const got = ropeHeadsF32(src, cos, sin, s, rope, backward);
          const want = ropeHeadsF32Ts(src, cos, sin, s, rope, backward, new Float32Array(n));
          for (let i = 0; i < n; i++) {
            const tol = rope ? 2 ** -22 * 2 * Math.max(...[got[i], want[i]].map((v) => Math.abs(v as number)), 1e-30) + 2 ** -22 * 4 : 0;
            if (!(Math.abs((got[i] as number) - (want[i] as number)) <= tol))
              expect.fail(`rope=${rope} backward=${backward} [${i}]: native ${got[i]}, twin ${want[i]}`);
          }
        }
        const fx = ropeHeadsF32(x, cos, sin, s, rope, false);
        const bt = ropeHeadsF32(dy, cos, sin, s, rope, true);
        let lhs = 0;
        let rhs = 0;
        let scale = 0;
        for (let i = 0; i < n; i++) {
          lhs += (dy[i] as number) * (fx[i] as number);
          rhs += (bt[i] as number) * (x[i] as number);
          scale += Math.abs((dy[i] as number) * (fx[i] as number));
        }
        expect(Math.abs(lhs - rhs), `adjoint, rope=${rope}`).to.be.at.most(1e-6 * scale + 1e-12);
      }
    });
  }

  it('rejects an odd head size with RoPE and arrays that do not fit the shape', () => {
    expect(() => ropeHeadsF32(new Float32Array(6), new Float32Array(6), new Float32Array(6), { B: 1, T: 2, H: 1, d: 3 }, true, false)).to.throw(
      ShapeError,
      /even d/,
    );
    expect(() => ropeHeadsF32(new Float32Array(5), new Float32Array(8), new Float32Array(8), { B: 1, T: 2, H: 1, d: 4 }, false, false)).to.throw(
      ShapeError,
      /need 8 values/,
    );
  });
});

// ternaryStatsF32 (packages/quant latentWeightStats' fast pass) against a plain float64 loop with the reference
// code (clamp(round_half_even(f(w / d)), -1, 1)): sums to 1e-12 relative, counts exact; groups of one tensor, of
// rows, and of 256 with a short last group.
describe('ternaryStatsF32 (latent-weight statistics)', () => {
  const rhe = (x: number): number => {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  for (const [n, glen] of [
    [1, 1],
    [1000, 1000],
    [37 * 29, 29],
    [256 * 5 + 77, 256],
  ] as [number, number][]) {
    it(`${n} weights in groups of ${glen}`, function () {
      if (!nativeStatus().native) this.skip();
      const rng = new Rng(n + glen);
      const w = Float32Array.from(randomF32(rng, n), (v, i) => (i % 97 === 0 ? 0 : v * 0.02));
      const groups = Math.ceil(n / glen);
      const d = Float32Array.from({ length: groups }, (_, g) => {
        let sum = 0;
        const e = Math.min(n, (g + 1) * glen);
        for (let i = g * glen; i < e; i++) sum += Math.abs(w[i] as number);
        return Math.max(Math.fround(sum / (e - g * glen)), 1e-5);
      });
      // exact boundary cases: w = +-d/2 codes 0 (half to even), just above codes 1
      if (n >= 4) {
        w[1] = Math.fround((d[0] as number) / 2);
        w[2] = -Math.fround((d[0] as number) / 2);
      }
      let err = 0;
      let norm = 0;
      let near = 0;
      let zeros = 0;
      for (let i = 0; i < n; i++) {
        const x = w[i] as number;
        const dg = d[Math.floor(i / glen)] as number;
        const c = Math.max(-1, Math.min(1, rhe(Math.fround(x / dg))));
        err += (x - c * dg) ** 2;
        norm += x * x;
        if (Math.abs(Math.abs(x) / dg - 0.5) < 0.05) near++;
        if (c === 0) zeros++;
      }
      const want = [err, norm, near, zeros];
      const got = ternaryStatsF32(w, d, glen) as number[];
      expect(got).to.not.equal(null);
      expect(got[0]).to.be.closeTo(want[0] as number, 1e-12 * (want[0] as number) + 1e-30);
      expect(got[1]).to.be.closeTo(want[1] as number, 1e-12 * (want[1] as number) + 1e-30);
      expect(got[2]).to.equal(want[2]);
      expect(got[3]).to.equal(want[3]);
    });
  }

  it('rejects scales that do not match the groups', () => {
    expect(() => ternaryStatsF32(new Float32Array(10), new Float32Array(3), 4)).to.not.throw();
    expect(() => ternaryStatsF32(new Float32Array(10), new Float32Array(2), 4)).to.throw(ShapeError, /2 scales for 10 weights/);
  });
});

describe('fused swiglu', () => {
  // y and du: 4 float32 ulps of |g u| (|g dy|); dg: 8 ulps of |dy u| (1 + |g|), since 1 - sigmoid(g) cancels in float32.
  it('forward and gradient: native within a few float32 ulps of the twin, uneven sizes', function () {
    if (!nativeStatus().native) this.skip();
    const rng = new Rng(13);
    for (const n of [1, 15, 4097, 70_001]) {
      const g = Float32Array.from(randomF32(rng, n), (v) => v * 4);
      const u = randomF32(rng, n);
      const dy = randomF32(rng, n);
      const y = swigluF32(g, u);
      const yT = swigluF32Ts(g, u, new Float32Array(n));
      const gr = swigluGradF32(g, u, dy);
      const grT = swigluGradF32Ts(g, u, dy, new Float32Array(n), new Float32Array(n));
      const eps = 2 ** -23;
      for (let i = 0; i < n; i++) {
        const [gi, ui, di] = [Math.abs(g[i] as number), Math.abs(u[i] as number), Math.abs(dy[i] as number)];
        const checks: [string, number, number, number][] = [
          ['y', y[i] as number, yT[i] as number, 4 * eps * gi * ui],
          ['du', gr.du[i] as number, grT.du[i] as number, 4 * eps * gi * di],
          ['dg', gr.dg[i] as number, grT.dg[i] as number, 8 * eps * di * ui * (1 + gi)],
        ];
        for (const [name, got, want, tol] of checks)
          if (!(Math.abs(got - want) <= tol + 1e-30)) expect.fail(`${name}[${i}] (n=${n}): ${got} vs ${want}, tolerance ${tol}`);
      }
    }
  });

  it('the twin matches the derivative by central differences', () => {
    const g = Float64Array.of(-3, -0.5, 0, 0.7, 2.5);
    const u = Float64Array.of(0.4, -1.2, 2, 1, -0.3);
    const grad = swigluGradF32Ts(Float32Array.from(g), Float32Array.from(u), new Float32Array(5).fill(1), new Float32Array(5), new Float32Array(5));
    const f = (a: number, b: number) => (a / (1 + Math.exp(-a))) * b;
    for (let i = 0; i < 5; i++) {
      const [a, b] = [Math.fround(g[i] as number), Math.fround(u[i] as number)];
      const h = 1e-4;
      expect(grad.dg[i]).to.be.closeTo((f(a + h, b) - f(a - h, b)) / (2 * h), 1e-5);
      expect(grad.du[i]).to.be.closeTo((f(a, b + h) - f(a, b - h)) / (2 * h), 1e-5);
    }
  });
});

describe('fused head loss (answer CE + logit KD over a vocabulary)', () => {
  // The twin works in float64 throughout; the native pass in float32 with ~1-ulp exp and 16-lane sums. Sums:
  // relative 2e-5 (a row's CE / KL is a difference of logs of sums over V terms); gradient values: 2e-6 of the
  // row's gradient scale (mask x grad) plus 1e-6 relative.
  const cases: [string, number, number, boolean, boolean, number][] = [
    ['CE + KD, tau 5, odd V', 7, 37, true, true, 5],
    ['CE only', 5, 1003, true, false, 1],
    ['KD only, tau 1', 9, 19, false, true, 1],
    ['CE + KD, tau 1 (the student exponentials shared with CE)', 6, 53, true, true, 1],
    ['CE + KD, tau 2, a row of 1 logit', 3, 1, true, true, 2],
    ['CE + KD, tau 5, V over a 16-lane multiple', 33, 4099, true, true, 5],
  ];
  for (const [name, r, V, withCe, withKd, tau] of cases) {
    it(`${name} (r=${r}, V=${V}): sums and gradient equal the float64 twin`, function () {
      if (!nativeStatus().native) this.skip();
      const rng = new Rng(r * 1000 + V);
      const z = Float32Array.from(randomF32(rng, r * V), (v) => v * 6);
      const teacher = Float32Array.from(randomF32(rng, r * V), (v) => v * 8);
      // Row 1 is masked out of both terms (when r > 1); the masks are weights, not only 0 / 1.
      const ceMask = Float32Array.from({ length: r }, (_, i) => (i === 1 ? 0 : 1 + (i % 3) * 0.5));
      const kdMask = Float32Array.from({ length: r }, (_, i) => (i === 1 ? 0 : 1));
      const labels = Int32Array.from({ length: r }, (_, i) => (i * 7919) % V);
      const b = {
        r,
        V,
        ...(withCe ? { ce: { labels, mask: ceMask, grad: 0.25 } } : {}),
        ...(withKd ? { kd: { teacher, mask: kdMask, grad: 10 * tau * 0.2, tau } } : {}),
      };
      const g = new Float32Array(r * V);
      const gT = new Float32Array(r * V);
      const got = headLossF32(z, b, g);
      const want = headLossF32Ts(z, b, gT);
      expect(Math.abs(got.ce - want.ce)).to.be.at.most(2e-5 * Math.abs(want.ce) + 1e-9, `ce ${got.ce} vs ${want.ce}`);
      expect(Math.abs(got.kl - want.kl)).to.be.at.most(2e-5 * Math.abs(want.kl) + 1e-9, `kl ${got.kl} vs ${want.kl}`);
      if (withCe && V > 1) expect(want.ce).to.be.greaterThan(0);
      if (withKd && V > 1) expect(want.kl).to.be.greaterThan(0);
      for (let i = 0; i < r; i++) {
        const scale = (withCe ? (ceMask[i] as number) * 0.25 : 0) + (withKd ? (kdMask[i] as number) * 10 * tau * 0.2 : 0);
        for (let j = 0; j < V; j++) {
          const a = g[i * V + j] as number;
          const e = gT[i * V + j] as number;
          if (!(Math.abs(a - e) <= 2e-6 * scale + 1e-6 * Math.abs(e) + 1e-30)) expect.fail(`g[${i}, ${j}]: native ${a}, twin ${e}`);
        }
      }
      // A masked-out row has zero gradient; without g only the sums are computed, the same ones.
      if (r > 1) for (let j = 0; j < V; j++) expect(g[V + j]).to.equal(0);
      const only = headLossF32(z, b);
      expect(only.ce).to.equal(got.ce);
      expect(only.kl).to.equal(got.kl);
    });
  }

  it('the twin: with ce.grad 1 and kd.grad 1 / tau its gradient is d(CE + KL) / dz by central differences', () => {
    const r = 2;
    const V = 5;
    const tau = 2;
    const z = Float32Array.of(0.5, -1, 2, 0.25, 1, -0.5, 0.75, 1.5, -2, 0);
    const teacher = Float32Array.of(1, 0, -1, 2, 0.5, 0.25, -0.25, 1, 0, -1);
    // d KL(p_t || softmax(z / tau)) / dz = (p_s - p_t) / tau, so kd.grad = 1 / tau makes g the plain derivative.
    const b = {
      r,
      V,
      ce: { labels: Int32Array.of(2, 4), mask: Float32Array.of(1, 1), grad: 1 },
      kd: { teacher, mask: Float32Array.of(1, 1), grad: 1 / tau, tau },
    };
    const g = new Float32Array(r * V);
    headLossF32Ts(z, b, g);
    const loss = (zz: Float32Array) => {
      const o = headLossF32Ts(zz, b);
      return o.ce + o.kl;
    };
    for (let i = 0; i < r * V; i++) {
      const up = Float32Array.from(z);
      const dn = Float32Array.from(z);
      up[i] = (up[i] as number) + 1 / 256; // exact in float32
      dn[i] = (dn[i] as number) - 1 / 256;
      const fd = (loss(up) - loss(dn)) / (2 / 256);
      expect(g[i] as number).to.be.closeTo(fd, 1e-4, `dz[${i}]`);
    }
    // Each row's CE + KD gradient sums to 0 (softmax minus a distribution).
    for (let i = 0; i < r; i++) expect(g.subarray(i * V, (i + 1) * V).reduce((a, v) => a + v, 0)).to.be.closeTo(0, 1e-6);
  });

  it('rejects a label outside the vocabulary on a counted row, and bad sizes', () => {
    const z = new Float32Array(6);
    expect(() => headLossF32(z, { r: 2, V: 3, ce: { labels: Int32Array.of(0, 3), mask: Float32Array.of(1, 1), grad: 1 } })).to.throw(
      ShapeError,
      /label 3 of row 1/,
    );
    expect(() => headLossF32(z, { r: 2, V: 3, ce: { labels: Int32Array.of(0, 3), mask: Float32Array.of(1, 0), grad: 1 } })).not.to.throw();
    expect(() => headLossF32(z, { r: 2, V: 4 })).to.throw(ShapeError, /z has 6 values, expected 8/);
  });
});

describe('fused SubLN norm + BitLinear (normBitLinearF32 and its gradient)', () => {
  // Exact: the native call equals native rmsNormF32 then bitLinearF32 (and their gradients chained) bit for bit -
  // the same loops, the normalised rows only kept in scratch. Against the float64 twins: the forward within
  // 1e-5 of each output's scale sum |q_p c_p| d / s (a row's int8 code can flip where the float32 and float64
  // norms round differently, so 2 codes of slack), the gradients as the BitLinear backward test above.
  for (const [m, k, n, perRow] of [
    [3, 5, 7, false],
    [17, 64, 33, false],
    [40, 600, 21, false],
    [9, 70, 13, true],
  ] as [number, number, number, boolean][]) {
    it(`m=${m} k=${k} n=${n}${perRow ? ' perRow' : ''}: one call equals rmsNormF32 + bitLinearF32 exactly, forward and backward`, function () {
      if (!nativeStatus().native) this.skip();
      const rng = new Rng(m * 31 + k);
      const s: BitLinearShape = { m, k, n, perRow };
      const x = randomF32(rng, m * k);
      const gain = Float32Array.from(randomF32(rng, k), (v) => 1 + 0.5 * v);
      const w = randomF32(rng, n * k);
      const dy = randomF32(rng, m * n);
      const eps = 1e-8;
      const y = normBitLinearF32(x, { gain, eps }, w, s);
      const xn = rmsNormF32(x, gain, eps);
      expect(Array.from(y)).to.deep.equal(Array.from(bitLinearF32(xn, w, s)));
      const g = normBitLinearGradF32(x, { gain, eps }, w, s, dy);
      const gl = bitLinearGradF32(xn, w, s, dy);
      const gn = rmsNormGradF32(x, gain, eps, gl.dx);
      expect(Array.from(g.dw)).to.deep.equal(Array.from(gl.dw));
      expect(Array.from(g.dx)).to.deep.equal(Array.from(gn.dx));
      expect(Array.from(g.dgain)).to.deep.equal(Array.from(gn.dgain));
      // And near the float64 twins (rmsNormF32Ts + bitLinear twins), so the native chain is not only self-consistent.
      const yT = normBitLinearF32Ts(x, { gain, eps }, w, s, new Float32Array(m * n));
      let worst = 0;
      for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs((y[i] as number) - (yT[i] as number)));
      const ymax = yT.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      expect(worst, 'forward vs twin').to.be.at.most(0.05 * ymax);
      const gT = normBitLinearGradF32Ts(x, { gain, eps }, w, s, dy, { dx: new Float32Array(m * k), dgain: new Float32Array(k), dw: new Float32Array(n * k) });
      for (const key of ['dx', 'dgain', 'dw'] as const) {
        const a = g[key];
        const b = gT[key];
        const bmax = b.reduce((acc, v) => Math.max(acc, Math.abs(v)), 0);
        let bad = 0;
        for (let i = 0; i < b.length; i++) if (Math.abs((a[i] as number) - (b[i] as number)) > 1e-3 * bmax) bad++;
        // A flipped int8 code (float32 vs float64 norm) moves its column of dW by one code step: allow a few.
        expect(bad, `${key}: elements off the twin by > 1e-3 of the max`).to.be.at.most(Math.ceil(0.01 * b.length));
      }
    });
  }

  it('rejects a gain of the wrong length', () => {
    const s: BitLinearShape = { m: 2, k: 3, n: 4, perRow: false };
    expect(() => normBitLinearF32(new Float32Array(6), { gain: new Float32Array(2), eps: 1e-6 }, new Float32Array(12), s)).to.throw(
      ShapeError,
      /gain has 2 values, expected k=3/,
    );
  });
});
