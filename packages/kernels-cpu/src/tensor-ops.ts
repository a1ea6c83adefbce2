/**
 * Tensor ops over plain typed arrays for backing tfjs kernels (the wasm backend runs these single-threaded
 * and, for broadcasts, outer-axis reductions and transposes, slowly): unary maps, broadcast binary ops and
 * compares, reductions of [outer, r, inner] over r, casts to float32, strided copies (transpose, concat,
 * split) and row gathers. Native on the thread pool when the addon is loaded; each has a TypeScript twin
 * (`...Ts`), the fallback and the reference of the tests. No tfjs here: shapes are plain number arrays.
 */
import { roundHalfEven } from '@bitdistill/arch';
import { ArgumentError, ShapeError, shapeSize } from '@bitdistill/core';
import { nativeAddon } from './native.ts';

// Op codes: positions in these lists (native/tensor_ops.h uses the same numbers).
export const UNARY_OPS = ['exp', 'log', 'neg', 'abs', 'sqrt', 'rsqrt', 'square', 'sigmoid', 'round', 'clip', 'reciprocal'] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'max', 'min'] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];
export const COMPARE_OPS = ['equal', 'notEqual', 'less', 'lessEqual', 'greater', 'greaterEqual'] as const;
export type CompareOp = (typeof COMPARE_OPS)[number];
export const REDUCE_OPS = ['sum', 'max', 'min', 'mean'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

const MAX_RANK = 8;
const f = Math.fround;

function code<T extends string>(list: readonly T[], op: T, what: string): number {
  const i = list.indexOf(op); // lists of at most 11 names
  if (i < 0) throw new ArgumentError(`${what}: unknown op '${op}'`, { hint: `one of ${list.join(', ')}` });
  return i;
}

function checkShape(what: string, shape: readonly number[]): void {
  for (const d of shape) if (!Number.isSafeInteger(d) || d < 0 || d > 2 ** 31) throw new ShapeError(`${what}: bad dim ${d} in [${shape.join(', ')}]`);
}

// ---------------------------------------------------------------------------------------------------------
// Unary

/** y = op(x) elementwise in float32; `lo`, `hi` bound 'clip'. */
export function unaryF32(op: UnaryOp, x: Float32Array, out?: Float32Array, lo = 0, hi = 0): Float32Array {
  const c = code(UNARY_OPS, op, 'unaryF32');
  const y = out ?? new Float32Array(x.length);
  if (y.length !== x.length) throw new ShapeError(`unaryF32: y has ${y.length} values, x ${x.length}`);
  const addon = nativeAddon();
  if (addon === null) return unaryF32Ts(op, x, y, lo, hi);
  addon.unaryF32(c, x, y, lo, hi);
  return y;
}

/** TypeScript twin of unaryF32: the float64 function rounded to float32 once. */
export function unaryF32Ts(op: UnaryOp, x: Float32Array, y: Float32Array, lo = 0, hi = 0): Float32Array {
  const fn: Record<UnaryOp, (v: number) => number> = {
    exp: Math.exp,
    log: Math.log,
    neg: (v) => -v,
    abs: Math.abs,
    sqrt: Math.sqrt,
    rsqrt: (v) => 1 / Math.sqrt(v),
    square: (v) => v * v,
    sigmoid: (v) => 1 / (1 + Math.exp(-v)),
    round: roundHalfEven,
    clip: (v) => (v < f(lo) ? f(lo) : v > f(hi) ? f(hi) : v),
    reciprocal: (v) => 1 / v,
  };
  const g = fn[op];
  for (let i = 0; i < x.length; i++) y[i] = g(x[i] as number);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Broadcast binary ops and compares

/**
 * A broadcast of two shapes (numpy rules) reduced to the fewest dims: `shape` is the output's index space
 * (same element count as `outShape`), `aStrides` / `bStrides` the element strides of each operand in it (0
 * where it is broadcast). Dims of size 1 are dropped and neighbours that both operands walk contiguously
 * (or both broadcast) are merged, so [8,4,128,64] x [128,64] becomes [32, 8192] with b strides [0, 1].
 */
export interface BroadcastPlan {
  outShape: number[];
  shape: number[];
  aStrides: number[];
  bStrides: number[];
}

/** A plan with its Int32Array arguments for the addon, cached per shape pair (a training step reuses few). */
interface CompiledPlan {
  plan: BroadcastPlan;
  shape: Int32Array;
  aStrides: Int32Array;
  bStrides: Int32Array;
}
const PLAN_CACHE_LIMIT = 4096;
const planCache = new Map<string, CompiledPlan>();

function compiledPlan(aShape: readonly number[], bShape: readonly number[]): CompiledPlan {
  const key = `${aShape.join(',')}|${bShape.join(',')}`;
  let c = planCache.get(key);
  if (c === undefined) {
    const plan = makeBroadcastPlan(aShape, bShape);
    c = { plan, shape: Int32Array.from(plan.shape), aStrides: Int32Array.from(plan.aStrides), bStrides: Int32Array.from(plan.bStrides) };
    if (planCache.size >= PLAN_CACHE_LIMIT) planCache.clear();
    planCache.set(key, c);
  }
  return c;
}

/** The broadcast plan of two shapes (cached: treat the result as read-only). */
export function broadcastPlan(aShape: readonly number[], bShape: readonly number[]): BroadcastPlan {
  return compiledPlan(aShape, bShape).plan;
}

function makeBroadcastPlan(aShape: readonly number[], bShape: readonly number[]): BroadcastPlan {
  checkShape('broadcast', aShape);
  checkShape('broadcast', bShape);
  const rank = Math.max(aShape.length, bShape.length);
  const pa = [...new Array<number>(rank - aShape.length).fill(1), ...aShape];
  const pb = [...new Array<number>(rank - bShape.length).fill(1), ...bShape];
  const outShape = pa.map((da, i) => {
    const db = pb[i] as number;
    if (da === db || db === 1) return da;
    if (da === 1) return db;
    throw new ShapeError(`Operands could not be broadcast together with shapes ${aShape} and ${bShape}.`);
  });
  const strides = (p: number[]): number[] => {
    const st = new Array<number>(rank).fill(0);
    let s = 1;
    for (let d = rank - 1; d >= 0; d--) {
      st[d] = p[d] === 1 ? 0 : s;
      s *= p[d] as number;
    }
    return st;
  };
  const sa = strides(pa);
  const sb = strides(pb);
  const shape: number[] = [];
  const aStrides: number[] = [];
  const bStrides: number[] = [];
  for (let d = 0; d < rank; d++) {
    const n = outShape[d] as number;
    if (n === 1) continue;
    const k = shape.length - 1;
    // Dim d joins the previous kept dim when each operand either steps over it contiguously or broadcasts both.
    const mergeable = (prev: number, cur: number): boolean => (prev === 0 && cur === 0) || (prev !== 0 && cur !== 0 && prev === cur * n);
    if (k >= 0 && mergeable(aStrides[k] as number, sa[d] as number) && mergeable(bStrides[k] as number, sb[d] as number)) {
      shape[k] = (shape[k] as number) * n;
      aStrides[k] = sa[d] as number;
      bStrides[k] = sb[d] as number;
    } else {
      shape.push(n);
      aStrides.push(sa[d] as number);
      bStrides.push(sb[d] as number);
    }
  }
  if (shape.length === 0) return { outShape, shape: [1], aStrides: [0], bStrides: [0] };
  if (shape.length > MAX_RANK) throw new ShapeError(`broadcast: more than ${MAX_RANK} dims after merging (${shape.length})`);
  return { outShape, shape, aStrides, bStrides };
}

/** Calls fn(outIndex, aIndex, bIndex) over a plan's index space in row-major order. */
function forEachIndex(p: BroadcastPlan, fn: (i: number, ia: number, ib: number) => void): void {
  const total = shapeSize(p.shape);
  const rank = p.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < total; i++) {
    fn(i, ia, ib);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d] = (idx[d] as number) + 1;
      ia += p.aStrides[d] as number;
      ib += p.bStrides[d] as number;
      if ((idx[d] as number) < (p.shape[d] as number)) break;
      ia -= (p.aStrides[d] as number) * (p.shape[d] as number);
      ib -= (p.bStrides[d] as number) * (p.shape[d] as number);
      idx[d] = 0;
    }
  }
}

