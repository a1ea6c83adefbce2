/**
 * Fused training ops, forward and backward each one native call (issue 15): the student's BitLinear and SwiGLU.
 * The quantized operands of BitLinear exist only inside a call, so autograd saves x and W (alive anyway), not
 * an int8 copy of x and a ternary copy of every weight (at Qwen3-0.6B the latter alone is 2.4 GB per step).
 * Each op has a TypeScript twin (plain loops, float64 sums): the fallback without the addon and the tests'
 * independent reference.
 */
import { ArgumentError, ShapeError, UnsupportedError } from '@bitdistill/core';
import { matmulF32Ts, type MatMulOptions } from './gemm.ts';
import { nativeAddon } from './native.ts';
import { rmsNormF32Ts, rmsNormGradF32Ts } from './tensor-ops.ts';
import { absmeanScale, int8AbsmaxRow, ternaryCode } from '@bitdistill/arch';

const f = Math.fround;

/** Shape of a BitLinear product: x [m, k], W [n, k] (HF layout: out x in), y [m, n]. */
export interface BitLinearShape {
  m: number;
  k: number;
  n: number;
  /** One ternary scale per row of W (perRow) instead of one per tensor (absmean). */
  perRow: boolean;
}

function checkShape(what: string, s: BitLinearShape, arrays: [string, Float32Array, number][]): void {
  for (const d of [s.m, s.k, s.n]) if (!Number.isSafeInteger(d) || d < 1 || d > 2 ** 31) throw new ShapeError(`${what}: bad shape m=${s.m} k=${s.k} n=${s.n}`);
  for (const [name, a, want] of arrays) {
    if (a.length !== want) throw new ShapeError(`${what}: ${name} has ${a.length} values, expected ${want} (m=${s.m} k=${s.k} n=${s.n})`);
  }
}

/**
 * y = int8Quant(x) @ ternaryQuant(W)^T in integer form: y = (q @ c^T) * f32(d / s), with per-token
 * s = 127 / max(max|x|, 1e-5), q = clamp(round(x s), -128, 127), and d = max(mean|W|, 1e-5) (per tensor or per
 * row), c = clamp(round(W / d), -1, 1); rounding half to even, float32 arithmetic as packages/quant's reference.
 */
export function bitLinearF32(x: Float32Array, w: Float32Array, s: BitLinearShape, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(s.m * s.n);
  checkShape('bitLinearF32', s, [
    ['x', x, s.m * s.k],
    ['w', w, s.n * s.k],
    ['y', y, s.m * s.n],
  ]);
  const addon = nativeAddon();
  if (addon === null) return bitLinearF32Ts(x, w, s, y);
  addon.bitLinearF32(x, w, s.m, s.k, s.n, s.perRow, y);
  return y;
}

/** The straight-through backward of bitLinearF32: dx = dy @ (c d), dW = dy^T @ (q / s); no gradient through scales. */
export function bitLinearGradF32(
  x: Float32Array,
  w: Float32Array,
  s: BitLinearShape,
  dy: Float32Array,
  dx?: Float32Array,
  dw?: Float32Array,
): { dx: Float32Array; dw: Float32Array } {
  const r = { dx: dx ?? new Float32Array(s.m * s.k), dw: dw ?? new Float32Array(s.n * s.k) };
  checkShape('bitLinearGradF32', s, [
    ['x', x, s.m * s.k],
    ['w', w, s.n * s.k],
    ['dy', dy, s.m * s.n],
    ['dx', r.dx, s.m * s.k],
    ['dw', r.dw, s.n * s.k],
  ]);
  const addon = nativeAddon();
  if (addon === null) return bitLinearGradF32Ts(x, w, s, dy, r.dx, r.dw);
  addon.bitLinearGradF32(x, w, s.m, s.k, s.n, s.perRow, dy, r.dx, r.dw);
  return r;
}

/** Per-token int8 codes (as floats) and scales of x [m, k] (arch's int8AbsmaxRow). */
function actQuantTs(x: Float32Array, m: number, k: number): { q: Float32Array; s: Float32Array } {
  const q = new Float32Array(m * k);
  const s = new Float32Array(m);
  for (let i = 0; i < m; i++) s[i] = int8AbsmaxRow(x, i * k, k, q);
  return { q, s };
}

