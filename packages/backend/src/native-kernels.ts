/**
 * Native kernels of @bitdistill/kernels-cpu (blocked SIMD GEMM, elementwise loops with run-time ISA dispatch, on
 * its thread pool) registered as tfjs kernels over two kinds of tensor storage:
 *
 * - `native` (the default CPU engine, backend.ts): a tfjs backend of our own whose tensors are ordinary
 *   TypedArrays (the storage of tfjs's `cpu` backend, an instance of which it is), so no tensor and no total
 *   is capped by a 4 GiB wasm heap. Every kernel tfjs's cpu backend has is registered for it too, so ops
 *   without a native kernel stay correct (plain JS loops: fine off the hot path, see the train bench profile).
 * - `wasm` (`--backend wasm`): stock tfjs wasm, single-threaded, its fast matmul path only for plain 2-D
 *   products; the same native kernels read and write the wasm heap in place.
 *
 * How a kernel is replaced: unregister tfjs's kernel and register ours under the same name; gradients are
 * registered by kernel name, so autograd keeps working and the ops it emits land here too. On wasm, ours
 * allocates the output first and takes heap views after (allocation can grow the wasm memory and detach older
 * views). Cases a native kernel does not cover (other dtypes, non-contiguous reduction axes, gather along
 * another axis...) call the stock kernel of that backend, which is kept, together with its setupFunc, so
 * `setNativeKernels(false, backend)` restores stock kernels (the tests compare both).
 */
import * as tf from '@tensorflow/tfjs';
import { shapeSize } from '@bitdistill/core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  batchMatmulF32,
  binaryF32,
  broadcastPlan,
  castToF32,
  compare,
  copyStrided32,
  gatherRows32,
  nativeStatus,
  reduceF32,
  rmsNormF32,
  rmsNormGradF32,
  bitLinearF32,
  bitLinearGradF32,
  swigluF32,
  swigluGradF32,
  attentionTrainF32,
  attentionTrainGradF32,
  relationKdF32,
  headLossF32,
  normBitLinearF32,
  normBitLinearGradF32,
  gradMatmulF32,
  ropeHeadsF32,
  adamwF32,
  sumSquaresF32,
  tile32,
  transpose32,
  unaryF32,
  type BinaryOp,
  type CompareOp,
  type ReduceOp,
  type UnaryOp,
} from '@bitdistill/kernels-cpu/engine';
import { segmentSumInto } from './segment-sum.ts';

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  attrs?: tf.NamedAttrMap;
  backend: unknown;
}
type KernelFn = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** Backends the native kernels can be registered on. */
export const NATIVE_HOSTS = ['native', 'wasm'] as const;
export type NativeHost = (typeof NATIVE_HOSTS)[number];

/** Stock kernel configs by host, then kernel name. */
const stock = new Map<NativeHost, Map<string, tf.KernelConfig>>();
const enabled = new Set<NativeHost>();

type Typed = Float32Array | Int32Array | Uint8Array;