function checkOperands(
  what: string,
  a: ArrayLike<number>,
  aShape: readonly number[],
  b: ArrayLike<number>,
  bShape: readonly number[],
  outLen: number,
  plan: BroadcastPlan,
): void {
  if (a.length !== shapeSize(aShape)) throw new ShapeError(`${what}: a has ${a.length} values, shape [${aShape.join(', ')}]`);
  if (b.length !== shapeSize(bShape)) throw new ShapeError(`${what}: b has ${b.length} values, shape [${bShape.join(', ')}]`);
  if (outLen !== shapeSize(plan.outShape)) throw new ShapeError(`${what}: y has ${outLen} values, expected ${shapeSize(plan.outShape)}`);
}

/** y = a op b in float32 with broadcasting; y has the broadcast shape (`broadcastPlan(...).outShape`). */
export function binaryF32(
  op: BinaryOp,
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  out?: Float32Array,
): Float32Array {
  const c = code(BINARY_OPS, op, 'binaryF32');
  const cp = compiledPlan(aShape, bShape);
  const y = out ?? new Float32Array(shapeSize(cp.plan.outShape));
  checkOperands('binaryF32', a, aShape, b, bShape, y.length, cp.plan);
  const addon = nativeAddon();
  if (addon === null) return binaryF32Ts(op, a, b, cp.plan, y);
  addon.binaryF32(c, a, b, y, cp.shape, cp.aStrides, cp.bStrides);
  return y;
}

