/**
 * Post-training quantization of a weight matrix W [out, in] (row-major, the HF Linear layout) to a uniform
 * `bits`-bit grid, returned dequantized (issue 22, part 3). tfjs-free reference numerics, checked against an
 * independent numpy script (scripts/reference/golden_ptq.py -> test/golden/ptq.json).
 *
 * The grid is the GPTQ reference implementation's (github.com/IST-DASLab/gptq, quant.py: per channel, asymmetric):
 * per output row, or per row and group of `group` input columns, xmin = min(min w, 0), xmax = max(max w, 0) (the
 * range always holds 0; a row of zeros gets [-1, 1]), scale = (xmax - xmin) / (2^bits - 1), zero =
 * round(-xmin / scale), q = clamp(round(w / scale) + zero, 0, 2^bits - 1), dequantized scale * (q - zero).
 * Rounding is half to even (torch.round).
 *
 * RTN rounds every weight to that grid: the baseline of the GPTQ paper. GPTQ (Frantar et al. 2022, "GPTQ:
 * Accurate Post-Training Quantization for Generative Pre-trained Transformers", Algorithm 1) quantizes the columns
 * one at a time and moves each column's rounding error onto the columns not yet quantized, weighted by the inverse
 * Hessian of the layer's output error ||W X^T - Q X^T||^2, H = 2 X^T X / n over calibration inputs X [n, in].
 * Everything runs in float64; the result is rounded to float32 once.
 */
import { BitDistillError, ArgumentError } from '@bitdistill/core';
import { roundHalfEven } from '@bitdistill/arch';

export type PtqMethod = 'rtn' | 'gptq';

export interface PtqGrid {
  bits: number;
  /** Input columns per scale/zero pair; null: one pair per output row. */
  group: number | null;
}

export interface GptqOptions extends PtqGrid {
  /** Columns per lazy-update block (the reference's 128). */
  blockSize?: number;
  /** Diagonal damping as a fraction of mean(diag H) (the reference's 0.01). */
  percdamp?: number;
}

function checkGrid(rows: number, cols: number, w: ArrayLike<number>, grid: PtqGrid): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1 || w.length !== rows * cols)
    throw new ArgumentError(`ptq: W must hold rows x cols = ${rows} x ${cols} values, got ${w.length}`);
  if (!Number.isInteger(grid.bits) || grid.bits < 2 || grid.bits > 8) throw new ArgumentError(`ptq: bits must be an integer in 2..8, got ${grid.bits}`);
  if (grid.group !== null && (!Number.isInteger(grid.group) || grid.group < 1))
    throw new ArgumentError(`ptq: the group size must be a positive integer, got ${grid.group}`, {
      hint: 'e.g. --group 128, or leave it out for one scale per row',
    });
}

/** Scale and zero of one row's values w[start], w[start + 1], ..., w[start + n - 1]. */
function gridParams(w: ArrayLike<number>, start: number, n: number, maxq: number): [scale: number, zero: number] {
  let lo = 0;
  let hi = 0;
  for (let i = start; i < start + n; i++) {
    const v = w[i] as number;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === 0 && hi === 0) [lo, hi] = [-1, 1];
  const scale = (hi - lo) / maxq;
  return [scale, roundHalfEven(-lo / scale)];
}

function quantizeValue(v: number, scale: number, zero: number, maxq: number): number {
  const q = Math.min(Math.max(roundHalfEven(v / scale) + zero, 0), maxq);
  return scale * (q - zero);
}

/** Round to nearest on the grid: W [rows, cols] -> dequantized Q [rows, cols]. */
export function rtnQuantize(w: ArrayLike<number>, rows: number, cols: number, grid: PtqGrid): Float32Array {
  checkGrid(rows, cols, w, grid);
  const maxq = 2 ** grid.bits - 1;
  const g = grid.group ?? cols;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += g) {
      const n = Math.min(g, cols - c0);
      const [scale, zero] = gridParams(w, r * cols + c0, n, maxq);
      for (let c = c0; c < c0 + n; c++) out[r * cols + c] = quantizeValue(w[r * cols + c] as number, scale, zero, maxq);
    }
  }
  return out;
}