/** Ternary codes (as floats) and scales of W [n, k] (arch's absmeanScale and ternaryCode), per tensor or per row. */
function ternaryTs(w: Float32Array, n: number, k: number, perRow: boolean): { c: Float32Array; d: Float32Array } {
  const groups = perRow ? n : 1;
  const len = perRow ? k : n * k;
  const c = new Float32Array(n * k);
  const d = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    const dg = absmeanScale(w, g * len, (g + 1) * len);
    d[g] = dg;
    for (let i = g * len; i < (g + 1) * len; i++) c[i] = ternaryCode(w[i] as number, dg);
  }
  return { c, d };
}

/** TypeScript twin of bitLinearF32 (the integer products summed exactly in float64). */
export function bitLinearF32Ts(x: Float32Array, w: Float32Array, s: BitLinearShape, y: Float32Array): Float32Array {
  const { m, k, n, perRow } = s;
  const { q, s: sx } = actQuantTs(x, m, k);
  const { c, d } = ternaryTs(w, n, k, perRow);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += (q[i * k + p] as number) * (c[j * k + p] as number);
      y[i * n + j] = f(f(acc) * f((d[perRow ? j : 0] as number) / (sx[i] as number)));
    }
  }
  return y;
}

/** TypeScript twin of bitLinearGradF32 (float64 sums of the float32 dequantized operands). */
export function bitLinearGradF32Ts(
  x: Float32Array,
  w: Float32Array,
  s: BitLinearShape,
  dy: Float32Array,
  dx: Float32Array,
  dw: Float32Array,
): { dx: Float32Array; dw: Float32Array } {
  const { m, k, n, perRow } = s;
  const { q, s: sx } = actQuantTs(x, m, k);
  const { c, d } = ternaryTs(w, n, k, perRow);
  for (let i = 0; i < m * k; i++) q[i] = f((q[i] as number) / (sx[Math.floor(i / k)] as number)); // dequantized x
  for (let i = 0; i < n * k; i++) c[i] = f((c[i] as number) * (d[perRow ? Math.floor(i / k) : 0] as number)); // dequantized W
  const gx = new Float64Array(m * k);
  const gw = new Float64Array(n * k);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const g = dy[i * n + j] as number;
      if (g === 0) continue;
      for (let p = 0; p < k; p++) {
        gx[i * k + p] = (gx[i * k + p] as number) + g * (c[j * k + p] as number);
        gw[j * k + p] = (gw[j * k + p] as number) + g * (q[i * k + p] as number);
      }
    }
  }
  dx.set(gx);
  dw.set(gw);
  return { dx, dw };
}

/** Precision of the fused BitLinear backward's two products (bitLinearGradF32, normBitLinearGradF32). */
export type GradPrecision = 'fp32' | 'bf16';

/**
 * Sets the precision of the fused BitLinear backward for this process: 'fp32' (the default) or 'bf16', where the
 * gradient operand of dx = dy @ (c d) and dW = dy^T @ (q / s) is rounded to bfloat16 (nearest even) after the
 * per-row ternary scales or the per-token 1 / s are folded into it; the ternary and int8 codes are exact in
 * bf16, products are exact and sums fp32 (AVX512_BF16 vdpbf16ps). Returns false (and stays fp32) when 'bf16' is
 * asked on a CPU or ISA without AVX512_BF16, or without the native addon. The twin: bitLinearGradBf16Ts.
 */
export function setGradPrecision(p: GradPrecision): boolean {
  const addon = nativeAddon();
  if (addon === null) return p === 'fp32';
  return addon.setBitLinearGradPrecision(p === 'bf16');
}

