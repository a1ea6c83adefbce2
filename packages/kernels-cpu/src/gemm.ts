/**
 * fp32 products: the blocked SIMD GEMM (the baseline of the kernels benchmark and, batched, the backing of
 * tfjs's BatchMatMul on wasm) and the fp32 matrix-vector product that the ternary one is compared against,
 * plus the streaming-read probe that gives the memory-bandwidth bound. Without the addon they run as plain
 * loops.
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
export function matmulF32(a: Float32Array, b: Float32Array, m: number, k: number, n: number, options: MatMulOptions = {}, out?: Float32Array): Float32Array {
  for (const [name, v] of [
    ['m', m],
    ['k', k],
    ['n', n],
  ] as const)
    checkDim('matmulF32', name, v, 0);
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
export function matmulF32Ts(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  c: Float32Array,
): Float32Array {
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

/** Which matrix of A and of B each output matrix of a batched product reads (numpy / tf.matMul broadcasting). */
export interface BatchBroadcast {
  /** Batch shape of the output. */
  shape: number[];
  /** aIndex[i]: the matrix of A (in row-major order of A's batch shape) that output matrix i reads. */
  aIndex: Int32Array;
  bIndex: Int32Array;
}

/**
 * Broadcasts two batch shapes (the dims before the last two) by numpy rules: shapes are right-aligned, a dim of 1
 * stretches, other mismatches throw a ShapeError.
 */
const batchCache = new Map<string, BatchBroadcast>();

/** broadcastBatch, cached per shape pair (a training step reuses a handful): treat the result as read-only. */
function cachedBroadcastBatch(batchA: readonly number[], batchB: readonly number[]): BatchBroadcast {
  const key = `${batchA.join(',')}|${batchB.join(',')}`;
  let r = batchCache.get(key);
  if (r === undefined) {
    r = broadcastBatch(batchA, batchB);
    if (batchCache.size >= 1024) batchCache.clear();
    batchCache.set(key, r);
  }
  return r;
}

export function broadcastBatch(batchA: readonly number[], batchB: readonly number[]): BatchBroadcast {
  const rank = Math.max(batchA.length, batchB.length);
  const pa = [...new Array<number>(rank - batchA.length).fill(1), ...batchA];
  const pb = [...new Array<number>(rank - batchB.length).fill(1), ...batchB];
  const shape = pa.map((da, i) => {
    const db = pb[i] as number;
    if (da === db || db === 1) return da;
    if (da === 1) return db;
    throw new ShapeError(`batch shapes [${batchA.join(', ')}] and [${batchB.join(', ')}] do not broadcast`);
  });
  // Strides of A's and B's batch dims in matrices; 0 where the dim is broadcast.
  const strides = (p: number[]): number[] => {
    const st = new Array<number>(rank).fill(0);
    let s = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const dim = p[d] as number;
      st[d] = dim === 1 ? 0 : s;
      s *= dim;
    }
    return st;
  };
  const sa = strides(pa);
  const sb = strides(pb);
  const total = shape.reduce((x, y) => x * y, 1);
  const aIndex = new Int32Array(total);
  const bIndex = new Int32Array(total);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < total; i++) {
    let ai = 0;
    let bi = 0;
    for (let d = 0; d < rank; d++) {
      ai += (idx[d] as number) * (sa[d] as number);
      bi += (idx[d] as number) * (sb[d] as number);
    }
    aIndex[i] = ai;
    bIndex[i] = bi;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      if ((idx[d] as number) < (shape[d] as number)) break;
      idx[d] = 0;
    }
  }
  return { shape, aIndex, bIndex };
}

/** Shapes of a batched product: A is [...batchA, m, k] ([..., k, m] with transA), B is [...batchB, k, n] ([..., n, k] with transB). */
export interface BatchMatMulShape {
  batchA: readonly number[];
  batchB: readonly number[];
  m: number;
  k: number;
  n: number;
}

/**
 * C[...batch, m, n] = op(A) @ op(B) per matrix, with the batch dims broadcast (tf.matMul semantics), all
 * row-major float32. Large products split across the pool; many small ones (attention heads) run whole on
 * the threads.
 */