/** TypeScript twin of binaryF32 over a plan. */
export function binaryF32Ts(op: BinaryOp, a: Float32Array, b: Float32Array, plan: BroadcastPlan, y: Float32Array): Float32Array {
  const fn: Record<BinaryOp, (u: number, v: number) => number> = {
    add: (u, v) => u + v,
    sub: (u, v) => u - v,
    mul: (u, v) => u * v,
    div: (u, v) => u / v,
    max: (u, v) => (u > v ? u : v),
    min: (u, v) => (u < v ? u : v),
  };
  const g = fn[op];
  forEachIndex(plan, (i, ia, ib) => {
    y[i] = g(a[ia] as number, b[ib] as number);
  });
  return y;
}

/** y = (a op b) ? 1 : 0 with broadcasting (tfjs bool); a and b are both float32 or both int32. */
export function compare(
  op: CompareOp,
  a: Float32Array | Int32Array,
  aShape: readonly number[],
  b: Float32Array | Int32Array,
  bShape: readonly number[],
  out?: Uint8Array,
): Uint8Array {
  const c = code(COMPARE_OPS, op, 'compare');
  const cp = compiledPlan(aShape, bShape);
  const y = out ?? new Uint8Array(shapeSize(cp.plan.outShape));
  checkOperands('compare', a, aShape, b, bShape, y.length, cp.plan);
  const isInt = a instanceof Int32Array;
  if (isInt !== b instanceof Int32Array) throw new ArgumentError('compare: a and b must both be float32 or both int32');
  const addon = nativeAddon();
  if (addon === null) return compareTs(op, a, b, cp.plan, y);
  addon.compare(c, isInt, a, b, y, cp.shape, cp.aStrides, cp.bStrides);
  return y;
}