/** Lower Cholesky factor L (L L^T = A) of a symmetric positive definite n x n matrix, or null if A is not. */
function cholesky(a: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j] as number;
    for (let k = 0; k < j; k++) d -= (l[j * n + k] as number) ** 2;
    if (!(d > 0)) return null;
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j] as number;
      for (let k = 0; k < j; k++) s -= (l[i * n + k] as number) * (l[j * n + k] as number);
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** H^-1 from its lower Cholesky factor: L^-1 by forward substitution, then L^-T L^-1. */
function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  const li = new Float64Array(n * n); // lower triangular L^-1
  for (let j = 0; j < n; j++) {
    li[j * n + j] = 1 / (l[j * n + j] as number);
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= (l[i * n + k] as number) * (li[k * n + j] as number);
      li[i * n + j] = s / (l[i * n + i] as number);
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += (li[k * n + i] as number) * (li[k * n + j] as number);
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/**
 * GPTQ (the reference's fasterquant, without act-order or static groups): W [rows, cols], H [cols, cols] =
 * 2 X^T X / n (symmetric, float64) -> dequantized Q [rows, cols].
 *
 * Dead input columns (H_ii = 0: an input that was always 0) get H_ii = 1 and their weights are set to 0, as in
 * the reference. H is damped by percdamp * mean(diag H) and Hinv is the upper Cholesky factor U of H^-1
 * (U^T U = H^-1): its row i holds the coefficients that spread column i's error over the columns after it.
 * Per-row grids come from W as given (before the dead columns are zeroed: find_params runs first there); with
 * groups, a group's grid is computed when its first column comes up, from the columns as the reference reads them
 * (the outer W: every earlier block's updates, not the current block's; with group = block size the two agree).
 */
export function gptqQuantize(w: ArrayLike<number>, rows: number, cols: number, hIn: Float64Array, options: GptqOptions): Float32Array {
  checkGrid(rows, cols, w, options);
  if (hIn.length !== cols * cols) throw new ArgumentError(`gptq: H must be ${cols} x ${cols} (the input size), got ${hIn.length} values`);
  const blockSize = options.blockSize ?? 128;
  const percdamp = options.percdamp ?? 0.01;
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new ArgumentError(`gptq: blockSize must be a positive integer, got ${blockSize}`);
  if (!(percdamp >= 0 && Number.isFinite(percdamp))) throw new ArgumentError(`gptq: percdamp must be finite and >= 0, got ${percdamp}`);
  const maxq = 2 ** options.bits - 1;
  const W = Float64Array.from(w);
  const H = Float64Array.from(hIn);
  const scale = new Float64Array(rows);
  const zero = new Float64Array(rows);
  const setGrid = (c0: number, n: number): void => {
    for (let r = 0; r < rows; r++) [scale[r], zero[r]] = gridParams(W, r * cols + c0, n, maxq);
  };
  if (options.group === null) setGrid(0, cols);

  let meanDiag = 0;
  for (let i = 0; i < cols; i++) {
    if (H[i * cols + i] === 0) {
      H[i * cols + i] = 1;
      for (let r = 0; r < rows; r++) W[r * cols + i] = 0;
    }
    meanDiag += (H[i * cols + i] as number) / cols;
  }
  for (let i = 0; i < cols; i++) H[i * cols + i] = (H[i * cols + i] as number) + percdamp * meanDiag;
  const l = cholesky(H, cols);
  const lInv = l === null ? null : cholesky(inverseFromCholesky(l, cols), cols);
  if (l === null || lInv === null || !lInv.every(Number.isFinite))
    throw new BitDistillError('E_NUMERIC', `gptq: the damped Hessian (${cols} x ${cols}) is not positive definite`, {
      hint: 'its calibration inputs hold NaN or infinity, or are too few: use more calibration sequences, or --method rtn',
    });
  const U = new Float64Array(cols * cols); // Hinv: U = L^T, L the lower factor of H^-1 (row-major, upper)
  for (let i = 0; i < cols; i++) for (let j = i; j < cols; j++) U[i * cols + j] = lInv[j * cols + i] as number;

  const Q = new Float32Array(rows * cols);
  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count); // [rows, count]: the block, updated column by column
    for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) W1[r * count + c] = W[r * cols + i1 + c] as number;
    const Err1 = new Float64Array(rows * count);
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (options.group !== null && col % options.group === 0) setGrid(col, Math.min(options.group, cols - col));
      const d = U[col * cols + col] as number;
      const urow = col * cols + i1; // U[col, i1 + j] = U[urow + j]
      for (let r = 0; r < rows; r++) {
        const v = W1[r * count + i] as number;
        const q = quantizeValue(v, scale[r] as number, zero[r] as number, maxq);
        Q[r * cols + col] = q;
        const err = (v - q) / d;
        Err1[r * count + i] = err;
        for (let j = i + 1; j < count; j++) W1[r * count + j] = (W1[r * count + j] as number) - err * (U[urow + j] as number);
      }
    }
    // W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:], one row of W at a time
    const acc = new Float64Array(cols - i2);
    for (let r = 0; r < rows; r++) {
      acc.fill(0);
      for (let i = 0; i < count; i++) {
        const err = Err1[r * count + i] as number;
        const urow = (i1 + i) * cols + i2;
        for (let j = 0; j < acc.length; j++) acc[j] = (acc[j] as number) + err * (U[urow + j] as number);
      }
      for (let j = 0; j < acc.length; j++) W[r * cols + i2 + j] = (W[r * cols + i2 + j] as number) - (acc[j] as number);
    }
  }
  return Q;
}

/** ||W - Q||_F / ||W||_F (0 for an all-zero W quantized to zeros). */
export function relativeWeightError(w: ArrayLike<number>, q: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < w.length; i++) {
    const a = w[i] as number;
    num += (a - (q[i] as number)) ** 2;
    den += a * a;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
}

/** sum over rows of (w - q) H (w - q)^T: GPTQ's objective ||W X^T - Q X^T||^2 (times 2/n) for H = 2 X^T X / n. */
export function hessianError(w: ArrayLike<number>, q: ArrayLike<number>, rows: number, cols: number, h: Float64Array): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = (w[r * cols + c] as number) - (q[r * cols + c] as number);
    for (let i = 0; i < cols; i++) {
      const di = d[i] as number;
      if (di === 0) continue;
      let s = 0;
      for (let j = 0; j < cols; j++) s += (h[i * cols + j] as number) * (d[j] as number);
      total += di * s;
    }
  }
  return total;
}