/** What a kernel needs of a backend's tensor storage. */
interface Storage {
  host: NativeHost;
  /** A new output tensor, contents undefined (pooled on `native`); on wasm, views taken before this call may be detached. */
  out(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  /** The tensor's data as a typed array (no copy). */
  view(t: tf.TensorInfo): Typed;
  incRef(dataId: tf.DataId): void;
  /** How many tensors share this data (0 when unknown: then never written in place). */
  refCount(dataId: tf.DataId): number;
  /** Frees a kernel's own scratch output (made by `out`, never returned): back to the pool on `native`. */
  release(t: tf.TensorInfo): void;
}

/** The part of tfjs's MathBackendCPU the native engine uses (its storage: a DataStorage of TypedArrays). */
interface CpuLikeBackend {
  data: { get(id: tf.DataId): { values?: unknown; dtype: tf.DataType; refCount?: number } | undefined };
  write(values: unknown, shape: number[], dtype: tf.DataType): tf.DataId;
  incRef(dataId: tf.DataId): void;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

const storages = new WeakMap<object, Storage>();

function typedCtor(dtype: tf.DataType): Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor {
  if (dtype === 'float32') return Float32Array;
  if (dtype === 'int32') return Int32Array;
  if (dtype === 'bool') return Uint8Array;
  throw new Error(`native kernels: no typed storage for dtype ${dtype}`);
}

function cpuStorage(b: CpuLikeBackend): Storage {
  const pooled = b as Partial<{
    allocOutput(ctor: ReturnType<typeof typedCtor>, n: number): Typed;
    writeOwned(v: Typed, shape: number[], dtype: tf.DataType): tf.DataId;
  }>;
  return {
    host: 'native',
    out(shape, dtype) {
      if (pooled.allocOutput !== undefined && pooled.writeOwned !== undefined) {
        return { dataId: pooled.writeOwned(pooled.allocOutput(typedCtor(dtype), shapeSize(shape)), shape, dtype), shape, dtype };
      }
      return { dataId: b.write(new (typedCtor(dtype))(shapeSize(shape)), shape, dtype), shape, dtype };
    },
    view(t) {
      const d = b.data.get(t.dataId);
      if (d === undefined) throw new Error(`native kernels: tensor data ${String((t.dataId as { id?: number }).id)} is not on this backend (disposed?)`);
      const ctor = typedCtor(t.dtype);
      // Some stock cpu kernels store plain arrays or another typed array for a dtype: normalise once, in place.
      if (!(d.values instanceof ctor)) d.values = ctor.from(d.values as ArrayLike<number>);
      return d.values as Typed;
    },
    incRef: (id) => b.incRef(id),
    refCount: (id) => b.data.get(id)?.refCount ?? 0,
    release: (t) => void b.disposeData(t.dataId, true),
  };
}

function wasmStorage(w: BackendWasm): Storage {
  return {
    host: 'wasm',
    out: (shape, dtype) => w.makeOutput(shape, dtype),
    view: (t) => w.typedArrayFromHeap(t) as Typed,
    incRef: (id) => w.incRef(id),
    refCount: () => 0,
    release: (t) => void w.disposeData(t.dataId, true),
  };
}

function storageOf(backend: unknown): Storage {
  const key = backend as object;
  let s = storages.get(key);
  if (s === undefined) {
    s = typeof (backend as BackendWasm).typedArrayFromHeap === 'function' ? wasmStorage(backend as BackendWasm) : cpuStorage(backend as CpuLikeBackend);
    storages.set(key, s);
  }
  return s;
}

/** The stock kernel of the backend the call runs on, for the cases a native kernel leaves to it. */
function stockKernel(name: string, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const host = storageOf(args.backend).host;
  const k = stock.get(host)?.get(name);
  if (k === undefined) throw new Error(`${name} (native): no stock ${host} kernel to fall back to`);
  return k.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
}

/** A Float32Array over a tensor's 4-byte data whatever its dtype (copies move bits, not values). */
function bits32(st: Storage, t: tf.TensorInfo): Float32Array {
  const v = st.view(t);
  return new Float32Array(v.buffer, v.byteOffset, shapeSize(t.shape));
}

const is4Byte = (t: tf.TensorInfo): boolean => t.dtype === 'float32' || t.dtype === 'int32';

// ---------------------------------------------------------------------------------------------------------
// Matmul

/**
 * tf.matMul: a [...batchA, M, K] (or [..., K, M] with transposeA), b [...batchB, K, N] (or [..., N, K]) ->
 * [...broadcast(batchA, batchB), M, N]. The plain BatchMatMul kernel has only these two attrs (bias and
 * activation belong to _FusedMatMul, which nothing here emits).
 */
const batchMatMul: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error(`BatchMatMul (native): only float32 is supported, got ${a.dtype} x ${b.dtype}`);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = (transposeA ? a.shape[ra - 1] : a.shape[ra - 2]) as number;
  const k = (transposeA ? a.shape[ra - 2] : a.shape[ra - 1]) as number;
  const kb = (transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) as number;
  const n = (transposeB ? b.shape[rb - 2] : b.shape[rb - 1]) as number;
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const out = st.out([...tf.backend_util.assertAndGetBroadcastShape(batchA, batchB), m, n], 'float32');
  const av = st.view(a) as Float32Array;
  const bv = st.view(b) as Float32Array;
  const ov = st.view(out) as Float32Array;
  batchMatmulF32(av, bv, { batchA, batchB, m, k, n }, { transA: transposeA, transB: transposeB }, ov);
  return out;
};

/**
 * BitDistillGradMatMul: {a [m, k] (or [k, m]), b, c? [m, n]}, attrs {transposeA, transposeB} -> op(a) @ op(b), a
 * product of a backward pass (model's dense linears, the losses' head): fp32 as BatchMatMul, or bf16 operands with
 * fp32 sums under optim.gradPrecision bf16 (kernels-cpu setGradPrecision). With c: c + op(a) @ op(b), summed into
 * c's own storage when the caller holds the only reference to it (the result then shares it; the caller disposes
 * its c), else into a copy: a gradient summed over row chunks without a [m, n] temporary and an Add per chunk
 * (the vocabulary head's dW at Qwen3-0.6B: 622 MB each).
 */
const gradMatMul: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const { a, b, c } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo; c?: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error(`BitDistillGradMatMul (native): 2-D float32 operands only, got ${a.dtype} [${a.shape}] x ${b.dtype} [${b.shape}]`);
  }
  const [m, k] = (transposeA ? [a.shape[1], a.shape[0]] : a.shape) as [number, number];
  const [kb, n] = (transposeB ? [b.shape[1], b.shape[0]] : b.shape) as [number, number];
  if (k !== kb)
    throw new Error(
      `BitDistillGradMatMul (native): inner sizes ${k} and ${kb} differ ([${a.shape}]${transposeA ? '^T' : ''} x [${b.shape}]${transposeB ? '^T' : ''})`,
    );
  if (c === undefined) {
    const out = st.out([m, n], 'float32');
    gradMatmulF32(st.view(a) as Float32Array, st.view(b) as Float32Array, m, k, n, { transA: transposeA, transB: transposeB }, st.view(out) as Float32Array);
    return out;
  }
  if (c.dtype !== 'float32' || c.shape.length !== 2 || c.shape[0] !== m || c.shape[1] !== n)
    throw new Error(`BitDistillGradMatMul (native): the sum c must be float32 [${m}, ${n}], got ${c.dtype} [${c.shape}]`);
  let out: tf.TensorInfo;
  if (st.refCount(c.dataId) === 1) out = share(st, c);
  else {
    out = st.out([m, n], 'float32');
    (st.view(out) as Float32Array).set(st.view(c) as Float32Array);
  }
  gradMatmulF32(
    st.view(a) as Float32Array,
    st.view(b) as Float32Array,
    m,
    k,
    n,
    { transA: transposeA, transB: transposeB, accumulate: true },
    st.view(out) as Float32Array,
  );
  return out;
};

/**
 * BitDistillAdamW: inputs [p_0 .. p_n-1, g_0 .., m_0 .., v_0 ..] (4n tensors; p_i, g_i, m_i, v_i float32 of one size),
 * attrs {beta1, beta2, eps, weightDecay, lr, bc1, bc2, gradScale} -> the n updated parameters (new tensors for the
 * caller to assign): every parameter's AdamW update in one kernel call (one tfjs dispatch per step instead of one
 * per parameter: 82 at the tiny student). m and v are updated IN PLACE, so they must be tensors no one else holds
 * (the trainer's AdamW moments). kernels-cpu adamwF32's arithmetic. The new parameters come from the engine's
 * buffer pool, and the old ones go back to it when the variables drop them: a fresh array per parameter and step
 * cost a zero-fill and first-touch page faults (the whole model's size every step) and fed the engine's forced GCs.
 */
