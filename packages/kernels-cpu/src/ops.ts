/**
 * What a decoder forward needs besides the products, over row-major Float32Arrays: RMSNorm, RoPE (HF
 * rotate_half convention), softmax, SiLU gating and the per-token int8 activation quantizer of BitNet b1.58.
 * Plain TypeScript except the quantizer, which has a native twin (bit-exact, tested); each is tested against
 * an independent formulation (test/ops.test.ts).
 */
import { int8AbsmaxRow } from '@bitdistill/arch';
import { ArgumentError, ShapeError } from '@bitdistill/core';
import { f16ToF32, f32ToF16 } from '@bitdistill/format';
import { nativeAddon } from './native.ts';

const f = Math.fround;

function checkRows(what: string, length: number, rows: number, dim: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(dim) || rows < 0 || dim < 1) {
    throw new ArgumentError(`${what}: rows=${rows}, dim=${dim} must be integers (rows >= 0, dim >= 1)`);
  }
  if (length !== rows * dim) throw new ShapeError(`${what}: ${length} values do not form [${rows}, ${dim}]`);
}

export interface QuantizedActivations {
  /** int8 [rows, dim] */
  q: Int8Array;
  /** [rows] s_b = 127 / max(max|x_b|, 1e-5); x ~ q / s */
  scale: Float32Array;
}

/**
 * Per-token absmax int8 quantization (BitNet b1.58): s = 127 / max(max|x|, 1e-5), q = clamp(round(x * s),
 * -128, 127) with round half to even, all in float32 arithmetic, so q equals what the fake-quantized tfjs
 * student computes (quant's int8QuantRef) before it divides by s.
 */
export function quantizeActivations(x: Float32Array, rows: number, dim: number, out?: QuantizedActivations): QuantizedActivations {
  checkRows('quantizeActivations', x.length, rows, dim);
  const res = out ?? { q: new Int8Array(rows * dim), scale: new Float32Array(rows) };
  if (res.q.length !== rows * dim || res.scale.length !== rows) throw new ShapeError('quantizeActivations: output arrays have the wrong length');
  const addon = nativeAddon();
  if (addon === null) return quantizeActivationsTs(x, rows, dim, res);
  addon.quantizeActivations(x, rows, dim, res.q, res.scale);
  return res;
}

/** TypeScript twin of quantizeActivations (the fallback): arch's int8AbsmaxRow per row; arguments as checked there. */
export function quantizeActivationsTs(x: Float32Array, rows: number, dim: number, res: QuantizedActivations): QuantizedActivations {
  for (let r = 0; r < rows; r++) res.scale[r] = int8AbsmaxRow(x, r * dim, dim, res.q);
  return res;
}

/** y = x / sqrt(mean(x^2) + eps) * gain per row of [rows, dim] (LlamaRMSNorm); sums in float64. */
export function rmsNorm(x: Float32Array, gain: Float32Array, rows: number, dim: number, eps: number, out?: Float32Array): Float32Array {
  checkRows('rmsNorm', x.length, rows, dim);
  if (gain.length !== dim) throw new ShapeError(`rmsNorm: gain has ${gain.length} values, expected ${dim}`);
  const y = out ?? new Float32Array(x.length);
  if (y.length !== x.length) throw new ShapeError(`rmsNorm: output has ${y.length} values, expected ${x.length}`);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[o + i] as number;
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[o + i] = (x[o + i] as number) * inv * (gain[i] as number);
  }
  return y;
}

export interface RopeTables {
  /** [positions, headDim], cos of angle pos * invFreq[i mod headDim/2] (the HF cat(freqs, freqs) layout) */
  cos: Float32Array;
  sin: Float32Array;
  headDim: number;
}

/** HF's default rotary tables: invFreq[i] = theta^(-2i / headDim), angle = position * invFreq. */
export function ropeTables(positions: ArrayLike<number>, headDim: number, theta: number): RopeTables {
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new ArgumentError(`ropeTables: headDim ${headDim} must be even and >= 2`);
  if (!(theta > 0)) throw new ArgumentError(`ropeTables: theta ${theta} must be positive`);
  const half = headDim / 2;
  const n = positions.length;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < half; i++) {
      // HF computes inv_freq and the angle in float32.
      const invFreq = f(1 / f(theta ** f((2 * i) / headDim)));
      const angle = f((positions[t] as number) * invFreq);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * headDim + i] = c;
      cos[t * headDim + i + half] = c;
      sin[t * headDim + i] = s;
      sin[t * headDim + i + half] = s;
    }
  }
  return { cos, sin, headDim };
}