/** TypeScript twin of compare over a plan. */
export function compareTs(op: CompareOp, a: ArrayLike<number>, b: ArrayLike<number>, plan: BroadcastPlan, y: Uint8Array): Uint8Array {
  const fn: Record<CompareOp, (u: number, v: number) => boolean> = {
    equal: (u, v) => u === v,
    notEqual: (u, v) => u !== v,
    less: (u, v) => u < v,
    lessEqual: (u, v) => u <= v,
    greater: (u, v) => u > v,
    greaterEqual: (u, v) => u >= v,
  };
  const g = fn[op];
  forEachIndex(plan, (i, ia, ib) => {
    y[i] = g(a[ia] as number, b[ib] as number) ? 1 : 0;
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Reductions and casts

/**
 * x viewed as [outer, r, inner]: y[o, i] = op over j of x[o, j, i], float32 ('mean' = sum / r). Any
 * contiguous block of axes is such a view (outer = the dims before it, inner = the dims after).
 */
export function reduceF32(op: ReduceOp, x: Float32Array, outer: number, r: number, inner: number, out?: Float32Array): Float32Array {
  const c = code(REDUCE_OPS, op, 'reduceF32');
  checkShape('reduceF32', [outer, r, inner]);
  const y = out ?? new Float32Array(outer * inner);
  if (x.length !== outer * r * inner) throw new ShapeError(`reduceF32: x has ${x.length} values, expected [${outer}, ${r}, ${inner}]`);
  if (y.length !== outer * inner) throw new ShapeError(`reduceF32: y has ${y.length} values, expected [${outer}, ${inner}]`);
  const addon = nativeAddon();
  if (addon === null) return reduceF32Ts(op, x, outer, r, inner, y);
  addon.reduceF32(c, x, y, outer, r, inner);
  return y;
}

/** TypeScript twin of reduceF32: one float32 accumulator per output, j in order. */
export function reduceF32Ts(op: ReduceOp, x: Float32Array, outer: number, r: number, inner: number, y: Float32Array): Float32Array {
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = op === 'max' ? -Infinity : op === 'min' ? Infinity : 0;
      for (let j = 0; j < r; j++) {
        const v = x[(o * r + j) * inner + i] as number;
        if (op === 'max') acc = v > acc ? v : acc;
        else if (op === 'min') acc = v < acc ? v : acc;
        else acc = f(acc + v);
      }
      y[o * inner + i] = op === 'mean' ? acc / r : acc;
    }
  }
  return y;
}

/** y = float32(x) for bool (Uint8Array) or int32 data. */
export function castToF32(x: Uint8Array | Int32Array, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(x.length);
  if (y.length !== x.length) throw new ShapeError(`castToF32: y has ${y.length} values, x ${x.length}`);
  const addon = nativeAddon();
  if (addon === null) {
    y.set(x);
    return y;
  }
  addon.castToF32(x, y);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Data movement (4-byte elements: float32 data, or int32 data seen through a Float32Array)

/** A strided view: element idx sits at offset + sum(idx[d] * strides[d]). */
export interface StridedView {
  offset: number;
  strides: readonly number[];
}

/**
 * For every index of `shape`: dst[dst view] = src[src view]. Bits are copied, never converted, so a
 * Float32Array over int32 data is fine. Rank 1..8; dims may be reordered freely by the caller.
 */
export function copyStrided32(src: Float32Array, s: StridedView, dst: Float32Array, d: StridedView, shape: readonly number[]): void {
  checkShape('copyStrided32', shape);
  if (s.strides.length !== shape.length || d.strides.length !== shape.length) throw new ShapeError('copyStrided32: strides and shape differ in rank');
  if (shapeSize(shape) === 0) return;
  const addon = nativeAddon();
  if (addon === null) {
    copyStrided32Ts(src, s, dst, d, shape);
    return;
  }
  // The native side wants rank >= 2; a leading dim of 1 costs nothing.
  const pad = shape.length < 2 ? 2 - shape.length : 0;
  const sh = [...new Array<number>(pad).fill(1), ...shape];
  const ss = [...new Array<number>(pad).fill(0), ...s.strides];
  const ds = [...new Array<number>(pad).fill(0), ...d.strides];
  addon.copyStrided32(src, s.offset, Int32Array.from(ss), dst, d.offset, Int32Array.from(ds), Int32Array.from(sh));
}

/** TypeScript twin of copyStrided32. */
export function copyStrided32Ts(src: Float32Array, s: StridedView, dst: Float32Array, d: StridedView, shape: readonly number[]): void {
  const u32s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const u32d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  forEachIndex({ outShape: [...shape], shape: [...shape], aStrides: [...s.strides], bStrides: [...d.strides] }, (_i, is, id) => {
    u32d[d.offset + id] = u32s[s.offset + is] as number;
  });
}

/**
 * out = transpose(x, perm) for 4-byte elements (out[i0, i1, ...] = x[j] with j's dims permuted as tf.transpose).
 * The copy runs over the output with dims of size 1 dropped, neighbours that stay neighbours merged, and the
 * input's contiguous dim placed second to last, so a 2-D transpose becomes a tiled block copy.
 */
export function transpose32(x: Float32Array, shape: readonly number[], perm: readonly number[], out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(x.length);
  const plan = transposePlan(shape, perm);
  if (x.length !== plan.size || y.length !== x.length) throw new ShapeError(`transpose32: ${x.length} / ${y.length} values for shape [${shape.join(', ')}]`);
  if (plan.size === 0) return y;
  const addon = nativeAddon();
  if (addon === null) copyStrided32Ts(x, { offset: 0, strides: [...plan.src] }, y, { offset: 0, strides: [...plan.dst] }, [...plan.shape]);
  else addon.copyStrided32(x, 0, plan.src, y, 0, plan.dst, plan.shape);
  return y;
}

/** A transpose as a strided copy (see transpose32), cached per shape and perm. */
interface TransposePlan {
  size: number;
  shape: Int32Array;
  src: Int32Array;
  dst: Int32Array;
}
const transposeCache = new Map<string, TransposePlan>();

function transposePlan(shape: readonly number[], perm: readonly number[]): TransposePlan {
  const key = `${shape.join(',')}|${perm.join(',')}`;
  const hit = transposeCache.get(key);
  if (hit !== undefined) return hit;
  checkShape('transpose32', shape);
  const rank = shape.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new ArgumentError(`transpose32: perm [${perm.join(', ')}] is not a permutation of ${rank} dims`);
  }
  const inStrides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStrides[d] = (inStrides[d + 1] as number) * (shape[d + 1] as number);
  // Output dims with their sizes, input strides and (contiguous) output strides.
  const outShape = perm.map((p) => shape[p] as number);
  const outStrides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) outStrides[d] = (outStrides[d + 1] as number) * (outShape[d + 1] as number);
  const plan = copyPlan(
    perm.map((p, i) => ({ n: shape[p] as number, s: inStrides[p] as number, d: outStrides[i] as number })),
    shapeSize(shape),
  );
  if (transposeCache.size >= PLAN_CACHE_LIMIT) transposeCache.clear();
  transposeCache.set(key, plan);
  return plan;
}