const adamW: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const xs = Object.values(inputs) as tf.TensorInfo[];
  if (xs.length === 0 || xs.length % 4 !== 0) throw new Error(`BitDistillAdamW (native): needs 4n inputs [p.., g.., m.., v..], got ${xs.length}`);
  const n = xs.length / 4;
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  const step = attrs as unknown as Parameters<typeof adamwF32>[5];
  const outs: tf.TensorInfo[] = [];
  for (let i = 0; i < n; i++) {
    const [p, g, m, v] = [xs[i], xs[n + i], xs[2 * n + i], xs[3 * n + i]] as tf.TensorInfo[] as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    for (const t of [p, g, m, v]) {
      if (t.dtype !== 'float32' || shapeSize(t.shape) !== shapeSize(p.shape))
        throw new Error(`BitDistillAdamW (native): p, g, m, v must be float32 of one size, got [${t.shape}] ${t.dtype} for parameter ${i} [${p.shape}]`);
    }
    const out = st.out(p.shape, 'float32');
    adamwF32(view(p), view(g), view(m), view(v), view(out), step);
    outs.push(out);
  }
  return outs;
};

/**
 * BitDistillSquaredSums: inputs [x_0 .. x_n-1] (float32) -> [n] float32, the sum of squares of each (accumulated
 * in double, kernels-cpu sumSquaresF32): the gradient-norm pass in one kernel call, with no squared copy of any
 * gradient (tf.sum(tf.square(g)) per parameter was two dispatches and a gradient-sized temporary each).
 */
const squaredSums: KernelFn = ({ inputs, backend }) => {
  const st = storageOf(backend);
  const xs = Object.values(inputs) as tf.TensorInfo[];
  const out = st.out([xs.length], 'float32');
  const o = st.view(out) as Float32Array;
  xs.forEach((x, i) => {
    if (x.dtype !== 'float32') throw new Error(`BitDistillSquaredSums (native): input ${i} is ${x.dtype}, not float32`);
    o[i] = sumSquaresF32(st.view(x) as Float32Array);
  });
  return out;
};

/** BitDistillRopeHeads: {x [B, T, H, d], cos, sin [T, d]}, attrs {rope} -> [B, H, T, d], RoPE'd when rope. */
const ropeHeads: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const { x, cos, sin } = inputs as Record<'x' | 'cos' | 'sin', tf.TensorInfo>;
  const [B, T, H, d] = x.shape as [number, number, number, number];
  const out = st.out([B, H, T, d], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  ropeHeadsF32(view(x), view(cos), view(sin), { B, T, H, d }, (attrs as { rope: boolean }).rope, false, view(out));
  return out;
};

/** BitDistillRopeHeadsGrad: {dy [B, H, T, d], x, cos, sin}, attrs {rope} -> dx [B, T, H, d]. */
const ropeHeadsGrad: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const { dy, x, cos, sin } = inputs as Record<'dy' | 'x' | 'cos' | 'sin', tf.TensorInfo>;
  const [B, T, H, d] = x.shape as [number, number, number, number];
  const out = st.out([B, T, H, d], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  ropeHeadsF32(view(dy), view(cos), view(sin), { B, T, H, d }, (attrs as { rope: boolean }).rope, true, view(out));
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Elementwise

function binaryKernel(name: string, op: BinaryOp): KernelFn {
  return (args) => {
    const st = storageOf(args.backend);
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stockKernel(name, args);
    const out = st.out(broadcastPlan(a.shape, b.shape).outShape, 'float32');
    binaryF32(op, st.view(a) as Float32Array, a.shape, st.view(b) as Float32Array, b.shape, st.view(out) as Float32Array);
    return out;
  };
}

function compareKernel(name: string, op: CompareOp): KernelFn {
  return (args) => {
    const st = storageOf(args.backend);
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== b.dtype || !is4Byte(a)) return stockKernel(name, args);
    const out = st.out(broadcastPlan(a.shape, b.shape).outShape, 'bool');
    const av = st.view(a) as Float32Array | Int32Array;
    const bv = st.view(b) as Float32Array | Int32Array;
    compare(op, av, a.shape, bv, b.shape, st.view(out) as Uint8Array);
    return out;
  };
}

function unaryKernel(name: string, op: UnaryOp): KernelFn {
  return (args) => {
    const st = storageOf(args.backend);
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32') return stockKernel(name, args);
    const out = st.out(x.shape, 'float32');
    const attrs = (args.attrs ?? {}) as { clipValueMin?: number; clipValueMax?: number };
    unaryF32(op, st.view(x) as Float32Array, st.view(out) as Float32Array, attrs.clipValueMin ?? 0, attrs.clipValueMax ?? 0);
    return out;
  };
}

/**
 * Identity without a copy, as tfjs's cpu backend does (the stock wasm kernel copies): tensors are immutable
 * and Variable.assign swaps the data id instead of writing in place, so sharing the data is safe.
 */
function share(st: Storage, x: tf.TensorInfo, dtype: tf.DataType = x.dtype): tf.TensorInfo {
  st.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype };
}

const identity: KernelFn = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === 'string') return stockKernel('Identity', args);
  return share(storageOf(args.backend), x);
};

/** Cast: same dtype shares the data (gradients of mul cast float32 to float32); bool / int32 -> float32 natively. */
const cast: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { dtype } = args.attrs as { dtype: tf.DataType };
  if (dtype === x.dtype && dtype !== 'string') return share(st, x);
  if (dtype !== 'float32' || (x.dtype !== 'bool' && x.dtype !== 'int32')) return stockKernel('Cast', args);
  const out = st.out(x.shape, 'float32');
  castToF32(st.view(x) as Uint8Array | Int32Array, st.view(out) as Float32Array);
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Reductions

