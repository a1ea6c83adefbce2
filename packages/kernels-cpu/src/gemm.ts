/**
 * fp32 products: the blocked SIMD GEMM (the baseline of the kernels benchmark and the future backing of
 * tfjs's BatchMatMul) and the fp32 matrix-vector product that the ternary one is compared against, plus the
 * streaming-read probe that gives the memory-bandwidth bound. Without the addon they run as plain loops.
 */
import { ArgumentError, ShapeError } from '@bitdistill/core';
import { nativeAddon } from './native.ts';

export interface MatMulOptions {
  /** A is stored [k, m] (use its transpose). */
  transA?: boolean;
  /** B is stored [n, k] (use its transpose). */
  transB?: boolean;
}

function checkDim(what: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > 2 ** 31) throw new ArgumentError(`${what}: ${name} = ${v} is not an integer in ${min}..2^31`);
}

/**
 * C[m, n] = op(A) @ op(B), all row-major float32: A is [m, k] (or [k, m] with transA), B is [k, n] (or [n, k]
 * with transB). Accumulates in float32 with FMA; blocked, multi-threaded.
 */
export function matmulF32(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  options: MatMulOptions = {},
  out?: Float32Array,
): Float32Array {
  for (const [name, v] of [['m', m], ['k', k], ['n', n]] as const) checkDim('matmulF32', name, v, 0);
  const c = out ?? new Float32Array(m * n);
  if (a.length !== m * k) throw new ShapeError(`matmulF32: A has ${a.length} values, expected ${m * k} (m=${m}, k=${k})`);
  if (b.length !== k * n) throw new ShapeError(`matmulF32: B has ${b.length} values, expected ${k * n} (k=${k}, n=${n})`);
  if (c.length !== m * n) throw new ShapeError(`matmulF32: C has ${c.length} values, expected ${m * n} (m=${m}, n=${n})`);
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const addon = nativeAddon();
  if (addon === null) return matmulF32Ts(a, b, m, k, n, transA, transB, c);
  addon.gemmF32(a, b, c, m, k, n, transA, transB);
  return c;
}

/** TypeScript twin of matmulF32 (the fallback), float32 accumulation; arguments as checked by matmulF32. */
export function matmulF32Ts(a: Float32Array, b: Float32Array, m: number, k: number, n: number, transA: boolean, transB: boolean, c: Float32Array): Float32Array {
  // i-p-j order: the inner loop runs along a row of B and of C.
  const sai = transA ? 1 : k;
  const sap = transA ? m : 1;
  const sbp = transB ? 1 : n;
  const sbj = transB ? k : 1;
  const row = new Float32Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const av = a[i * sai + p * sap] as number;
      for (let j = 0; j < n; j++) row[j] = (row[j] as number) + av * (b[p * sbp + j * sbj] as number);
    }
    c.set(row, i * n);
  }
  return c;
}

/** y[b, o] = sum_i W[o, i] x[b, i] in float32: W is [rows, cols], x is [batch, cols], y is [batch, rows]. */
export function matvecF32(w: Float32Array, x: Float32Array, rows: number, cols: number, batch: number, out?: Float32Array): Float32Array {
  checkDim('matvecF32', 'rows', rows, 1);
  checkDim('matvecF32', 'cols', cols, 1);
  checkDim('matvecF32', 'batch', batch, 1);
  const y = out ?? new Float32Array(batch * rows);
  if (w.length !== rows * cols) throw new ShapeError(`matvecF32: W has ${w.length} values, expected [${rows}, ${cols}]`);
  if (x.length !== batch * cols) throw new ShapeError(`matvecF32: x has ${x.length} values, expected [${batch}, ${cols}]`);
  if (y.length !== batch * rows) throw new ShapeError(`matvecF32: y has ${y.length} values, expected [${batch}, ${rows}]`);
  const addon = nativeAddon();
  if (addon === null) return matvecF32Ts(w, x, rows, cols, batch, y);
  addon.matvecF32(w, x, y, rows, cols, batch);
  return y;
}

/** TypeScript twin of matvecF32 (the fallback); arguments as checked by matvecF32. */
export function matvecF32Ts(w: Float32Array, x: Float32Array, rows: number, cols: number, batch: number, y: Float32Array): Float32Array {
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < rows; o++) {
      let acc = 0;
      for (let i = 0; i < cols; i++) acc = Math.fround(acc + (w[o * cols + i] as number) * (x[b * cols + i] as number));
      y[b * rows + o] = acc;
    }
  }
  return y;
}

/**
 * Reads every byte of `bytes` once on the thread pool (the memory-bandwidth probe of the kernels benchmark)
 * and returns a checksum so the reads cannot be optimised away (its value depends on the path: do not
 * compare it across ISAs).
 */
export function streamRead(bytes: Uint8Array): number {
  const addon = nativeAddon();
  if (addon !== null) return addon.streamRead(bytes);
  let s = 0;
  for (let i = 0; i < bytes.length; i++) s = (s + (bytes[i] as number)) % 2 ** 52;
  return s;
}

/**
 * A zero-filled Uint8Array of `bytes` that starts on a 64-byte (cache-line) boundary when the addon is
 * loaded: a window into a slightly larger ArrayBuffer, so V8 owns and frees the memory as usual.
 */
export function allocAligned(bytes: number): Uint8Array {
  checkDim('allocAligned', 'bytes', bytes, 1);
  const addon = nativeAddon();
  if (addon === null) return new Uint8Array(bytes);
  const raw = new Uint8Array(bytes + 63);
  const offset = (64 - addon.misalignment(raw)) % 64;
  return raw.subarray(offset, offset + bytes);
}
