/**
 * int8 activations x ternary weights. The file format is the Hugging Face BitNet packing (U8 [ceil(out/4), in],
 * code = value + 1, packed row p bits 2i..2i+1 = original row i*ceil(out/4)+p); `repackTernary` turns it into
 * the kernels' layout "t4x256" (README.md "In-memory ternary layout"): 4 output rows per tile, 256 input
 * columns per block, each row's block as 64 bytes whose byte j holds columns j, j+64, j+128, j+192 in bits
 * 0-1, 2-3, 4-5, 6-7. One shift + mask of a 64-byte vector then yields 64 consecutive columns' codes.
 *
 * The products use x . t = x . c - sum(x) with c = t + 1 in {0, 1, 2}: unsigned codes times signed
 * activations is what vpdpbusd / vpmaddubsw multiply. Integer accumulation makes every path exact: native
 * (each ISA) and TypeScript results are equal bit for bit to `ternaryMatMulRef` (tested).
 */
import { ArgumentError, FormatError, ShapeError } from '@bitdistill/core';
import { allocAligned } from './gemm.ts';
import { nativeAddon } from './native.ts';

export const TERNARY_LAYOUT = 't4x256';
const TILE_ROWS = 4;
const BLOCK_COLS = 256;
const BLOCK_BYTES = 64;
const MAX_COLS = 1 << 23; // keeps every int32 accumulator of every path exact (see kernels_avx512.cc)

/** Ternary weights W [rows, cols] (rows = out features) in the kernels' layout. `data` is opaque. */
export interface TernaryMatrix {
  readonly layout: typeof TERNARY_LAYOUT;
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint8Array;
}

/** Bytes of the t4x256 layout for [rows, cols]: whole tiles of 4 rows, whole blocks of 256 columns. */
export function ternaryLayoutBytes(rows: number, cols: number): number {
  return Math.ceil(rows / TILE_ROWS) * Math.ceil(cols / BLOCK_COLS) * TILE_ROWS * BLOCK_BYTES;
}

function checkDims(what: string, rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 1 || cols < 1 || rows > 2 ** 31 || cols > MAX_COLS) {
    throw new ArgumentError(`${what}: rows and cols must be integers with 1 <= rows <= 2^31, 1 <= cols <= 2^23, got ${rows} x ${cols}`);
  }
}

function badCodeError(label: string, index: number, hf: Uint8Array, out: number, inF: number): FormatError {
  const prow = Math.ceil(out / 4);
  const p = Math.floor(index / inF);
  const j = index - p * inF;
  const b = hf[index] as number;
  let slot = 0;
  while (slot < 3 && ((b >> (2 * slot)) & 3) !== 3) slot++;
  return new FormatError(
    label,
    `packed ternary byte [${p}, ${j}] = 0x${b.toString(16).padStart(2, '0')} holds code 3 in bits ${2 * slot}..${2 * slot + 1} (row ${slot * prow + p}); valid codes are 0, 1, 2 for -1, 0, +1`,
    { hint: 'the tensor is not in the Hugging Face BitNet packing (or the file is corrupt)' },
  );
}

/**
 * TypeScript repack (the fallback and the twin of the native one). Writes the layout into `dst` (zero
 * filled, ternaryLayoutBytes long); returns -1 or the index of the first HF byte with code 3 in a real row.
 */
export function repackTernaryTs(hf: Uint8Array, out: number, inF: number, dst: Uint8Array): number {
  const prow = Math.ceil(out / 4);
  for (let p = 0; p < prow; p++) {
    for (let j = 0; j < inF; j++) {
      const b = hf[p * inF + j] as number;
      for (let i = 0; i < 4 && i * prow + p < out; i++) if (((b >> (2 * i)) & 3) === 3) return p * inF + j;
    }
  }
  const nblk = Math.ceil(inF / BLOCK_COLS);
  dst.fill(0x55); // code 1 = weight 0 in every padding slot
  for (let o = 0; o < out; o++) {
    const p = o % prow;
    const shift = 2 * Math.floor(o / prow);
    const t = Math.floor(o / TILE_ROWS);
    const r = o % TILE_ROWS;
    for (let k = 0; k < nblk; k++) {
      const base = ((t * nblk + k) * TILE_ROWS + r) * BLOCK_BYTES;
      for (let jj = 0; jj < BLOCK_BYTES; jj++) {
        let byte = 0;
        for (let s = 0; s < 4; s++) {
          const j = k * BLOCK_COLS + 64 * s + jj;
          const code = j < inF ? ((hf[p * inF + j] as number) >> shift) & 3 : 1;
          byte |= code << (2 * s);
        }
        dst[base + jj] = byte;
      }
    }
  }
  return -1;
}