/** Sum, Max, Min, Mean over a contiguous block of axes of a float32 tensor, as [outer, r, inner]. */
function reduceKernel(name: string, op: ReduceOp, axisAttr: 'axis' | 'reductionIndices'): KernelFn {
  return (args) => {
    const st = storageOf(args.backend);
    const { x } = args.inputs as { x: tf.TensorInfo };
    const attrs = args.attrs as Record<string, unknown>;
    const keepDims = attrs['keepDims'] === true;
    if (x.dtype !== 'float32') return stockKernel(name, args);
    const axes = [...tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape)].sort((p, q) => p - q);
    if (axes.some((v, i) => i > 0 && v !== (axes[i - 1] as number) + 1)) return stockKernel(name, args);
    const first = axes[0] ?? 0;
    const last = axes.length === 0 ? -1 : (axes[axes.length - 1] as number);
    const outer = shapeSize(x.shape.slice(0, first));
    const r = shapeSize(x.shape.slice(first, last + 1));
    const inner = shapeSize(x.shape.slice(last + 1));
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = st.out(outShape, 'float32');
    reduceF32(op, st.view(x) as Float32Array, outer, r, inner, st.view(out) as Float32Array);
    return out;
  };
}

/**
 * Softmax over the last axis (tf.softmax: attention probabilities) as five native passes: row max, subtract,
 * exp, row sum, divide — each SIMD and threaded, where tfjs's cpu kernel runs generic JS loops (it was 45% of
 * a reference training step on the native engine before this kernel).
 */
const softmaxKernel: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { logits } = args.inputs as { logits: tf.TensorInfo };
  const dim = (args.attrs as { dim: number }).dim;
  const rank = logits.shape.length;
  if (logits.dtype !== 'float32' || rank === 0 || (dim !== -1 && dim !== rank - 1)) return stockKernel('Softmax', args);
  const cols = logits.shape[rank - 1] as number;
  const rows = cols === 0 ? 0 : shapeSize(logits.shape) / cols;
  const out = st.out([...logits.shape], 'float32');
  if (rows === 0) return out;
  const x = st.view(logits) as Float32Array;
  const y = st.view(out) as Float32Array;
  const m = reduceF32('max', x, rows, cols, 1, new Float32Array(rows));
  binaryF32('sub', x, [rows, cols], m, [rows, 1], y);
  unaryF32('exp', y, y);
  const sum = reduceF32('sum', y, rows, cols, 1, m);
  binaryF32('div', y, [rows, cols], sum, [rows, 1], y);
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Data movement

const transpose: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { perm } = args.attrs as { perm: number[] };
  if (!is4Byte(x)) return stockKernel('Transpose', args);
  const outShape = perm.map((p) => x.shape[p] as number);
  // A permutation that keeps the order of the axes longer than 1 moves no element (tf.gather's gradient
  // transposes the [V, C] embedding gradient by the identity: a 622 MB copy per step at Qwen3-0.6B): share.
  const moved = perm.filter((p) => (x.shape[p] as number) > 1);
  if (moved.every((p, i) => i === 0 || p > (moved[i - 1] as number))) return { ...share(st, x), shape: outShape };
  const out = st.out(outShape, x.dtype);
  transpose32(bits32(st, x), x.shape, perm, bits32(st, out));
  return out;
};

/** Row-major element strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = (s[d + 1] as number) * (shape[d + 1] as number);
  return s;
}

const concat: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const inputs = args.inputs as unknown as tf.TensorInfo[];
  const first = inputs[0];
  if (first === undefined || !inputs.every((t) => t.dtype === first.dtype && is4Byte(t))) return stockKernel('Concat', args);
  const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, first.shape)[0] as number;
  const shapes = inputs.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const outShape = tf.backend_util.computeOutShape(shapes, axis);
  const out = st.out(outShape, first.dtype);
  const ov = bits32(st, out);
  // out as [outer, total]: input i fills columns [offset, offset + its inner size) of every row.
  const outer = shapeSize(outShape.slice(0, axis));
  const total = shapeSize(outShape.slice(axis));
  let offset = 0;
  for (const t of inputs) {
    const w = shapeSize(t.shape.slice(axis));
    if (w > 0 && outer > 0) copyStrided32(bits32(st, t), { offset: 0, strides: [w, 1] }, ov, { offset, strides: [total, 1] }, [outer, w]);
    offset += w;
  }
  return out;
};

const splitV: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
  if (!is4Byte(x)) return stockKernel('SplitV', args);
  const ax = tf.util.parseAxisParam(axis, x.shape)[0] as number;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const outer = shapeSize(x.shape.slice(0, ax));
  const inner = shapeSize(x.shape.slice(ax + 1));
  const total = (x.shape[ax] as number) * inner;
  const outs = sizes.map((s) =>
    st.out(
      x.shape.map((d, i) => (i === ax ? s : d)),
      x.dtype,
    ),
  );
  // Views after every allocation (see the header).
  const xv = bits32(st, x);
  let offset = 0;
  sizes.forEach((s, i) => {
    const w = s * inner;
    if (w > 0 && outer > 0)
      copyStrided32(xv, { offset, strides: [total, 1] }, bits32(st, outs[i] as tf.TensorInfo), { offset: 0, strides: [w, 1] }, [outer, w]);
    offset += w;
  });
  return outs;
};

/** tf.slice (and the Tile gradient's slices): a strided copy of the region into a new tensor. */
const slice: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
  if (!is4Byte(x) || x.shape.length === 0 || x.shape.length > 8) return stockKernel('Slice', args);
  const [b, sz] = tf.slice_util.parseSliceParams(x, begin, size) as [number[], number[]];
  tf.slice_util.assertParamsValid(x, b, sz);
  const out = st.out(sz, x.dtype);
  if (shapeSize(sz) === 0) return out;
  const strides = stridesOf(x.shape);
  const offset = b.reduce((acc, v, i) => acc + v * (strides[i] as number), 0);
  copyStrided32(bits32(st, x), { offset, strides }, bits32(st, out), { offset: 0, strides: stridesOf(sz) }, sz);
  return out;
};

/** tf.tile, and through it tf.broadcastTo. */
const tile: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as { reps: number[] };
  if (!is4Byte(x)) return stockKernel('Tile', args);
  const out = st.out(
    x.shape.map((d, i) => d * (reps[i] as number)),
    x.dtype,
  );
  tile32(bits32(st, x), x.shape, reps, bits32(st, out));
  return out;
};

