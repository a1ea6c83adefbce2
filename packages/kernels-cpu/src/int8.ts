/**
 * Int8 weights with one float32 scale per row: the runtime's optional form of the embedding table and the
 * lm_head (a vocabulary-sized matrix that dominates a small ternary model's memory and decode time). Symmetric
 * absmax per row: scale = max|w_row| / 127, q = round_half_even(w / scale) in float32, w ~ q * scale.
 * The product `matvecI8` quantizes the activations to int8 as well (w8a8, like llama.cpp's Q8_0 x q8_0), so it
 * is one vpdpbusd per 64 weights and bound by the weights' bandwidth instead of by int8 -> float32 widening.
 */
import { ArgumentError, ShapeError } from '@bitdistill/core';
import { nativeAddon } from './native.ts';
import { quantizeActivationsTs } from './ops.ts';

export interface Int8RowMatrix {
  readonly rows: number;
  readonly cols: number;
  /** int8 [rows, cols] row-major */
  readonly q: Int8Array;
  /** float32 [rows]: w[r, c] ~ q[r, c] * scale[r] */
  readonly scale: Float32Array;
}

const RNE = 6755399441055744; // 1.5 * 2^52: adding and subtracting rounds a double half to even

/**
 * Per-row absmax int8 quantization of w [rows, cols] (float32 arithmetic; an all-zero row gets scale 0).
 * Native on the pool when the addon is loaded (bit-exact with quantizeRowsInt8Ts, tested).
 */
export function quantizeRowsInt8(w: Float32Array, rows: number, cols: number, out?: { q: Int8Array; scale: Float32Array }): Int8RowMatrix {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) throw new ArgumentError(`quantizeRowsInt8: bad shape ${rows} x ${cols}`);
  if (w.length !== rows * cols) throw new ShapeError(`quantizeRowsInt8: ${w.length} values do not form [${rows}, ${cols}]`);
  if (out !== undefined && (out.q.length !== rows * cols || out.scale.length !== rows))
    throw new ShapeError(`quantizeRowsInt8: out arrays do not hold [${rows}, ${cols}] and ${rows} scales`);
  const addon = nativeAddon();
  if (addon === null) {
    const m = quantizeRowsInt8Ts(w, rows, cols);
    if (out === undefined) return m;
    out.q.set(m.q);
    out.scale.set(m.scale);
    return { rows, cols, q: out.q, scale: out.scale };
  }
  const q = out?.q ?? new Int8Array(rows * cols);
  const scale = out?.scale ?? new Float32Array(rows);
  const bad = addon.quantizeRowsI8(w, q, scale, rows, cols);
  if (bad >= 0) throw nonFinite(bad);
  return { rows, cols, q, scale };
}

const nonFinite = (row: number) => new ArgumentError(`quantizeRowsInt8: row ${row} holds a non-finite value`);

/** TypeScript twin of quantizeRowsInt8 (the fallback); throws on a row holding NaN or infinity. */
export function quantizeRowsInt8Ts(w: Float32Array, rows: number, cols: number): Int8RowMatrix {
  const q = new Int8Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let m = 0;
    for (let i = 0; i < cols; i++) m = Math.max(m, Math.abs(w[o + i] as number));
    if (!Number.isFinite(m)) throw nonFinite(r);
    const s = Math.fround(m / 127);
    scale[r] = s;
    if (s === 0) continue;
    const inv = Math.fround(1 / s);
    for (let i = 0; i < cols; i++) q[o + i] = Math.min(127, Math.max(-127, Math.fround((w[o + i] as number) * inv) + RNE - RNE));
  }
  return { rows, cols, q, scale };
}

/** Row r of the matrix as float32 (q * scale rounded once): the int8 embedding lookup. */
export function dequantizeRow(m: Int8RowMatrix, r: number, out: Float32Array, offset = 0): void {
  if (!Number.isInteger(r) || r < 0 || r >= m.rows) throw new ArgumentError(`dequantizeRow: row ${r} outside [0, ${m.rows})`);
  const s = m.scale[r] as number;
  const o = r * m.cols;
  for (let i = 0; i < m.cols; i++) out[offset + i] = Math.fround((m.q[o + i] as number) * s);
}

/**
 * TypeScript twin of matvecI8 (the fallback), bit for bit: each row of x quantized as quantizeActivations does,
 * the int8 x int8 sums exact, y[b, r] = f32(acc * (scale[r] / xs[b])) with the quotient and product in float64.
 */
export function matvecI8Ts(m: Int8RowMatrix, x: Float32Array, batch: number, y: Float32Array): Float32Array {
  const q = { q: new Int8Array(m.cols), scale: new Float32Array(1) };
  for (let b = 0; b < batch; b++) {
    quantizeActivationsTs(x.subarray(b * m.cols, (b + 1) * m.cols), 1, m.cols, q);
    const xs = q.scale[0] as number;
    for (let r = 0; r < m.rows; r++) {
      let acc = 0;
      const o = r * m.cols;
      for (let c = 0; c < m.cols; c++) acc += (q.q[c] as number) * (m.q[o + c] as number);
      y[b * m.rows + r] = Math.fround(acc * ((m.scale[r] as number) / xs));
    }
  }
  return y;
}

/**
 * y [batch, rows] = x [batch, cols] @ (q * scale)^T with the activations quantized too (w8a8, as llama.cpp's Q8_0
 * weights meet q8_0 activations): each row of x becomes int8 with one absmax scale xs (quantizeActivations, the
 * BitLinear quantizer), the products are exact int8 x int8 sums, and y[b, r] = acc * scale[r] / xs[b]. Against the
 * float32 product of x with the dequantized rows the error is at most sum_c |q[r, c] * scale[r]| * 0.5 / xs[b]
 * (half a quantization step per activation). The int8 lm_head / embeddings of the runtime use it.
 */
export function matvecI8(m: Int8RowMatrix, x: Float32Array, batch: number, out?: Float32Array): Float32Array {
  if (!Number.isInteger(batch) || batch < 1) throw new ArgumentError(`matvecI8: batch must be a positive integer, got ${batch}`);
  if (x.length !== batch * m.cols) throw new ShapeError(`matvecI8: x has ${x.length} values, expected [${batch}, ${m.cols}]`);
  const y = out ?? new Float32Array(batch * m.rows);
  if (y.length !== batch * m.rows) throw new ShapeError(`matvecI8: output has ${y.length} values, expected [${batch}, ${m.rows}]`);
  const addon = nativeAddon();
  if (addon === null) return matvecI8Ts(m, x, batch, y);
  addon.matvecI8F32(m.q, m.scale, x, y, m.rows, m.cols, batch);
  return y;
}