/**
 * HF BitNet packed U8 [ceil(out/4), in] -> TernaryMatrix [out, in]. Throws FormatError on a code of 3 (named
 * by `label`, e.g. "model.safetensors: model.layers.0.mlp.up_proj.weight"). The native path puts the weights
 * on a 64-byte (cache-line) boundary. `dst`: zero-filled memory of exactly ternaryLayoutBytes(out, inF) to write
 * the layout into (a slice of a stack, see ternaryStack) instead of a new allocation.
 */
export function repackTernary(hfPacked: Uint8Array, out: number, inF: number, label = '<packed ternary>', dst?: Uint8Array): TernaryMatrix {
  checkDims('repackTernary', out, inF);
  if (hfPacked.length !== Math.ceil(out / 4) * inF) {
    throw new ShapeError(`repackTernary: ${hfPacked.length} bytes do not form [${Math.ceil(out / 4)}, ${inF}] (ceil(${out} / 4) rows)`);
  }
  if (dst !== undefined && dst.length !== ternaryLayoutBytes(out, inF))
    throw new ShapeError(`repackTernary: dst has ${dst.length} bytes, the layout of [${out}, ${inF}] takes ${ternaryLayoutBytes(out, inF)}`);
  const data = dst ?? allocAligned(ternaryLayoutBytes(out, inF));
  const addon = nativeAddon();
  const bad = addon === null ? repackTernaryTs(hfPacked, out, inF, data) : addon.repackTernary(hfPacked, out, inF, data);
  if (bad >= 0) throw badCodeError(label, bad, hfPacked, out, inF);
  return { layout: TERNARY_LAYOUT, rows: out, cols: inF, data };
}

function checkProduct(what: string, w: TernaryMatrix, xq: Int8Array, batch: number, y: Int32Array | Float32Array): void {
  if (w.layout !== TERNARY_LAYOUT || w.data.length < ternaryLayoutBytes(w.rows, w.cols)) {
    throw new ArgumentError(`${what}: weights are not a TernaryMatrix from repackTernary`);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new ArgumentError(`${what}: batch must be a positive integer, got ${batch}`);
  if (xq.length !== batch * w.cols) throw new ShapeError(`${what}: x has ${xq.length} values, expected [${batch}, ${w.cols}]`);
  if (y.length !== batch * w.rows) throw new ShapeError(`${what}: output has ${y.length} values, expected [${batch}, ${w.rows}]`);
}

/** TypeScript kernel over the t4x256 layout: acc[b, o] = sum_i c[o, i] x[b, i] (codes c = t + 1). */
function ternaryDotCodesTs(w: TernaryMatrix, xq: Int8Array, batch: number, emit: (b: number, o: number, dotC: number) => void): void {
  const nblk = Math.ceil(w.cols / BLOCK_COLS);
  const tiles = Math.ceil(w.rows / TILE_ROWS);
  const d = w.data;
  for (let t = 0; t < tiles; t++) {
    for (let r = 0; r < TILE_ROWS && t * TILE_ROWS + r < w.rows; r++) {
      for (let b = 0; b < batch; b++) {
        const xo = b * w.cols;
        let acc = 0;
        for (let k = 0; k < nblk; k++) {
          const base = ((t * nblk + k) * TILE_ROWS + r) * BLOCK_BYTES;
          const c0 = k * BLOCK_COLS;
          for (let jj = 0; jj < BLOCK_BYTES; jj++) {
            const byte = d[base + jj] as number;
            for (let s = 0; s < 4; s++) {
              const j = c0 + 64 * s + jj;
              if (j < w.cols) acc += ((byte >> (2 * s)) & 3) * (xq[xo + j] as number);
            }
          }
        }
        emit(b, t * TILE_ROWS + r, acc);
      }
    }
  }
}

function rowSums(xq: Int8Array, batch: number, cols: number): Int32Array {
  const s = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    let acc = 0;
    for (let i = 0; i < cols; i++) acc += xq[b * cols + i] as number;
    s[b] = acc;
  }
  return s;
}