/**
 * RoPE in the HF rotate_half convention, in place: x is [T, heads, headDim] with tables for T positions;
 * out = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[half:], x[:half]).
 */
export function applyRope(x: Float32Array, tokens: number, heads: number, tables: RopeTables): Float32Array {
  const d = tables.headDim;
  const half = d / 2;
  if (x.length !== tokens * heads * d) throw new ShapeError(`applyRope: ${x.length} values do not form [${tokens}, ${heads}, ${d}]`);
  if (tables.cos.length < tokens * d) throw new ShapeError(`applyRope: tables cover ${tables.cos.length / d} positions, need ${tokens}`);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * d;
      for (let i = 0; i < half; i++) {
        const a = x[o + i] as number;
        const b = x[o + i + half] as number;
        x[o + i] = a * (tables.cos[t * d + i] as number) - b * (tables.sin[t * d + i] as number);
        x[o + i + half] = b * (tables.cos[t * d + i + half] as number) + a * (tables.sin[t * d + i + half] as number);
      }
    }
  }
  return x;
}

/** Softmax over each row of [rows, cols], in place; max-subtracted, sums in float64. */
export function softmax(x: Float32Array, rows: number, cols: number): Float32Array {
  checkRows('softmax', x.length, rows, cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let m = -Infinity;
    for (let i = 0; i < cols; i++) m = Math.max(m, x[o + i] as number);
    if (m === -Infinity) {
      // A fully masked row has no distribution; zeros rather than NaN.
      x.fill(0, o, o + cols);
      continue;
    }
    let sum = 0;
    for (let i = 0; i < cols; i++) {
      const e = Math.exp((x[o + i] as number) - m);
      x[o + i] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let i = 0; i < cols; i++) x[o + i] = (x[o + i] as number) * inv;
  }
  return x;
}

/** SiLU gating of a gated FFN: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
export function siluGate(gate: Float32Array, up: Float32Array, out?: Float32Array): Float32Array {
  if (gate.length !== up.length) throw new ShapeError(`siluGate: gate has ${gate.length} values, up has ${up.length}`);
  const y = out ?? new Float32Array(gate.length);
  if (y.length !== gate.length) throw new ShapeError(`siluGate: output has ${y.length} values, expected ${gate.length}`);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i] as number;
    y[i] = (g / (1 + Math.exp(-g))) * (up[i] as number);
  }
  return y;
}

/** Shape of a causal attention step over a KV cache (see attentionCausal). */
export interface AttentionShape {
  /** new positions */
  tokens: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** cache capacity (positions per KV head) */
  capacity: number;
  /** cache positions before the new ones; the new ones must already be written at start .. start+tokens-1 */
  start: number;
  /** score scale, usually 1 / sqrt(headDim) */
  scale: number;
}

function checkAttention(q: Float32Array, kc: Float32Array | Uint16Array, vc: Float32Array | Uint16Array, out: Float32Array, s: AttentionShape): void {
  const ints = [s.tokens, s.heads, s.kvHeads, s.headDim, s.capacity, s.start];
  if (!ints.every((v) => Number.isInteger(v) && v >= 0) || s.tokens < 1 || s.heads < 1 || s.kvHeads < 1 || s.headDim < 1 || s.heads % s.kvHeads !== 0) {
    throw new ArgumentError(`attentionCausal: bad shape ${JSON.stringify(s)} (heads must be a multiple of kvHeads)`);
  }
  if (s.start + s.tokens > s.capacity) throw new ArgumentError(`attentionCausal: ${s.start + s.tokens} positions exceed the cache of ${s.capacity}`);
  const qn = s.tokens * s.heads * s.headDim;
  const cn = s.kvHeads * s.capacity * s.headDim;
  if (q.length !== qn || out.length !== qn) throw new ShapeError(`attentionCausal: q and out must be [${s.tokens}, ${s.heads}, ${s.headDim}]`);
  if (kc.length !== cn || vc.length !== cn) throw new ShapeError(`attentionCausal: caches must be [${s.kvHeads}, ${s.capacity}, ${s.headDim}]`);
}