/** Whether setGradPrecision('bf16') can take effect here (native addon, AVX-512 ISA, AVX512_BF16). */
export function bf16GradAvailable(): boolean {
  const addon = nativeAddon();
  return addon !== null && addon.info().bf16;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * float32 -> bfloat16 -> float32 as vcvtne2ps2bf16 does it: round to nearest even, NaN kept, float32 subnormals
 * flushed to a signed zero (the instruction treats them as zero whatever MXCSR says).
 */
export function roundBf16(v: number): number {
  F32[0] = v;
  const u = U32[0] as number;
  if ((u & 0x7fffffff) > 0x7f800000) return v;
  if ((u & 0x7f800000) === 0) return u >>> 31 === 1 ? -0 : 0;
  U32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return F32[0] as number;
}

/**
 * Latent-weight statistics of w under one ternary scale per group of `groupLen` weights (d: the absmean scales),
 * codes r = w / d in float32: r > 0.5 -> 1, r < -0.5 -> -1, else 0 (ternaryCode's values): [sum (w - c d)^2,
 * sum w^2, how many have ||w| / d - 0.5| < 0.05, how many are coded 0], float64 sums. Null without the native
 * addon (packages/quant then runs its loop).
 */
export function ternaryStatsF32(w: Float32Array, d: Float32Array, groupLen: number): [number, number, number, number] | null {
  if (!Number.isSafeInteger(groupLen) || groupLen < 1 || d.length !== Math.ceil(w.length / groupLen)) {
    throw new ShapeError(`ternaryStatsF32: ${d.length} scales for ${w.length} weights in groups of ${groupLen}`);
  }
  const addon = nativeAddon();
  return addon === null ? null : addon.ternaryStatsF32(w, d, groupLen);
}

/** Shape of ropeHeadsF32's token-major side [B, T, H, d]. */
export interface RopeHeadsShape {
  B: number;
  T: number;
  H: number;
  d: number;
}

/**
 * The relation KD's view of a projection: forward, x [B, T, H, d] -> [B, H, T, d], RoPE'd (rotate_half, tables
 * cos / sin [T, d]) when `rope`; backward, dy [B, H, T, d] -> dx [B, T, H, d] through the rotation's transpose.
 * The twin: ropeHeadsF32Ts.
 */
export function ropeHeadsF32(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  s: RopeHeadsShape,
  rope: boolean,
  backward: boolean,
  out?: Float32Array,
): Float32Array {
  const { B, T, H, d } = s;
  const n = B * T * H * d;
  const y = out ?? new Float32Array(n);
  for (const v of [B, T, H, d]) if (!Number.isSafeInteger(v) || v < 1) throw new ShapeError(`ropeHeadsF32: bad shape [${B}, ${T}, ${H}, ${d}]`);
  if (x.length !== n || y.length !== n)
    throw new ShapeError(`ropeHeadsF32: x and y need ${n} values ([${B}, ${T}, ${H}, ${d}]), got ${x.length} and ${y.length}`);
  if (rope && (d % 2 !== 0 || cos.length < T * d || sin.length < T * d))
    throw new ShapeError(`ropeHeadsF32: RoPE needs an even d and cos / sin of [${T}, ${d}]`);
  const addon = nativeAddon();
  if (addon === null) return ropeHeadsF32Ts(x, cos, sin, s, rope, backward, y);
  addon.ropeHeadsF32(x, cos, sin, B, T, H, d, rope, backward, y);
  return y;
}

/** TypeScript twin of ropeHeadsF32: the same formulas element by element, float32 rounding after every operation. */
export function ropeHeadsF32Ts(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  s: RopeHeadsShape,
  rope: boolean,
  backward: boolean,
  y: Float32Array,
): Float32Array {
  const { B, T, H, d } = s;
  const h2 = d / 2;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const tm = ((b * T + t) * H + h) * d;
        const hm = ((b * H + h) * T + t) * d;
        const src = backward ? hm : tm;
        const dst = backward ? tm : hm;
        for (let i = 0; i < d; i++) {
          const xi = x[src + i] as number;
          if (!rope) {
            y[dst + i] = xi;
            continue;
          }
          const c = cos[t * d + i] as number;
          let v: number;
          if (!backward)
            v =
              i < h2
                ? f(xi * c) + f(-(x[src + i + h2] as number) * (sin[t * d + i] as number))
                : f(xi * c) + f((x[src + i - h2] as number) * (sin[t * d + i] as number));
          else
            v =
              i < h2
                ? f(xi * c) + f((x[src + i + h2] as number) * (sin[t * d + i + h2] as number))
                : f(xi * c) - f((x[src + i - h2] as number) * (sin[t * d + i - h2] as number));
          y[dst + i] = v;
        }
      }
    }
  }
  return y;
}