/**
 * A strided copy over dims {n, s (source stride), d (destination stride)} in row-major order of the
 * destination, simplified for the native copy: dims of size 1 dropped, neighbours that both sides walk
 * contiguously merged, the source-contiguous dim placed second to last when the destination's last dim is
 * not it (the native copy then transposes 16 x 16 tiles), padded to rank 2.
 */
function copyPlan(dims: { n: number; s: number; d: number }[], size: number): TransposePlan {
  const merged: { n: number; s: number; d: number }[] = [];
  for (const e of dims) {
    if (e.n === 1) continue;
    const last = merged[merged.length - 1];
    if (last !== undefined && last.s === e.s * e.n && last.d === e.d * e.n) {
      last.n *= e.n;
      last.s = e.s;
      last.d = e.d;
    } else merged.push({ ...e });
  }
  const k = merged.findIndex((e) => e.s === 1);
  if (k >= 0 && k < merged.length - 2) {
    const [e] = merged.splice(k, 1);
    merged.splice(merged.length - 1, 0, e as { n: number; s: number; d: number });
  }
  while (merged.length < 2) merged.unshift({ n: 1, s: 0, d: 0 });
  if (merged.length > MAX_RANK) throw new ShapeError(`strided copy: more than ${MAX_RANK} dims after merging (${merged.length})`);
  return {
    size,
    shape: Int32Array.from(merged, (e) => e.n),
    src: Int32Array.from(merged, (e) => e.s),
    dst: Int32Array.from(merged, (e) => e.d),
  };
}