/** tf.gather along axis 0 without batch dims (the embedding lookup); other cases go to the stock kernel. */
const gatherV2: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
  const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
  if (!is4Byte(x) || indices.dtype !== 'int32' || batchDims !== 0 || x.shape.length === 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0) {
    return stockKernel('GatherV2', args);
  }
  const rows = x.shape[0] as number;
  const rowLen = shapeSize(x.shape.slice(1));
  if (rowLen === 0) return stockKernel('GatherV2', args);
  const out = st.out([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const idx = st.view(indices) as Int32Array;
  const bad = idx.findIndex((i) => i < 0 || i >= rows);
  if (bad >= 0) throw new Error(`GatherV2: the index value ${idx[bad]} is not in [0, ${rows - 1}]`);
  gatherRows32(bits32(st, x), rowLen, idx, bits32(st, out));
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Fused RMSNorm (kernels of @bitdistill/model's rmsNorm op, which falls back to tf's composite where a
// backend lacks them; the names and contracts are mirrored there)

/** BitDistillRmsNorm: {x [..., C], gain [C]}, attrs {eps} -> y = x / sqrt(mean(x^2, -1) + eps) * gain. */
const rmsNorm: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x, gain } = args.inputs as { x: tf.TensorInfo; gain: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const out = st.out(x.shape, 'float32');
  rmsNormF32(st.view(x) as Float32Array, st.view(gain) as Float32Array, eps, st.view(out) as Float32Array);
  return out;
};

/** BitDistillRmsNormGrad: {dy, x, gain}, attrs {eps} -> [dx (x's shape), dgain (gain's shape)]. */
const rmsNormGrad: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { dy, x, gain } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo; gain: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const dx = st.out(x.shape, 'float32');
  const dgain = st.out(gain.shape, 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  rmsNormGradF32(view(x), view(gain), eps, view(dy), view(dx), view(dgain));
  return [dx, dgain];
};

// ---------------------------------------------------------------------------------------------------------
// Fused training ops (kernels of @bitdistill/quant's bitMatmulInt and @bitdistill/model's swiglu, which fall back
// to their op-by-op twins where a backend lacks them; the names and contracts are mirrored there)

/** BitDistillBitLinear: {x [M, K], w [N, K]}, attrs {perRow} -> y [M, N] = int8(x) @ ternary(w)^T, integer form. */
const bitLinear: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x, w } = args.inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
  const perRow = (args.attrs as { perRow: boolean }).perRow;
  const [m, k] = x.shape as [number, number];
  const n = w.shape[0] as number;
  const y = st.out([m, n], 'float32');
  bitLinearF32(st.view(x) as Float32Array, st.view(w) as Float32Array, { m, k, n, perRow }, st.view(y) as Float32Array);
  return y;
};

/** BitDistillBitLinearGrad: {dy [M, N], x, w}, attrs {perRow} -> [dx [M, K], dw [N, K]] (straight-through). */
const bitLinearGrad: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { dy, x, w } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo; w: tf.TensorInfo };
  const perRow = (args.attrs as { perRow: boolean }).perRow;
  const [m, k] = x.shape as [number, number];
  const n = w.shape[0] as number;
  const dx = st.out([m, k], 'float32');
  const dw = st.out([n, k], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  bitLinearGradF32(view(x), view(w), { m, k, n, perRow }, view(dy), view(dx), view(dw));
  return [dx, dw];
};

/** BitDistillNormBitLinear: {x [M, K], gain [K], w [N, K]}, attrs {perRow, eps} -> BitLinear of rmsNorm(x, gain, eps). */
const normBitLinear: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x, gain, w } = args.inputs as { x: tf.TensorInfo; gain: tf.TensorInfo; w: tf.TensorInfo };
  const { perRow, eps } = args.attrs as { perRow: boolean; eps: number };
  const [m, k] = x.shape as [number, number];
  const n = w.shape[0] as number;
  const y = st.out([m, n], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  normBitLinearF32(view(x), { gain: view(gain), eps }, view(w), { m, k, n, perRow }, view(y));
  return y;
};

/** BitDistillNormBitLinearGrad: {dy [M, N], x, gain, w}, attrs {perRow, eps} -> [dx [M, K], dgain [K], dw [N, K]]. */
const normBitLinearGrad: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { dy, x, gain, w } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo; gain: tf.TensorInfo; w: tf.TensorInfo };
  const { perRow, eps } = args.attrs as { perRow: boolean; eps: number };
  const [m, k] = x.shape as [number, number];
  const n = w.shape[0] as number;
  const dx = st.out([m, k], 'float32');
  const dgain = st.out([k], 'float32');
  const dw = st.out([n, k], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  normBitLinearGradF32(view(x), { gain: view(gain), eps }, view(w), { m, k, n, perRow }, view(dy), { dx: view(dx), dgain: view(dgain), dw: view(dw) });
  return [dx, dgain, dw];
};

/** BitDistillSwiglu: {gate, up} (same shape) -> silu(gate) * up. */
const swiglu: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { gate, up } = args.inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
  const y = st.out(gate.shape, 'float32');
  swigluF32(st.view(gate) as Float32Array, st.view(up) as Float32Array, st.view(y) as Float32Array);
  return y;
};

/** BitDistillSwigluGrad: {dy, gate, up} -> [dgate, dup]. */
const swigluGrad: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { dy, gate, up } = args.inputs as { dy: tf.TensorInfo; gate: tf.TensorInfo; up: tf.TensorInfo };
  const dg = st.out(gate.shape, 'float32');
  const du = st.out(gate.shape, 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  swigluGradF32(view(gate), view(up), view(dy), view(dg), view(du));
  return [dg, du];
};

/**
 * BitDistillAttention: {q [B, T, H, d], k, v [B, T, Hkv, d], cos, sin [T, d]}, attrs {scale} -> y [B, T, H, d]:
 * causal softmax(scale * rope(q) rope(k)^T) v per head (GQA), in the projections' layout.
 */