/**
 * A product of a backward pass, c [m, n] = op(a) @ op(b): the dense linears' dx = dy W and dW = dy^T x, the
 * vocabulary head's. At 'bf16' precision (setGradPrecision) both operands are rounded to bfloat16 (nearest even)
 * and the products summed in fp32 on the AVX512_BF16 GEMM - the official code's bf16 backward; at 'fp32' (the
 * default) it is matmulF32. With `accumulate`, c += op(a) @ op(b) in place (a gradient summed over chunks). The
 * twin: gradMatmulBf16Ts (bf16) / matmulF32Ts.
 */
export function gradMatmulF32(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  options: MatMulOptions & { accumulate?: boolean } = {},
  out?: Float32Array,
): Float32Array {
  if (options.accumulate === true && out === undefined) throw new ArgumentError('gradMatmulF32: accumulate needs out (the sum to add to)');
  const c = out ?? new Float32Array(m * n);
  for (const [name, arr, want] of [
    ['a', a, m * k],
    ['b', b, k * n],
    ['c', c, m * n],
  ] as const) {
    if (!Number.isSafeInteger(want) || want < 1 || arr.length !== want)
      throw new ShapeError(`gradMatmulF32: ${name} has ${arr.length} values, expected ${want} (m=${m} k=${k} n=${n})`);
  }
  const addon = nativeAddon();
  if (addon === null) {
    if (options.accumulate !== true) return matmulF32Ts(a, b, m, k, n, options.transA ?? false, options.transB ?? false, c);
    const p = matmulF32Ts(a, b, m, k, n, options.transA ?? false, options.transB ?? false, new Float32Array(m * n));
    for (let i = 0; i < c.length; i++) c[i] = (c[i] as number) + (p[i] as number);
    return c;
  }
  addon.gradMatmulF32(a, b, c, m, k, n, options.transA ?? false, options.transB ?? false, options.accumulate === true);
  return c;
}

/** TypeScript twin of gradMatmulF32 at 'bf16': both operands through roundBf16, float64 sums, one float32 rounding. */
export function gradMatmulBf16Ts(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  c: Float32Array,
): Float32Array {
  const ra = Float64Array.from(a, roundBf16);
  const rb = Float64Array.from(b, roundBf16);
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const av = ra[transA ? p * m + i : i * k + p] as number;
      if (av === 0) continue;
      for (let j = 0; j < n; j++) acc[j] = (acc[j] as number) + av * (rb[transB ? j * k + p : p * n + j] as number);
    }
    c.set(acc, i * n);
  }
  return c;
}

/**
 * TypeScript twin of bitLinearGradF32 in 'bf16' precision: dx = d (bf16(dy d_p) @ c) and dW = bf16(dy / s)^T @ q
 * (d_p the per-row scale with perRow, else 1 and d multiplies the sum), float64 sums.
 */
export function bitLinearGradBf16Ts(
  x: Float32Array,
  w: Float32Array,
  s: BitLinearShape,
  dy: Float32Array,
  dx: Float32Array,
  dw: Float32Array,
): { dx: Float32Array; dw: Float32Array } {
  const { m, k, n, perRow } = s;
  const { q, s: sx } = actQuantTs(x, m, k);
  const { c, d } = ternaryTs(w, n, k, perRow);
  const gx = new Float64Array(m * k);
  const gw = new Float64Array(n * k);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const g = dy[i * n + j] as number;
      if (g === 0) continue;
      const a1 = roundBf16(perRow ? f(g * (d[j] as number)) : g);
      const a2 = roundBf16(f(g / (sx[i] as number)));
      for (let p = 0; p < k; p++) {
        gx[i * k + p] = (gx[i * k + p] as number) + a1 * (c[j * k + p] as number);
        gw[j * k + p] = (gw[j * k + p] as number) + a2 * (q[i * k + p] as number);
      }
    }
  }
  const scale = perRow ? 1 : (d[0] as number);
  for (let i = 0; i < m * k; i++) dx[i] = (gx[i] as number) * scale;
  dw.set(gw);
  return { dx, dw };
}

