/**
 * The reference numerics of BitNet b1.58, the one place they are written: round half to even, absmean ternary
 * weight quantization and per-token int8 absmax activation quantization. Plain loops over typed arrays in
 * float32 arithmetic (Math.fround after every operation), so they match a float32 implementation bit for bit
 * where it is exact; the tfjs quantizers, the kernels' TypeScript twins and the exporter all use these.
 */
import { ArgumentError } from '@bitdistill/core';

export const WEIGHT_QUANT_MODES = ['absmean', 'block256', 'perRow'] as const;
export type WeightQuantMode = (typeof WEIGHT_QUANT_MODES)[number];

const f = Math.fround;

/** Round half to even, as torch.round and tf.round. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function checkWeightQuantMode(mode: string): asserts mode is WeightQuantMode {
  if (!(WEIGHT_QUANT_MODES as readonly string[]).includes(mode)) {
    throw new ArgumentError(`unknown weight quantizer mode '${mode}'`, { hint: `use one of ${WEIGHT_QUANT_MODES.join(', ')}` });
  }
}

/** Scale groups of a tensor of `size` elements whose last axis has `cols` elements: [start, end) ranges. */
export function scaleGroups(size: number, cols: number, mode: WeightQuantMode): [number, number][] {
  const groups: [number, number][] = [];
  const step = mode === 'absmean' ? Math.max(size, 1) : mode === 'block256' ? 256 : cols;
  for (let s = 0; s < size; s += step) groups.push([s, Math.min(size, s + step)]);
  return groups;
}

/** Ternary weight quantization, dequantized: each group's values in {-d, 0, +d}, d = max(mean|W|, 1e-5). */
export function ternaryQuantRef(w: Float32Array, cols: number, mode: WeightQuantMode): { values: Float32Array; scales: Float32Array; codes: Int8Array } {
  checkWeightQuantMode(mode);
  const groups = scaleGroups(w.length, cols, mode);
  const values = new Float32Array(w.length);
  const codes = new Int8Array(w.length);
  const scales = new Float32Array(groups.length);
  groups.forEach(([s, e], g) => {
    const d = absmeanScale(w, s, e);
    scales[g] = d;
    for (let i = s; i < e; i++) {
      const q = ternaryCode(w[i] as number, d);
      codes[i] = q;
      values[i] = f(q * d);
    }
  });
  return { values, scales, codes };
}

/** Absmean scale of w[start, end): d = max(mean|w|, 1e-5), the sum in float64 then one rounding to float32. */
export function absmeanScale(w: Float32Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum += Math.abs(w[i] as number);
  return f(Math.max(f(sum / (end - start)), 1e-5));
}

/** The ternary code of one weight under scale d: clamp(round_half_even(w / d), -1, 1). */
export function ternaryCode(w: number, d: number): number {
  return Math.min(1, Math.max(-1, roundHalfEven(f(w / d))));
}

/**
 * Per-token absmax int8 quantization of one row, x[offset, offset + cols): s = 127 / max(max|x|, 1e-5),
 * q = clamp(round_half_even(x s), -128, 127) written to q[qOffset...]; returns s (x ~ q / s).
 */
export function int8AbsmaxRow(x: Float32Array, offset: number, cols: number, q: Int8Array | Float32Array, qOffset = offset): number {
  let m = 0;
  for (let i = 0; i < cols; i++) m = Math.max(m, Math.abs(x[offset + i] as number));
  const s = f(127 / f(Math.max(m, 1e-5)));
  for (let i = 0; i < cols; i++) q[qOffset + i] = Math.min(127, Math.max(-128, roundHalfEven(f((x[offset + i] as number) * s))));
  return s;
}

/** Per-token (rows of length `cols`) absmax int8 fake quantization, dequantized. */
export function int8QuantRef(x: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += cols) {
    const s = int8AbsmaxRow(x, r, cols, out);
    for (let i = r; i < r + cols; i++) out[i] = f((out[i] as number) / s);
  }
  return out;
}