function attentionShape(q: tf.TensorInfo, k: tf.TensorInfo, scale: number): { B: number; T: number; H: number; Hkv: number; d: number; scale: number } {
  const [B, T, H, d] = q.shape as [number, number, number, number];
  return { B, T, H, Hkv: k.shape[2] as number, d, scale };
}

const attention: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { q, k, v, cos, sin } = args.inputs as Record<'q' | 'k' | 'v' | 'cos' | 'sin', tf.TensorInfo>;
  const y = st.out([...q.shape], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  attentionTrainF32(view(q), view(k), view(v), view(cos), view(sin), attentionShape(q, k, (args.attrs as { scale: number }).scale), view(y));
  return y;
};

/**
 * BitDistillDenseBlock: one decoder layer's forward without gradient (a frozen teacher's forward, evaluation), in
 * one kernel: {x [N, C], cos, sin [T, d], inLn, wq, wk, wv, wo, postLn, wg, wu, wd, their biases bq? .. bd?, qNorm?,
 * kNorm?}, attrs {B, T, H, Hkv, d, eps, scale, capture} -> [x + attention + MLP] or, with capture, [that, q, k, v]
 * ([B, T, heads, d], after q/k-norm, before RoPE: what the relation KD's capture reads). The same native calls with
 * the same arguments as the op-by-op forward's kernels (BitDistillRmsNorm, BatchMatMul, Add, BitDistillAttention,
 * BitDistillSwiglu), in the same order, so the result is bit-identical to it; what goes is the ~20 tfjs dispatches,
 * tensor records and custom-gradient bookkeeping per layer (~2 ms of a tiny teacher forward of ~8). Intermediates
 * are pooled scratch, released as soon as read.
 */
const denseBlock: KernelFn = ({ inputs, attrs, backend }) => {
  const st = storageOf(backend);
  const ins = inputs as Record<string, tf.TensorInfo | undefined>;
  const need = (name: string): tf.TensorInfo => {
    const t = ins[name];
    if (t === undefined || t.dtype !== 'float32') throw new Error(`BitDistillDenseBlock (native): input ${name} missing or not float32`);
    return t;
  };
  const { B, T, H, Hkv, d, eps, scale, capture } = attrs as unknown as {
    B: number;
    T: number;
    H: number;
    Hkv: number;
    d: number;
    eps: number;
    scale: number;
    capture: boolean;
  };
  const x = need('x');
  const [N, C] = x.shape as [number, number];
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  const scratch: tf.TensorInfo[] = [];
  // A new buffer: returned to the caller (keep) or scratch, released by `free` or at the end.
  const alloc = (shape: number[], keep = false): tf.TensorInfo => {
    const t = st.out(shape, 'float32');
    if (!keep) scratch.push(t);
    return t;
  };
  const free = (t: tf.TensorInfo): void => {
    const i = scratch.indexOf(t);
    if (i >= 0) scratch.splice(i, 1);
    st.release(t);
  };
  const rms = (a: tf.TensorInfo, gain: tf.TensorInfo, shape: number[], keep = false): tf.TensorInfo => {
    const y = alloc(shape, keep);
    rmsNormF32(view(a), view(gain), eps, view(y));
    return y;
  };
  // As denseLinear: x [N, in] @ w [out, in]^T (BatchMatMul), then + bias (Add) where there is one.
  const linear = (a: tf.TensorInfo, w: string, keep = false): tf.TensorInfo => {
    const wt = need(w);
    const bias = ins[`b${w.slice(1)}`];
    const [n, k] = wt.shape as [number, number];
    const m = a.shape[0] as number;
    const y = alloc([m, n], keep && bias === undefined);
    batchMatmulF32(view(a), view(wt), { batchA: [], batchB: [], m, k, n }, { transA: false, transB: true }, view(y));
    if (bias === undefined) return y;
    const yb = alloc([m, n], keep);
    binaryF32('add', view(y), y.shape, view(bias), bias.shape, view(yb));
    free(y);
    return yb;
  };
  const add = (a: tf.TensorInfo, b: tf.TensorInfo, keep = false): tf.TensorInfo => {
    const y = alloc([N, C], keep);
    binaryF32('add', view(a), a.shape, view(b), b.shape, view(y));
    return y;
  };
  try {
    // --- attention ---
    const h = rms(x, need('inLn'), [N, C]);
    const qkNorm = ins['qNorm'] !== undefined;
    let q = linear(h, 'wq', capture && !qkNorm);
    let k = linear(h, 'wk', capture && !qkNorm);
    const v = linear(h, 'wv', capture);
    free(h);
    if (qkNorm) {
      const qn = rms(q, need('qNorm'), [B, T, H, d], capture);
      const kn = rms(k, need('kNorm'), [B, T, Hkv, d], capture);
      free(q);
      free(k);
      q = qn;
      k = kn;
    }
    const y = alloc([B, T, H, d]);
    attentionTrainF32(view(q), view(k), view(v), view(need('cos')), view(need('sin')), { B, T, H, Hkv, d, scale }, view(y));
    const o = linear({ ...y, shape: [N, H * d] }, 'wo');
    free(y);
    const x1 = add(x, o);
    free(o);
    // --- MLP ---
    const h2 = rms(x1, need('postLn'), [N, C]);
    const gate = linear(h2, 'wg');
    const up = linear(h2, 'wu');
    free(h2);
    const act = alloc(gate.shape);
    swigluF32(view(gate), view(up), view(act));
    free(gate);
    free(up);
    const down = linear(act, 'wd');
    free(act);
    const out = add(x1, down, true);
    free(x1);
    free(down);
    if (!capture) return out;
    return [out, { ...q, shape: [B, T, H, d] }, { ...k, shape: [B, T, Hkv, d] }, { ...v, shape: [B, T, Hkv, d] }];
  } finally {
    for (const t of scratch) st.release(t);
  }
};