function checkSame(what: string, arrays: [string, Float32Array][]): void {
  const n = (arrays[0] as [string, Float32Array])[1].length;
  for (const [name, a] of arrays) if (a.length !== n) throw new ShapeError(`${what}: ${name} has ${a.length} values, expected ${n}`);
}

/** SwiGLU: y = silu(g) * u = g sigmoid(g) u, elementwise. */
export function swigluF32(g: Float32Array, u: Float32Array, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(g.length);
  checkSame('swigluF32', [
    ['g', g],
    ['u', u],
    ['y', y],
  ]);
  const addon = nativeAddon();
  if (addon === null) return swigluF32Ts(g, u, y);
  addon.swigluF32(g, u, y);
  return y;
}

/** Gradient of swigluF32: dg = dy u sig(g) (1 + g (1 - sig(g))), du = dy g sig(g). */
export function swigluGradF32(
  g: Float32Array,
  u: Float32Array,
  dy: Float32Array,
  dg?: Float32Array,
  du?: Float32Array,
): { dg: Float32Array; du: Float32Array } {
  const r = { dg: dg ?? new Float32Array(g.length), du: du ?? new Float32Array(g.length) };
  checkSame('swigluGradF32', [
    ['g', g],
    ['u', u],
    ['dy', dy],
    ['dg', r.dg],
    ['du', r.du],
  ]);
  const addon = nativeAddon();
  if (addon === null) return swigluGradF32Ts(g, u, dy, r.dg, r.du);
  addon.swigluF32(g, u, dy, r.dg, r.du);
  return r;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/** TypeScript twin of swigluF32 (float64 arithmetic). */
export function swigluF32Ts(g: Float32Array, u: Float32Array, y: Float32Array): Float32Array {
  for (let i = 0; i < g.length; i++) {
    const gi = g[i] as number;
    y[i] = gi * sigmoid(gi) * (u[i] as number);
  }
  return y;
}

/** TypeScript twin of swigluGradF32 (float64 arithmetic). */
export function swigluGradF32Ts(
  g: Float32Array,
  u: Float32Array,
  dy: Float32Array,
  dg: Float32Array,
  du: Float32Array,
): { dg: Float32Array; du: Float32Array } {
  for (let i = 0; i < g.length; i++) {
    const gi = g[i] as number;
    const sg = sigmoid(gi);
    du[i] = (dy[i] as number) * gi * sg;
    dg[i] = (dy[i] as number) * (u[i] as number) * sg * (1 + gi * (1 - sg));
  }
  return { dg, du };
}

/** Shape of a fused causal attention: q [B, T, H, d], k and v [B, T, Hkv, d], cos and sin [T, d]. */
export interface AttentionTrainShape {
  B: number;
  T: number;
  H: number;
  Hkv: number;
  d: number;
  /** Score scale, 1 / sqrt(d) as float32. */
  scale: number;
}

function checkAttention(what: string, s: AttentionTrainShape, arrays: [string, Float32Array, number][]): void {
  const { B, T, H, Hkv, d } = s;
  if (![B, T, H, Hkv, d].every((v) => Number.isSafeInteger(v) && v >= 1) || H % Hkv !== 0 || d % 2 !== 0) {
    throw new ShapeError(`${what}: bad shape ${JSON.stringify(s)} (H a multiple of Hkv, d even)`);
  }
  for (const [name, a, want] of arrays) if (a.length !== want) throw new ShapeError(`${what}: ${name} has ${a.length} values, expected ${want}`);
}

function attentionAddon(what: string) {
  const addon = nativeAddon();
  if (addon === null) throw new UnsupportedError(`${what} needs the native addon (its op-by-op form is model's Decoder attention)`);
  return addon;
}

/**
 * Causal self-attention of a training step in one call: y = softmax(causal(scale * rope(q) rope(k)^T)) v per
 * head, query head h reading KV head floor(h / (H / Hkv)); RoPE as HF Llama (rotate_half) from tables cos, sin.
 * Layouts are the projections' own ([B, T, heads, d]): no transposes around it. Native only.
 */
export function attentionTrainF32(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  s: AttentionTrainShape,
  out?: Float32Array,
): Float32Array {
  const { B, T, H, Hkv, d } = s;
  const y = out ?? new Float32Array(B * T * H * d);
  checkAttention('attentionTrainF32', s, [
    ['q', q, B * T * H * d],
    ['k', k, B * T * Hkv * d],
    ['v', v, B * T * Hkv * d],
    ['cos', cos, T * d],
    ['sin', sin, T * d],
    ['y', y, B * T * H * d],
  ]);
  attentionAddon('attentionTrainF32').attentionTrainF32(q, k, v, cos, sin, B, T, H, Hkv, d, s.scale, y);
  return y;
}

/** Gradients of attentionTrainF32 for dy (the probabilities recomputed, nothing saved but q, k, v). */
export function attentionTrainGradF32(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  s: AttentionTrainShape,
  dy: Float32Array,
  out?: { dq: Float32Array; dk: Float32Array; dv: Float32Array },
): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { B, T, H, Hkv, d } = s;
  const r = out ?? { dq: new Float32Array(B * T * H * d), dk: new Float32Array(B * T * Hkv * d), dv: new Float32Array(B * T * Hkv * d) };
  checkAttention('attentionTrainGradF32', s, [
    ['q', q, B * T * H * d],
    ['k', k, B * T * Hkv * d],
    ['v', v, B * T * Hkv * d],
    ['cos', cos, T * d],
    ['sin', sin, T * d],
    ['dy', dy, B * T * H * d],
    ['dq', r.dq, B * T * H * d],
    ['dk', r.dk, B * T * Hkv * d],
    ['dv', r.dv, B * T * Hkv * d],
  ]);
  attentionAddon('attentionTrainGradF32').attentionTrainGradF32(q, k, v, cos, sin, B, T, H, Hkv, d, s.scale, dy, r.dq, r.dk, r.dv);
  return r;
}