/** TypeScript twin of the native product (the fallback): int32 y [batch, rows]. */
export function ternaryMatMulTs(w: TernaryMatrix, xq: Int8Array, batch: number, y: Int32Array): Int32Array {
  checkProduct('ternaryMatMulTs', w, xq, batch, y);
  const sums = rowSums(xq, batch, w.cols);
  ternaryDotCodesTs(w, xq, batch, (b, o, dotC) => {
    y[b * w.rows + o] = dotC - (sums[b] as number);
  });
  return y;
}

/** TypeScript twin of the native scaled product (the fallback): float32 y [batch, rows]. */
export function ternaryLinearTs(
  w: TernaryMatrix,
  xq: Int8Array,
  actScale: Float32Array,
  weightScale: number,
  batch: number,
  y: Float32Array,
  float32Factor = false,
): Float32Array {
  checkLinear('ternaryLinearTs', w, xq, actScale, weightScale, batch, y);
  const sums = rowSums(xq, batch, w.cols);
  const factor = Array.from(actScale, (s) => (float32Factor ? Math.fround(weightScale / s) : weightScale / s));
  ternaryDotCodesTs(w, xq, batch, (b, o, dotC) => {
    y[b * w.rows + o] = (dotC - (sums[b] as number)) * (factor[b] as number);
  });
  return y;
}

function checkLinear(what: string, w: TernaryMatrix, xq: Int8Array, actScale: Float32Array, weightScale: number, batch: number, y: Float32Array): void {
  checkProduct(what, w, xq, batch, y);
  if (actScale.length !== batch) throw new ShapeError(`${what}: actScale has ${actScale.length} values, expected ${batch}`);
  if (!Number.isFinite(weightScale)) throw new ArgumentError(`${what}: weightScale ${weightScale} is not finite`);
}

/**
 * y[b, o] = sum_i xq[b, i] * t[o, i] as int32: xq is int8 [batch, cols], y is [batch, rows]. Batch 1 is the
 * matrix-vector product; any batch >= 1 works (the kernels tile activations by 4).
 */
export function ternaryMatMul(w: TernaryMatrix, xq: Int8Array, batch: number, out?: Int32Array): Int32Array {
  const y = out ?? new Int32Array(batch * w.rows);
  const addon = nativeAddon();
  if (addon === null) return ternaryMatMulTs(w, xq, batch, y);
  checkProduct('ternaryMatMul', w, xq, batch, y);
  addon.ternaryMatMul(w.data, w.rows, w.cols, xq, batch, y);
  return y;
}

/** Batch-1 form of ternaryMatMul: y[o] = sum_i xq[i] * t[o, i]. */
export function ternaryMatVec(w: TernaryMatrix, xq: Int8Array, out?: Int32Array): Int32Array {
  return ternaryMatMul(w, xq, 1, out);
}

/**
 * The BitLinear product with scales applied: y[b, o] = acc[b, o] * (weightScale / actScale[b]) in float64,
 * rounded once to float32. actScale[b] = 127 / max|x_b| from quantizeActivations; weightScale is the
 * multiplicative per-tensor scale of the export (weight = ternary x weightScale). With `float32Factor` the
 * factor is first rounded to float32, i.e. y = fround(acc * fround(weightScale / actScale[b])): the two
 * roundings of the tfjs student's integer-form bitLinear, which the runtime reproduces bit for bit.
 */
export function ternaryLinear(
  w: TernaryMatrix,
  xq: Int8Array,
  actScale: Float32Array,
  weightScale: number,
  batch: number,
  out?: Float32Array,
  float32Factor = false,
): Float32Array {
  const y = out ?? new Float32Array(batch * w.rows);
  const addon = nativeAddon();
  if (addon === null) return ternaryLinearTs(w, xq, actScale, weightScale, batch, y, float32Factor);
  checkLinear('ternaryLinear', w, xq, actScale, weightScale, batch, y);
  addon.ternaryMatMul(w.data, w.rows, w.cols, xq, batch, y, actScale, weightScale, float32Factor);
  return y;
}