/** BitDistillAttentionGrad: {dy, q, k, v, cos, sin}, attrs {scale} -> [dq, dk, dv]. */
const attentionGrad: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { dy, q, k, v, cos, sin } = args.inputs as Record<'dy' | 'q' | 'k' | 'v' | 'cos' | 'sin', tf.TensorInfo>;
  const dq = st.out([...q.shape], 'float32');
  const dk = st.out([...k.shape], 'float32');
  const dv = st.out([...v.shape], 'float32');
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  attentionTrainGradF32(view(q), view(k), view(v), view(cos), view(sin), attentionShape(q, k, (args.attrs as { scale: number }).scale), view(dy), {
    dq: view(dq),
    dk: view(dk),
    dv: view(dv),
  });
  return [dq, dk, dv];
};

/**
 * BitDistillRelationKd: {tq, tk, tv, sq, sk, sv} ([B, H, T, d] each), attrs {relationHeads, cosine, grad} ->
 * [loss (scalar)] or, with grad, [loss, dsq, dsk, dsv]: packages/losses attentionRelationKd in one native pass
 * per part (no [B, R, T, T] tensor is formed).
 */
const relationKd: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const ins = args.inputs as Record<'tq' | 'tk' | 'tv' | 'sq' | 'sk' | 'sv', tf.TensorInfo>;
  const { relationHeads, cosine, grad } = args.attrs as { relationHeads: number; cosine: boolean; grad: boolean };
  const parts = [
    [ins.tq, ins.sq],
    [ins.tk, ins.sk],
    [ins.tv, ins.sv],
  ] as const;
  const loss = st.out([], 'float32');
  const grads = grad ? parts.map(([, s]) => st.out([...s.shape], 'float32')) : [];
  const view = (t: tf.TensorInfo): Float32Array => st.view(t) as Float32Array;
  const shape4 = (t: tf.TensorInfo) => t.shape as [number, number, number, number];
  let total = 0;
  parts.forEach(([t, s], i) => {
    const g = grads[i];
    total += relationKdF32(view(t), shape4(t), view(s), shape4(s), relationHeads, cosine, g === undefined ? undefined : view(g));
  });
  view(loss)[0] = total;
  return [loss, ...grads];
};

/**
 * BitDistillHeadLoss: {zs [r, V], zt [r, V]?, labels int32 [r]?, ceMask [r]?, kdMask [r]?}, attrs {ceGrad, kdGrad,
 * tau, grad} -> [sums [2] (mask-weighted CE and KL row sums)] or, with grad, [sums, g [r, V]]: the elementwise part
 * of packages/losses fusedHeadLoss for one block of rows, one native pass per row (kernels-cpu headLossF32).
 */
const headLoss: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const ins = args.inputs as Partial<Record<'zs' | 'zt' | 'labels' | 'ceMask' | 'kdMask', tf.TensorInfo>>;
  const { ceGrad, kdGrad, tau, grad } = args.attrs as { ceGrad: number; kdGrad: number; tau: number; grad: boolean };
  const zs = ins.zs as tf.TensorInfo;
  const [r, V] = zs.shape as [number, number];
  const sums = st.out([2], 'float32');
  const g = grad ? st.out([r, V], 'float32') : null;
  const f32 = (t: tf.TensorInfo | undefined): Float32Array | undefined => (t === undefined ? undefined : (st.view(t) as Float32Array));
  const ce =
    ins.labels !== undefined && ins.ceMask !== undefined
      ? { labels: st.view(ins.labels) as Int32Array, mask: f32(ins.ceMask) as Float32Array, grad: ceGrad }
      : undefined;
  const kd =
    ins.zt !== undefined && ins.kdMask !== undefined
      ? { teacher: f32(ins.zt) as Float32Array, mask: f32(ins.kdMask) as Float32Array, grad: kdGrad, tau }
      : undefined;
  const out = headLossF32(
    f32(zs) as Float32Array,
    { r, V, ...(ce !== undefined ? { ce } : {}), ...(kd !== undefined ? { kd } : {}) },
    g === null ? undefined : f32(g),
  );
  const sv = st.view(sums) as Float32Array;
  sv[0] = out.ce;
  sv[1] = out.kl;
  return g === null ? [sums] : [sums, g];
};

/**
 * UnsortedSegmentSum (the gradient of tf.gather, i.e. of the embedding lookup): out[ids[i], :] += x[i, :] for
 * float32 x [N, ...rest]; ids outside [0, numSegments) are dropped, as TensorFlow does. tfjs's cpu kernel builds
 * a one-hot mask per segment (70% of a training step on cpu, MACHINE.md); this is one pass over x.
 */