/**
 * One part (q, k or v) of the attention-relation KD of packages/losses (attentionRelationKd, whose op-by-op form
 * is its twin): teacher [B, tH, T, td] and student [B, sH, T, sd] regrouped into R relation heads; relations
 * L2-normalised A A^T (cosine) or A A^T / sqrt(D); row softmax clamped at 1e-8; KL(teacher || student) summed over
 * the B R T rows and divided by B R T R. Returns the loss; with dx, writes the student's gradient. Native only.
 */
export function relationKdF32(
  teacher: Float32Array,
  tShape: readonly [number, number, number, number],
  student: Float32Array,
  sShape: readonly [number, number, number, number],
  relationHeads: number,
  cosine: boolean,
  dx?: Float32Array,
): number {
  const [B, tH, T, td] = tShape;
  const [sB, sH, sT, sd] = sShape;
  if (sB !== B || sT !== T) throw new ShapeError(`relationKdF32: teacher [${tShape}] and student [${sShape}] differ in batch or length`);
  if (teacher.length !== B * tH * T * td || student.length !== B * sH * T * sd) throw new ShapeError('relationKdF32: array sizes do not match the shapes');
  if ((tH * td) % relationHeads !== 0 || (sH * sd) % relationHeads !== 0)
    throw new ShapeError(`relationKdF32: H d is not divisible by ${relationHeads} relation heads`);
  if (dx !== undefined && dx.length !== student.length) throw new ShapeError(`relationKdF32: dx has ${dx.length} values, expected ${student.length}`);
  return attentionAddon('relationKdF32').relationKdF32(teacher, tH, td, student, sH, sd, B, T, relationHeads, cosine, dx ?? null);
}

/** One block of the fused head loss: r rows of logits over a vocabulary of V (packages/losses fusedHeadLoss). */
export interface HeadLossBlock {
  r: number;
  V: number;
  /** Answer CE: the target of each row (int32) and its mask (0 = the row has no CE term). */
  ce?: { labels: Int32Array; mask: Float32Array; grad: number };
  /** Logit KD: the teacher's logits [r, V], each row's mask, the temperature. */
  kd?: { teacher: Float32Array; mask: Float32Array; grad: number; tau: number };
}

/**
 * Answer CE and logit KD of a block of student logits z [r, V] in one pass per row: returns the mask-weighted
 * sums over rows of CE = log sum exp(z) - z[label] and of KL(p_t || p_s) with p = softmax(z / tau); with `g`,
 * writes the gradient of ce.grad * CE + kd.grad * KL sums with respect to z: ce.grad mask (softmax(z) - onehot)
 * + kd.grad mask (p_s - p_t). (The tau^2 of the KD loss and the tau of its gradient are the caller's, in grad.)
 */