/**
 * out = tile(x, reps) for 4-byte elements (tf.tile; with x's dims of 1 it is tf.broadcastTo): out has shape
 * x.shape[i] * reps[i] and out[idx] = x[idx mod x.shape]. One strided copy whose repeated dims have source
 * stride 0.
 */
export function tile32(x: Float32Array, shape: readonly number[], reps: readonly number[], out?: Float32Array): Float32Array {
  checkShape('tile32', shape);
  checkShape('tile32', reps);
  if (reps.length !== shape.length) throw new ArgumentError(`tile32: reps [${reps.join(', ')}] do not match the rank of [${shape.join(', ')}]`);
  if (x.length !== shapeSize(shape)) throw new ShapeError(`tile32: ${x.length} values for shape [${shape.join(', ')}]`);
  const outShape = shape.map((d, i) => d * (reps[i] as number));
  const y = out ?? new Float32Array(shapeSize(outShape));
  if (y.length !== shapeSize(outShape)) throw new ShapeError(`tile32: y has ${y.length} values, expected ${shapeSize(outShape)}`);
  if (y.length === 0) return y;
  const rank = shape.length;
  const inStrides = new Array<number>(rank).fill(1);
  const outStrides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) {
    inStrides[d] = (inStrides[d + 1] as number) * (shape[d + 1] as number);
    outStrides[d] = (outStrides[d + 1] as number) * (outShape[d + 1] as number);
  }
  // Output index o_i = r_i * shape_i + s_i: a repeat dim (source stride 0) then the source's own dim.
  const dims = shape.flatMap((n, i) => [
    { n: reps[i] as number, s: 0, d: n * (outStrides[i] as number) },
    { n, s: inStrides[i] as number, d: outStrides[i] as number },
  ]);
  const plan = copyPlan(dims, y.length);
  const addon = nativeAddon();
  if (addon === null) copyStrided32Ts(x, { offset: 0, strides: [...plan.src] }, y, { offset: 0, strides: [...plan.dst] }, [...plan.shape]);
  else addon.copyStrided32(x, 0, plan.src, y, 0, plan.dst, plan.shape);
  return y;
}

/**
 * y[i, :] = x[idx[i], :] for rows of `rowLen` 4-byte elements (an embedding lookup). Throws an ArgumentError
 * naming the first index outside [0, rows).
 */
export function gatherRows32(x: Float32Array, rowLen: number, idx: Int32Array, out?: Float32Array): Float32Array {
  checkShape('gatherRows32', [rowLen]);
  if (rowLen === 0 || x.length % rowLen !== 0) throw new ShapeError(`gatherRows32: ${x.length} values are not rows of ${rowLen}`);
  const rows = x.length / rowLen;
  const y = out ?? new Float32Array(idx.length * rowLen);
  if (y.length !== idx.length * rowLen) throw new ShapeError(`gatherRows32: y has ${y.length} values, expected ${idx.length * rowLen}`);
  const addon = nativeAddon();
  const bad = addon === null ? gatherRows32Ts(x, rowLen, idx, y) : addon.gatherRows32(x, rowLen, idx, y);
  if (bad >= 0) throw new ArgumentError(`gatherRows32: index ${idx[bad]} at position ${bad} is not in [0, ${rows - 1}]`);
  return y;
}