const unsortedSegmentSum: KernelFn = (args) => {
  const st = storageOf(args.backend);
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  if (x.dtype !== 'float32' || segmentIds.dtype !== 'int32') return stockKernel('UnsortedSegmentSum', args);
  const rest = x.shape.slice(segmentIds.shape.length);
  const out = st.out([numSegments, ...rest], 'float32');
  const o = st.view(out) as Float32Array;
  o.fill(0);
  segmentSumInto(o, st.view(x) as Float32Array, shapeSize(rest), st.view(segmentIds) as Int32Array, numSegments);
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Registration

const NATIVE: Record<string, KernelFn> = {
  BatchMatMul: batchMatMul,
  Add: binaryKernel('Add', 'add'),
  Sub: binaryKernel('Sub', 'sub'),
  Multiply: binaryKernel('Multiply', 'mul'),
  RealDiv: binaryKernel('RealDiv', 'div'),
  Maximum: binaryKernel('Maximum', 'max'),
  Minimum: binaryKernel('Minimum', 'min'),
  Equal: compareKernel('Equal', 'equal'),
  NotEqual: compareKernel('NotEqual', 'notEqual'),
  Less: compareKernel('Less', 'less'),
  LessEqual: compareKernel('LessEqual', 'lessEqual'),
  Greater: compareKernel('Greater', 'greater'),
  GreaterEqual: compareKernel('GreaterEqual', 'greaterEqual'),
  Exp: unaryKernel('Exp', 'exp'),
  Log: unaryKernel('Log', 'log'),
  Neg: unaryKernel('Neg', 'neg'),
  Abs: unaryKernel('Abs', 'abs'),
  Sqrt: unaryKernel('Sqrt', 'sqrt'),
  Rsqrt: unaryKernel('Rsqrt', 'rsqrt'),
  Square: unaryKernel('Square', 'square'),
  Sigmoid: unaryKernel('Sigmoid', 'sigmoid'),
  Round: unaryKernel('Round', 'round'),
  ClipByValue: unaryKernel('ClipByValue', 'clip'),
  Reciprocal: unaryKernel('Reciprocal', 'reciprocal'),
  Cast: cast,
  Softmax: softmaxKernel,
  Sum: reduceKernel('Sum', 'sum', 'axis'),
  Mean: reduceKernel('Mean', 'mean', 'axis'),
  Max: reduceKernel('Max', 'max', 'reductionIndices'),
  Min: reduceKernel('Min', 'min', 'axis'),
  Transpose: transpose,
  Concat: concat,
  SplitV: splitV,
  GatherV2: gatherV2,
  Tile: tile,
  Slice: slice,
  Identity: identity,
  BitDistillRmsNorm: rmsNorm,
  BitDistillRmsNormGrad: rmsNormGrad,
  BitDistillBitLinear: bitLinear,
  BitDistillBitLinearGrad: bitLinearGrad,
  BitDistillNormBitLinear: normBitLinear,
  BitDistillNormBitLinearGrad: normBitLinearGrad,
  BitDistillSwiglu: swiglu,
  BitDistillSwigluGrad: swigluGrad,
  BitDistillAttention: attention,
  BitDistillDenseBlock: denseBlock,
  BitDistillAttentionGrad: attentionGrad,
  BitDistillRelationKd: relationKd,
  BitDistillHeadLoss: headLoss,
  BitDistillGradMatMul: gradMatMul,
  BitDistillRopeHeads: ropeHeads,
  BitDistillRopeHeadsGrad: ropeHeadsGrad,
  BitDistillAdamW: adamW,
  BitDistillSquaredSums: squaredSums,
  UnsortedSegmentSum: unsortedSegmentSum,
};

/**
 * tfjs's Sum and Mean gradients multiply the reshaped dy by ones(x.shape), which tf.ones builds in JavaScript
 * (and on wasm uploads to the heap): 16 MB, and ~12 ms, for the [B, T, V] sum of the cross-entropy. With the
 * native kernels on, dy is broadcast by the native Tile instead (the same values: v * 1 = v, and Mean divides
 * the same dy by the same count); otherwise, and on other backends, the stock gradient runs.
 */
function broadcastingReductionGrad(name: 'Sum' | 'Mean', stockGrad: tf.GradConfig): tf.GradConfig {
  return {
    ...stockGrad,
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as tf.Tensor;
      const d = dy as tf.Tensor;
      if (!enabled.has(tf.getBackend() as NativeHost) || d.dtype !== 'float32') return stockGrad.gradFunc(dy, saved, attrs);
      const axes = tf.util.parseAxisParam((attrs as { axis: number | number[] }).axis, x.shape);
      const expanded = tf.reshape(
        d,
        x.shape.map((n, i) => (axes.includes(i) ? 1 : n)),
      );
      const count = axes.reduce((p, a) => p * (x.shape[a] as number), 1);
      const scaled = name === 'Mean' ? tf.div(expanded, count) : expanded;
      return { x: () => tf.broadcastTo(scaled, x.shape) };
    },
  };
}

let gradientsWrapped = false;

function wrapReductionGradients(): void {
  if (gradientsWrapped) return;
  for (const name of ['Sum', 'Mean'] as const) {
    const stockGrad = tf.getGradient(name);
    if (stockGrad !== undefined) tf.registerGradient(broadcastingReductionGrad(name, stockGrad));
  }
  gradientsWrapped = true;
}

/** Names of the tfjs kernels this module replaces. */
export const NATIVE_KERNEL_NAMES: readonly string[] = Object.keys(NATIVE);

function currentHost(): NativeHost {
  const b = tf.getBackend();
  return (NATIVE_HOSTS as readonly string[]).includes(b) ? (b as NativeHost) : 'wasm';
}

/**
 * Registers (true) or removes (false) the native kernels on `host` (default: the active backend if it is one
 * of NATIVE_HOSTS, else wasm), whose stock kernels must be registered (wasm: initialised, so its setupFuncs
 * ran). Returns false, changing nothing, when the addon is not loaded.
 */
export function setNativeKernels(on: boolean, host: NativeHost = currentHost()): boolean {
  if (on === enabled.has(host)) return true;
  if (on && !nativeStatus().native) return false;
  if (on) wrapReductionGradients();
  let saved = stock.get(host);
  if (saved === undefined) {
    saved = new Map();
    stock.set(host, saved);
  }
  for (const name of NATIVE_KERNEL_NAMES) {
    if (on) {
      const current = tf.getKernel(name, host);
      if (current !== undefined) {
        saved.set(name, current);
        tf.unregisterKernel(name, host);
      }
      tf.registerKernel({
        kernelName: name,
        backendName: host,
        kernelFunc: NATIVE[name] as unknown as tf.KernelFunc,
        // The stock setupFunc already ran when the backend initialised; kept so a re-initialised backend still
        // sets up the stock kernel the native one falls back to.
        ...(current?.setupFunc !== undefined ? { setupFunc: current.setupFunc } : {}),
      });
    } else if (tf.getKernel(name, host) !== undefined) {
      tf.unregisterKernel(name, host);
      const orig = saved.get(name);
      if (orig !== undefined) tf.registerKernel(orig);
    }
  }
  if (on) enabled.add(host);
  else enabled.delete(host);
  return true;
}

/** Whether the native kernels are registered on `host` (default: as setNativeKernels) now. */
export function nativeKernelsEnabled(host: NativeHost = currentHost()): boolean {
  return enabled.has(host);
}