export function batchMatmulF32(a: Float32Array, b: Float32Array, s: BatchMatMulShape, options: MatMulOptions = {}, out?: Float32Array): Float32Array {
  const { m, k, n } = s;
  for (const [name, v] of [
    ['m', m],
    ['k', k],
    ['n', n],
  ] as const)
    checkDim('batchMatmulF32', name, v, 0);
  const { aIndex, bIndex } = cachedBroadcastBatch(s.batchA, s.batchB);
  const countA = s.batchA.reduce((x, y) => x * y, 1);
  const countB = s.batchB.reduce((x, y) => x * y, 1);
  const c = out ?? new Float32Array(aIndex.length * m * n);
  if (a.length !== countA * m * k) throw new ShapeError(`batchMatmulF32: A has ${a.length} values, expected ${countA * m * k}`);
  if (b.length !== countB * k * n) throw new ShapeError(`batchMatmulF32: B has ${b.length} values, expected ${countB * k * n}`);
  if (c.length !== aIndex.length * m * n) throw new ShapeError(`batchMatmulF32: C has ${c.length} values, expected ${aIndex.length * m * n}`);
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const addon = nativeAddon();
  if (addon === null) return batchMatmulF32Ts(a, b, m, k, n, transA, transB, aIndex, bIndex, c);
  addon.gemmBatchF32(a, b, c, m, k, n, transA, transB, aIndex, bIndex);
  return c;
}

/** TypeScript twin of batchMatmulF32 (the fallback): matmulF32Ts per output matrix. */
export function batchMatmulF32Ts(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  aIndex: Int32Array,
  bIndex: Int32Array,
  c: Float32Array,
): Float32Array {
  for (let i = 0; i < aIndex.length; i++) {
    const ai = (aIndex[i] as number) * m * k;
    const bi = (bIndex[i] as number) * k * n;
    matmulF32Ts(a.subarray(ai, ai + m * k), b.subarray(bi, bi + k * n), m, k, n, transA, transB, c.subarray(i * m * n, (i + 1) * m * n));
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
export function streamRead(bytes: Uint8Array, streams = 1): number {
  checkDim('streamRead', 'streams', streams, 1);
  const addon = nativeAddon();
  if (addon !== null) return addon.streamRead(bytes, streams);
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

const HUGE_PAGE = 2 << 20;
/** Below this a buffer gains little from huge pages (and would not start on a fresh mapping): allocAligned. */
const HUGE_MIN_BYTES = 8 << 20;

/**
 * A zero-filled Uint8Array of `bytes` on transparent huge pages where the system allows them (Linux, THP
 * "madvise" or "always"): it starts on a 2 MiB boundary of a larger ArrayBuffer (up to 2 MiB more address space,
 * never touched) and its pages are advised MADV_HUGEPAGE before anything is written. For weights that are
 * streamed once per token: a 4 KiB page stops the hardware prefetchers and costs a TLB miss every 64 cache lines
 * (on the AMD EPYC of docs/results/inference.md two threads read 16 MiB pieces at 33 GB/s on 4 KiB pages and
 * 51-57 GB/s on 2 MiB pages). Below 8 MiB, without the addon and with BITDISTILL_HUGE_PAGES=0 it is allocAligned.
 */
export function allocHugePages(bytes: number): Uint8Array {
  checkDim('allocHugePages', 'bytes', bytes, 1);
  const addon = nativeAddon();
  if (addon === null || bytes < HUGE_MIN_BYTES || process.env['BITDISTILL_HUGE_PAGES'] === '0') return allocAligned(bytes);
  // More than glibc's largest mmap threshold (32 MiB), so the buffer is always a fresh mapping: calloc leaves it
  // untouched and the advice applies to every page.
  const raw = new Uint8Array(Math.max(bytes + HUGE_PAGE, (32 << 20) + 1));
  const offset = addon.adviseHugePages(raw);
  return raw.subarray(offset, offset + bytes);
}

/**
 * Weights that live as long as their model, carved out of chunks at 64-byte aligned offsets: matrices of 0.25-1.5
 * MB each would never fill a 2 MiB page of their own. Chunks double from 1 MiB to 32 MiB (the later ones on huge
 * pages, allocHugePages), so a small model reserves little; a chunk's unused tail is never written.
 */
export class HugePageArena {
  private chunk: Uint8Array = new Uint8Array(0);
  private used = 0;
  private next = 1 << 20;

  /** A zero-filled, 64-byte aligned Uint8Array of `bytes`. */
  take(bytes: number): Uint8Array {
    checkDim('HugePageArena.take', 'bytes', bytes, 1);
    if (bytes > ARENA_MAX_CHUNK / 4) return allocHugePages(bytes);
    if (this.used + bytes > this.chunk.length) {
      while (this.next < 4 * bytes) this.next *= 2;
      this.chunk = allocHugePages(Math.min(this.next, ARENA_MAX_CHUNK));
      this.next = Math.min(2 * this.next, ARENA_MAX_CHUNK);
      this.used = 0;
    }
    const out = this.chunk.subarray(this.used, this.used + bytes);
    this.used += Math.ceil(bytes / 64) * 64;
    return out;
  }
}
const ARENA_MAX_CHUNK = 32 << 20;