/** TypeScript twin of gatherRows32: returns -1, or the position of the first bad index (nothing copied). */
export function gatherRows32Ts(x: Float32Array, rowLen: number, idx: Int32Array, y: Float32Array): number {
  const rows = x.length / rowLen;
  const bad = idx.findIndex((i) => i < 0 || i >= rows);
  if (bad >= 0) return bad;
  for (let i = 0; i < idx.length; i++) {
    const s = (idx[i] as number) * rowLen;
    y.set(x.subarray(s, s + rowLen), i * rowLen);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm for training (forward and gradient, float32)

function checkNorm(what: string, x: Float32Array, gain: Float32Array): number {
  const dim = gain.length;
  if (dim === 0 || x.length % dim !== 0) throw new ShapeError(`${what}: ${x.length} values are not rows of gain's ${dim}`);
  return x.length / dim;
}

/**
 * y = x * r * gain per row of x [rows, gain.length], r = 1 / sqrt(mean(x^2) + eps) (LlamaRMSNorm), float32: the
 * fused forward of the training graph (tf's composite takes six kernels).
 */
export function rmsNormF32(x: Float32Array, gain: Float32Array, eps: number, out?: Float32Array): Float32Array {
  checkNorm('rmsNormF32', x, gain);
  const y = out ?? new Float32Array(x.length);
  if (y.length !== x.length) throw new ShapeError(`rmsNormF32: y has ${y.length} values, x ${x.length}`);
  const addon = nativeAddon();
  if (addon === null) return rmsNormF32Ts(x, gain, eps, y);
  addon.rmsNormF32(x, gain, gain.length, eps, y);
  return y;
}

/** TypeScript twin of rmsNormF32: float64 row sums. */
export function rmsNormF32Ts(x: Float32Array, gain: Float32Array, eps: number, y: Float32Array): Float32Array {
  const dim = gain.length;
  for (let o = 0; o < x.length; o += dim) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += (x[o + i] as number) ** 2;
    const r = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[o + i] = (x[o + i] as number) * r * (gain[i] as number);
  }
  return y;
}

/**
 * Gradient of rmsNormF32 for the upstream gradient dy: with u = dy * gain and s = sum(u * x) per row,
 * dx = r u - (r^3 / dim) s x and dgain = sum over rows of dy * x * r.
 */
export function rmsNormGradF32(
  x: Float32Array,
  gain: Float32Array,
  eps: number,
  dy: Float32Array,
  dx?: Float32Array,
  dgain?: Float32Array,
): { dx: Float32Array; dgain: Float32Array } {
  checkNorm('rmsNormGradF32', x, gain);
  const res = { dx: dx ?? new Float32Array(x.length), dgain: dgain ?? new Float32Array(gain.length) };
  if (dy.length !== x.length || res.dx.length !== x.length || res.dgain.length !== gain.length)
    throw new ShapeError('rmsNormGradF32: arrays do not match x and gain');
  const addon = nativeAddon();
  if (addon === null) return rmsNormGradF32Ts(x, gain, eps, dy, res.dx, res.dgain);
  addon.rmsNormGradF32(x, gain, gain.length, eps, dy, res.dx, res.dgain);
  return res;
}

/** TypeScript twin of rmsNormGradF32: float64 throughout. */
export function rmsNormGradF32Ts(
  x: Float32Array,
  gain: Float32Array,
  eps: number,
  dy: Float32Array,
  dx: Float32Array,
  dgain: Float32Array,
): { dx: Float32Array; dgain: Float32Array } {
  const dim = gain.length;
  const dg = new Float64Array(dim);
  for (let o = 0; o < x.length; o += dim) {
    let ss = 0;
    let s = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[o + i] as number;
      ss += v * v;
      s += (dy[o + i] as number) * (gain[i] as number) * v;
    }
    const r = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) {
      const v = x[o + i] as number;
      dx[o + i] = r * (dy[o + i] as number) * (gain[i] as number) - ((r * r * r) / dim) * s * v;
      dg[i] = (dg[i] as number) + (dy[o + i] as number) * v * r;
    }
  }
  dgain.set(dg);
  return { dx, dgain };
}