/**
 * Ternary matrices of the same input size stacked by rows into one [sum rows, cols] matrix: the t4x256 layout is
 * tile-major, so a stack is its parts' layouts one after another, and one product then reads q, k and v (or gate
 * and up) in one pass and one thread-pool dispatch. `ternaryStack` allocates the stack and says where each part
 * goes (repackTernary with `dst` = that slice); every part needs a multiple of 4 rows (whole tiles): null otherwise.
 * `alloc` gives the stack's zero-filled memory (default allocAligned; the runtime's HugePageArena).
 */
export function ternaryStack(
  parts: readonly { rows: number; cols: number }[],
  alloc: (bytes: number) => Uint8Array = allocAligned,
): { matrix: TernaryMatrix; slices: Uint8Array[]; seg: Int32Array } | null {
  const first = parts[0];
  if (first === undefined || parts.some((p) => p.rows % TILE_ROWS !== 0 || p.rows < 1 || p.cols !== first.cols)) return null;
  checkDims('ternaryStack', first.rows, first.cols);
  const sizes = parts.map((p) => ternaryLayoutBytes(p.rows, p.cols));
  const data = alloc(sizes.reduce((a, b) => a + b, 0));
  let o = 0;
  let end = 0;
  const slices = sizes.map((n) => data.subarray(o, (o += n)));
  const seg = Int32Array.from(parts, (p) => (end += p.rows));
  return { matrix: { layout: TERNARY_LAYOUT, rows: end, cols: first.cols, data }, slices, seg };
}

/** Row segments of a ternaryStack matrix: each part's end row and its own weight scale. */
export interface TernarySegments {
  ends: Int32Array;
  scales: Float64Array;
}

/**
 * ternaryLinear over a ternaryStack matrix: rows [ends[s-1], ends[s]) use weight scale scales[s]. Each output is
 * exactly what ternaryLinear of that part alone gives (same two roundings with float32Factor).
 */
export function ternaryLinearStacked(
  w: TernaryMatrix,
  xq: Int8Array,
  actScale: Float32Array,
  seg: TernarySegments,
  batch: number,
  out?: Float32Array,
  float32Factor = false,
): Float32Array {
  const y = out ?? new Float32Array(batch * w.rows);
  const n = seg.ends.length;
  let ok = n >= 1 && seg.scales.length === n && seg.ends[n - 1] === w.rows;
  for (let s = 0; ok && s < n; s++) ok = (seg.ends[s] as number) > (s === 0 ? 0 : (seg.ends[s - 1] as number)) && Number.isFinite(seg.scales[s]);
  if (!ok) throw new ArgumentError(`ternaryLinearStacked: segment ends must rise strictly to ${w.rows}, one finite scale each`);
  const addon = nativeAddon();
  if (addon === null) return ternaryLinearStackedTs(w, xq, actScale, seg, batch, y, float32Factor);
  checkLinear('ternaryLinearStacked', w, xq, actScale, 1, batch, y);
  addon.ternaryMatMul(w.data, w.rows, w.cols, xq, batch, y, actScale, seg.scales, float32Factor, seg.ends);
  return y;
}

/** TypeScript twin of ternaryLinearStacked (the fallback). */
export function ternaryLinearStackedTs(
  w: TernaryMatrix,
  xq: Int8Array,
  actScale: Float32Array,
  seg: TernarySegments,
  batch: number,
  y: Float32Array,
  float32Factor = false,
): Float32Array {
  checkLinear('ternaryLinearStackedTs', w, xq, actScale, 1, batch, y);
  const sums = rowSums(xq, batch, w.cols);
  const factor = (s: number, b: number) => {
    const f = (seg.scales[s] as number) / (actScale[b] as number);
    return float32Factor ? Math.fround(f) : f;
  };
  ternaryDotCodesTs(w, xq, batch, (b, o, dotC) => {
    let s = 0;
    while (o >= (seg.ends[s] as number)) s++;
    y[b * w.rows + o] = (dotC - (sums[b] as number)) * factor(s, b);
  });
  return y;
}