export function headLossF32(z: Float32Array, b: HeadLossBlock, g?: Float32Array): { ce: number; kl: number } {
  const { r, V } = b;
  if (!Number.isSafeInteger(r) || r < 1 || !Number.isSafeInteger(V) || V < 1) throw new ShapeError(`headLossF32: bad block r=${r} V=${V}`);
  const arrays: [string, ArrayLike<number>, number][] = [['z', z, r * V]];
  if (b.ce !== undefined) arrays.push(['ce.labels', b.ce.labels, r], ['ce.mask', b.ce.mask, r]);
  if (b.kd !== undefined) arrays.push(['kd.teacher', b.kd.teacher, r * V], ['kd.mask', b.kd.mask, r]);
  if (g !== undefined) arrays.push(['g', g, r * V]);
  for (const [name, a, want] of arrays)
    if (a.length !== want) throw new ShapeError(`headLossF32: ${name} has ${a.length} values, expected ${want} (r=${r} V=${V})`);
  const tau = b.kd?.tau ?? 1;
  if (!(tau > 0)) throw new ShapeError(`headLossF32: temperature ${tau} is not > 0`);
  if (b.ce !== undefined) {
    for (let i = 0; i < r; i++) {
      const y = b.ce.labels[i] as number;
      if (b.ce.mask[i] !== 0 && !(y >= 0 && y < V)) throw new ShapeError(`headLossF32: label ${y} of row ${i} is outside [0, ${V})`);
    }
  }
  const addon = nativeAddon();
  if (addon === null) return headLossF32Ts(z, b, g);
  const sums = new Float64Array(2);
  addon.headLossF32(
    z,
    b.kd?.teacher ?? null,
    r,
    V,
    b.ce?.labels ?? null,
    b.ce?.mask ?? null,
    b.kd?.mask ?? null,
    b.ce?.grad ?? 0,
    b.kd?.grad ?? 0,
    tau,
    g ?? null,
    sums,
  );
  return { ce: sums[0] as number, kl: sums[1] as number };
}

/** log softmax(z / tau) of one row in float64. */
function logSoftmaxRow(z: Float32Array, off: number, V: number, tau: number): Float64Array {
  const out = new Float64Array(V);
  let m = -Infinity;
  for (let j = 0; j < V; j++) m = Math.max(m, (z[off + j] as number) / tau);
  let s = 0;
  for (let j = 0; j < V; j++) s += Math.exp((z[off + j] as number) / tau - m);
  const lse = m + Math.log(s);
  for (let j = 0; j < V; j++) out[j] = (z[off + j] as number) / tau - lse;
  return out;
}

/** TypeScript twin of headLossF32 (float64 throughout, rounded to float32 once per gradient value). */
export function headLossF32Ts(z: Float32Array, b: HeadLossBlock, g?: Float32Array): { ce: number; kl: number } {
  const { r, V } = b;
  let ce = 0;
  let kl = 0;
  for (let i = 0; i < r; i++) {
    const row = g === undefined ? null : new Float64Array(V);
    const cm = b.ce?.mask[i] ?? 0;
    if (b.ce !== undefined && cm !== 0) {
      const lp = logSoftmaxRow(z, i * V, V, 1);
      const y = b.ce.labels[i] as number;
      ce += cm * -(lp[y] as number);
      if (row !== null) {
        for (let j = 0; j < V; j++) row[j] = cm * b.ce.grad * Math.exp(lp[j] as number);
        row[y] = (row[y] as number) - cm * b.ce.grad;
      }
    }
    const km = b.kd?.mask[i] ?? 0;
    if (b.kd !== undefined && km !== 0) {
      const ls = logSoftmaxRow(z, i * V, V, b.kd.tau);
      const lt = logSoftmaxRow(b.kd.teacher, i * V, V, b.kd.tau);
      let k = 0;
      for (let j = 0; j < V; j++) {
        const pt = Math.exp(lt[j] as number);
        k += pt * ((lt[j] as number) - (ls[j] as number));
        if (row !== null) row[j] = (row[j] as number) + km * b.kd.grad * (Math.exp(ls[j] as number) - pt);
      }
      kl += km * k;
    }
    if (g !== undefined && row !== null) for (let j = 0; j < V; j++) g[i * V + j] = row[j] as number;
  }
  return { ce, kl };
}