/** TypeScript twin of attentionCausal (the fallback), sums in float64. */
export function attentionCausalTs(q: Float32Array, kc: Float32Array, vc: Float32Array, out: Float32Array, s: AttentionShape): Float32Array {
  const { tokens: T, heads: H, kvHeads: Hkv, headDim: d, capacity: cap, start } = s;
  const group = H / Hkv;
  const scores = new Float64Array(start + T);
  out.fill(0);
  for (let t = 0; t < T; t++) {
    const n = start + t + 1;
    for (let hh = 0; hh < H; hh++) {
      const g = Math.floor(hh / group);
      const qo = (t * H + hh) * d;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const ko = (g * cap + j) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += (q[qo + i] as number) * (kc[ko + i] as number);
        const v = dot * s.scale;
        scores[j] = v;
        if (v > m) m = v;
      }
      let z = 0;
      for (let j = 0; j < n; j++) {
        const e = Math.exp((scores[j] as number) - m);
        scores[j] = e;
        z += e;
      }
      for (let j = 0; j < n; j++) {
        const p = (scores[j] as number) / z;
        const vo = (g * cap + j) * d;
        for (let i = 0; i < d; i++) out[qo + i] = (out[qo + i] as number) + p * (vc[vo + i] as number);
      }
    }
  }
  return out;
}

/**
 * Causal multi-head attention of `tokens` new positions over a KV cache (grouped-query: head h reads KV head
 * h / (heads / kvHeads)). q, out: [tokens, heads, headDim]; kc, vc: [kvHeads, capacity, headDim]. Position
 * start+t attends to cache rows 0..start+t. Native: float32 on the thread pool, one (token, head) pair per task.
 */
export function attentionCausal(q: Float32Array, kc: Float32Array, vc: Float32Array, shape: AttentionShape, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(q.length);
  checkAttention(q, kc, vc, y, shape);
  const addon = nativeAddon();
  if (addon === null) return attentionCausalTs(q, kc, vc, y, shape);
  addon.attentionF32(q, kc, vc, y, shape.tokens, shape.heads, shape.kvHeads, shape.headDim, shape.capacity, shape.start, shape.scale);
  return y;
}

/**
 * Appends the new positions' K and V (k, v: [tokens, kvHeads, headDim], float32) to a half-precision cache
 * (kc, vc: Uint16Array binary16 [kvHeads, capacity, headDim]) at start .., rounded to nearest even, then runs
 * attentionCausal over it: the arithmetic of the float32 cache holding the rounded values (equal to ~1e-7
 * relative). Half the cache memory and traffic of float32, like llama.cpp's default f16 KV cache.
 */
export function attentionKvF16(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  kc: Uint16Array,
  vc: Uint16Array,
  shape: AttentionShape,
  out?: Float32Array,
): Float32Array {
  const y = out ?? new Float32Array(q.length);
  checkAttention(q, kc, vc, y, shape);
  const kn = shape.tokens * shape.kvHeads * shape.headDim;
  if (k.length !== kn || v.length !== kn) throw new ShapeError(`attentionKvF16: k and v must be [${shape.tokens}, ${shape.kvHeads}, ${shape.headDim}]`);
  const addon = nativeAddon();
  if (addon === null) return attentionKvF16Ts(q, k, v, kc, vc, y, shape);
  addon.attentionKvF16(q, k, v, kc, vc, y, shape.tokens, shape.heads, shape.kvHeads, shape.headDim, shape.capacity, shape.start, shape.scale);
  return y;
}

/** TypeScript twin of attentionKvF16: stores through format's f32ToF16, widens the cache, then attentionCausalTs. */
export function attentionKvF16Ts(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  kc: Uint16Array,
  vc: Uint16Array,
  out: Float32Array,
  s: AttentionShape,
): Float32Array {
  const { tokens: T, kvHeads: Hkv, headDim: d, capacity: cap, start } = s;
  for (let t = 0; t < T; t++)
    for (let g = 0; g < Hkv; g++)
      for (let i = 0; i < d; i++) {
        kc[(g * cap + start + t) * d + i] = f32ToF16(k[(t * Hkv + g) * d + i] as number);
        vc[(g * cap + start + t) * d + i] = f32ToF16(v[(t * Hkv + g) * d + i] as number);
      }
  const widen = (c: Uint16Array): Float32Array => Float32Array.from(c, (h) => f16ToF32(h));
  return attentionCausalTs(q, widen(kc), widen(vc), out, s);
}