/** The SubLN gain in front of a BitLinear: x is RMS-normalised with it (eps) before quantization. */
export interface BitLinearNorm {
  gain: Float32Array;
  eps: number;
}

function checkNormOf(what: string, s: BitLinearShape, norm: BitLinearNorm): void {
  if (norm.gain.length !== s.k) throw new ShapeError(`${what}: gain has ${norm.gain.length} values, expected k=${s.k}`);
  if (!(norm.eps >= 0)) throw new ShapeError(`${what}: eps ${norm.eps} is not >= 0`);
}

/** bitLinearF32(rmsNorm(x, gain, eps), W) in one call: the normalised rows never leave it. */
export function normBitLinearF32(x: Float32Array, norm: BitLinearNorm, w: Float32Array, s: BitLinearShape, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(s.m * s.n);
  checkShape('normBitLinearF32', s, [
    ['x', x, s.m * s.k],
    ['w', w, s.n * s.k],
    ['y', y, s.m * s.n],
  ]);
  checkNormOf('normBitLinearF32', s, norm);
  const addon = nativeAddon();
  if (addon === null) return normBitLinearF32Ts(x, norm, w, s, y);
  addon.normBitLinearF32(x, norm.gain, norm.eps, w, s.m, s.k, s.n, s.perRow, y);
  return y;
}

/** The backward of normBitLinearF32 (normalised rows recomputed): dx, dgain and dW. */
export function normBitLinearGradF32(
  x: Float32Array,
  norm: BitLinearNorm,
  w: Float32Array,
  s: BitLinearShape,
  dy: Float32Array,
  out?: { dx: Float32Array; dgain: Float32Array; dw: Float32Array },
): { dx: Float32Array; dgain: Float32Array; dw: Float32Array } {
  const r = out ?? { dx: new Float32Array(s.m * s.k), dgain: new Float32Array(s.k), dw: new Float32Array(s.n * s.k) };
  checkShape('normBitLinearGradF32', s, [
    ['x', x, s.m * s.k],
    ['w', w, s.n * s.k],
    ['dy', dy, s.m * s.n],
    ['dx', r.dx, s.m * s.k],
    ['dgain', r.dgain, s.k],
    ['dw', r.dw, s.n * s.k],
  ]);
  checkNormOf('normBitLinearGradF32', s, norm);
  const addon = nativeAddon();
  if (addon === null) return normBitLinearGradF32Ts(x, norm, w, s, dy, r);
  addon.normBitLinearGradF32(x, norm.gain, norm.eps, w, s.m, s.k, s.n, s.perRow, dy, r.dx, r.dgain, r.dw);
  return r;
}

/** TypeScript twin of normBitLinearF32: rmsNormF32Ts, then bitLinearF32Ts. */
export function normBitLinearF32Ts(x: Float32Array, norm: BitLinearNorm, w: Float32Array, s: BitLinearShape, y: Float32Array): Float32Array {
  return bitLinearF32Ts(rmsNormF32Ts(x, norm.gain, norm.eps, new Float32Array(x.length)), w, s, y);
}

/** TypeScript twin of normBitLinearGradF32: the two twins' backward passes chained. */
export function normBitLinearGradF32Ts(
  x: Float32Array,
  norm: BitLinearNorm,
  w: Float32Array,
  s: BitLinearShape,
  dy: Float32Array,
  r: { dx: Float32Array; dgain: Float32Array; dw: Float32Array },
): { dx: Float32Array; dgain: Float32Array; dw: Float32Array } {
  const xn = rmsNormF32Ts(x, norm.gain, norm.eps, new Float32Array(x.length));
  const dxn = new Float32Array(x.length);
  bitLinearGradF32Ts(xn, w, s, dy, dxn, r.dw);
  rmsNormGradF32Ts(x, norm.gain, norm.eps, dxn, r.dx, r.dgain);
  return r;
}
