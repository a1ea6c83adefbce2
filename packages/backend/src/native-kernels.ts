/**
 * Native kernels for the wasm backend (MACHINE.md): tfjs's wasm backend runs single-threaded, its fast matmul
 * path only serves plain 2-D products, and its broadcast compares, outer-axis reductions and transposes run
 * scalar loops. The kernels that dominate a training step (measured with tf.profile on the reference config,
 * bench/results/train-*.md) are replaced by the Node-API addon of @bitdistill/kernels-cpu: blocked SIMD GEMM
 * and elementwise loops with run-time ISA dispatch, on its thread pool.
 *
 * How a kernel is replaced: unregister tfjs's kernel and register ours under the same name; gradients are
 * registered by kernel name, so autograd keeps working and the ops it emits land here too. Ours allocates the
 * output with `makeOutput` first and takes heap views after (allocation can grow the wasm memory and detach
 * older views); the addon reads and writes the wasm heap in place. Cases a native kernel does not cover
 * (other dtypes, non-contiguous reduction axes, gather along another axis...) call the stock kernel, which is
 * kept, together with its setupFunc, so `setNativeKernels(false)` restores stock wasm (the tests compare both).
 */
import * as tf from '@tensorflow/tfjs';
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
  tile32,
  transpose32,
  unaryF32,
  type BinaryOp,
  type CompareOp,
  type ReduceOp,
  type UnaryOp,
} from '@bitdistill/kernels-cpu';

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  attrs?: tf.NamedAttrMap;
  backend: unknown;
}
type KernelFn = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

const stock = new Map<string, tf.KernelConfig>();
let enabled = false;

/** The stock wasm kernel, for the cases a native kernel leaves to it. */
function stockKernel(name: string, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const k = stock.get(name);
  if (k === undefined) throw new Error(`${name} (native): no stock wasm kernel to fall back to`);
  return k.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A Float32Array over a tensor's 4-byte data whatever its dtype (copies move bits, not values). */
function bits32(wasm: BackendWasm, t: tf.TensorInfo): Float32Array {
  const v = wasm.typedArrayFromHeap(t);
  return new Float32Array(v.buffer, v.byteOffset, sizeOf(t.shape));
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
  const wasm = backend as BackendWasm;
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
  const out = wasm.makeOutput([...tf.backend_util.assertAndGetBroadcastShape(batchA, batchB), m, n], 'float32');
  const av = wasm.typedArrayFromHeap(a) as Float32Array;
  const bv = wasm.typedArrayFromHeap(b) as Float32Array;
  const ov = wasm.typedArrayFromHeap(out) as Float32Array;
  batchMatmulF32(av, bv, { batchA, batchB, m, k, n }, { transA: transposeA, transB: transposeB }, ov);
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Elementwise

function binaryKernel(name: string, op: BinaryOp): KernelFn {
  return (args) => {
    const wasm = args.backend as BackendWasm;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stockKernel(name, args);
    const out = wasm.makeOutput(broadcastPlan(a.shape, b.shape).outShape, 'float32');
    binaryF32(op, wasm.typedArrayFromHeap(a) as Float32Array, a.shape, wasm.typedArrayFromHeap(b) as Float32Array, b.shape, wasm.typedArrayFromHeap(out) as Float32Array);
    return out;
  };
}

function compareKernel(name: string, op: CompareOp): KernelFn {
  return (args) => {
    const wasm = args.backend as BackendWasm;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== b.dtype || !is4Byte(a)) return stockKernel(name, args);
    const out = wasm.makeOutput(broadcastPlan(a.shape, b.shape).outShape, 'bool');
    const av = wasm.typedArrayFromHeap(a) as Float32Array | Int32Array;
    const bv = wasm.typedArrayFromHeap(b) as Float32Array | Int32Array;
    compare(op, av, a.shape, bv, b.shape, wasm.typedArrayFromHeap(out) as Uint8Array);
    return out;
  };
}

function unaryKernel(name: string, op: UnaryOp): KernelFn {
  return (args) => {
    const wasm = args.backend as BackendWasm;
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== 'float32') return stockKernel(name, args);
    const out = wasm.makeOutput(x.shape, 'float32');
    const attrs = (args.attrs ?? {}) as { clipValueMin?: number; clipValueMax?: number };
    unaryF32(op, wasm.typedArrayFromHeap(x) as Float32Array, wasm.typedArrayFromHeap(out) as Float32Array, attrs.clipValueMin ?? 0, attrs.clipValueMax ?? 0);
    return out;
  };
}

/**
 * Identity without a copy, as tfjs's cpu backend does (the stock wasm kernel copies): tensors are immutable
 * and Variable.assign swaps the data id instead of writing in place, so sharing the data is safe.
 */
function share(wasm: BackendWasm, x: tf.TensorInfo, dtype: tf.DataType = x.dtype): tf.TensorInfo {
  wasm.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype };
}

const identity: KernelFn = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === 'string') return stockKernel('Identity', args);
  return share(args.backend as BackendWasm, x);
};

/** Cast: same dtype shares the data (gradients of mul cast float32 to float32); bool / int32 -> float32 natively. */
const cast: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { dtype } = args.attrs as { dtype: tf.DataType };
  if (dtype === x.dtype && dtype !== 'string') return share(wasm, x);
  if (dtype !== 'float32' || (x.dtype !== 'bool' && x.dtype !== 'int32')) return stockKernel('Cast', args);
  const out = wasm.makeOutput(x.shape, 'float32');
  castToF32(wasm.typedArrayFromHeap(x) as Uint8Array | Int32Array, wasm.typedArrayFromHeap(out) as Float32Array);
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Reductions

/** Sum, Max, Min, Mean over a contiguous block of axes of a float32 tensor, as [outer, r, inner]. */
function reduceKernel(name: string, op: ReduceOp, axisAttr: 'axis' | 'reductionIndices'): KernelFn {
  return (args) => {
    const wasm = args.backend as BackendWasm;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const attrs = args.attrs as Record<string, unknown>;
    const keepDims = attrs['keepDims'] === true;
    if (x.dtype !== 'float32') return stockKernel(name, args);
    const axes = [...tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape)].sort((p, q) => p - q);
    if (axes.some((v, i) => i > 0 && v !== (axes[i - 1] as number) + 1)) return stockKernel(name, args);
    const first = axes[0] ?? 0;
    const last = axes.length === 0 ? -1 : (axes[axes.length - 1] as number);
    const outer = sizeOf(x.shape.slice(0, first));
    const r = sizeOf(x.shape.slice(first, last + 1));
    const inner = sizeOf(x.shape.slice(last + 1));
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = wasm.makeOutput(outShape, 'float32');
    reduceF32(op, wasm.typedArrayFromHeap(x) as Float32Array, outer, r, inner, wasm.typedArrayFromHeap(out) as Float32Array);
    return out;
  };
}

// ---------------------------------------------------------------------------------------------------------
// Data movement

const transpose: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { perm } = args.attrs as { perm: number[] };
  if (!is4Byte(x)) return stockKernel('Transpose', args);
  const out = wasm.makeOutput(perm.map((p) => x.shape[p] as number), x.dtype);
  transpose32(bits32(wasm, x), x.shape, perm, bits32(wasm, out));
  return out;
};

/** Row-major element strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = (s[d + 1] as number) * (shape[d + 1] as number);
  return s;
}

const concat: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const inputs = args.inputs as unknown as tf.TensorInfo[];
  const first = inputs[0];
  if (first === undefined || !inputs.every((t) => t.dtype === first.dtype && is4Byte(t))) return stockKernel('Concat', args);
  const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, first.shape)[0] as number;
  const shapes = inputs.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const outShape = tf.backend_util.computeOutShape(shapes, axis);
  const out = wasm.makeOutput(outShape, first.dtype);
  const ov = bits32(wasm, out);
  // out as [outer, total]: input i fills columns [offset, offset + its inner size) of every row.
  const outer = sizeOf(outShape.slice(0, axis));
  const total = sizeOf(outShape.slice(axis));
  let offset = 0;
  for (const t of inputs) {
    const w = sizeOf(t.shape.slice(axis));
    if (w > 0 && outer > 0) copyStrided32(bits32(wasm, t), { offset: 0, strides: [w, 1] }, ov, { offset, strides: [total, 1] }, [outer, w]);
    offset += w;
  }
  return out;
};

const splitV: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
  if (!is4Byte(x)) return stockKernel('SplitV', args);
  const ax = tf.util.parseAxisParam(axis, x.shape)[0] as number;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const outer = sizeOf(x.shape.slice(0, ax));
  const inner = sizeOf(x.shape.slice(ax + 1));
  const total = (x.shape[ax] as number) * inner;
  const outs = sizes.map((s) => wasm.makeOutput(x.shape.map((d, i) => (i === ax ? s : d)), x.dtype));
  // Views after every allocation (see the header).
  const xv = bits32(wasm, x);
  let offset = 0;
  sizes.forEach((s, i) => {
    const w = s * inner;
    if (w > 0 && outer > 0) copyStrided32(xv, { offset, strides: [total, 1] }, bits32(wasm, outs[i] as tf.TensorInfo), { offset: 0, strides: [w, 1] }, [outer, w]);
    offset += w;
  });
  return outs;
};

/** tf.tile, and through it tf.broadcastTo. */
const tile: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as { reps: number[] };
  if (!is4Byte(x)) return stockKernel('Tile', args);
  const out = wasm.makeOutput(x.shape.map((d, i) => d * (reps[i] as number)), x.dtype);
  tile32(bits32(wasm, x), x.shape, reps, bits32(wasm, out));
  return out;
};

/** tf.gather along axis 0 without batch dims (the embedding lookup); other cases go to the stock kernel. */
const gatherV2: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
  const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
  if (!is4Byte(x) || indices.dtype !== 'int32' || batchDims !== 0 || x.shape.length === 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0) {
    return stockKernel('GatherV2', args);
  }
  const rows = x.shape[0] as number;
  const rowLen = sizeOf(x.shape.slice(1));
  if (rowLen === 0) return stockKernel('GatherV2', args);
  const out = wasm.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const idx = wasm.typedArrayFromHeap(indices) as Int32Array;
  const bad = idx.findIndex((i) => i < 0 || i >= rows);
  if (bad >= 0) throw new Error(`GatherV2: the index value ${idx[bad]} is not in [0, ${rows - 1}]`);
  gatherRows32(bits32(wasm, x), rowLen, idx, bits32(wasm, out));
  return out;
};

// ---------------------------------------------------------------------------------------------------------
// Fused RMSNorm (kernels of @bitdistill/model's rmsNorm op, which falls back to tf's composite where a
// backend lacks them; the names and contracts are mirrored there)

/** BitDistillRmsNorm: {x [..., C], gain [C]}, attrs {eps} -> y = x / sqrt(mean(x^2, -1) + eps) * gain. */
const rmsNorm: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { x, gain } = args.inputs as { x: tf.TensorInfo; gain: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const out = wasm.makeOutput(x.shape, 'float32');
  rmsNormF32(wasm.typedArrayFromHeap(x) as Float32Array, wasm.typedArrayFromHeap(gain) as Float32Array, eps, wasm.typedArrayFromHeap(out) as Float32Array);
  return out;
};

/** BitDistillRmsNormGrad: {dy, x, gain}, attrs {eps} -> [dx (x's shape), dgain (gain's shape)]. */
const rmsNormGrad: KernelFn = (args) => {
  const wasm = args.backend as BackendWasm;
  const { dy, x, gain } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo; gain: tf.TensorInfo };
  const { eps } = args.attrs as { eps: number };
  const dx = wasm.makeOutput(x.shape, 'float32');
  const dgain = wasm.makeOutput(gain.shape, 'float32');
  const view = (t: tf.TensorInfo): Float32Array => wasm.typedArrayFromHeap(t) as Float32Array;
  rmsNormGradF32(view(x), view(gain), eps, view(dy), view(dx), view(dgain));
  return [dx, dgain];
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
  Sum: reduceKernel('Sum', 'sum', 'axis'),
  Mean: reduceKernel('Mean', 'mean', 'axis'),
  Max: reduceKernel('Max', 'max', 'reductionIndices'),
  Min: reduceKernel('Min', 'min', 'axis'),
  Transpose: transpose,
  Concat: concat,
  SplitV: splitV,
  GatherV2: gatherV2,
  Tile: tile,
  Identity: identity,
  BitDistillRmsNorm: rmsNorm,
  BitDistillRmsNormGrad: rmsNormGrad,
};

/**
 * tfjs's Sum and Mean gradients multiply the reshaped dy by ones(x.shape), which tf.ones builds in JavaScript
 * and uploads to the wasm heap: 16 MB, and ~12 ms, for the [B, T, V] sum of the cross-entropy. With the native
 * kernels on, dy is broadcast by the native Tile instead (the same values: v * 1 = v, and Mean divides the
 * same dy by the same count); otherwise, and on other backends, the stock gradient runs.
 */
function broadcastingReductionGrad(name: 'Sum' | 'Mean', stockGrad: tf.GradConfig): tf.GradConfig {
  return {
    ...stockGrad,
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as tf.Tensor;
      const d = dy as tf.Tensor;
      if (!enabled || tf.getBackend() !== 'wasm' || d.dtype !== 'float32') return stockGrad.gradFunc(dy, saved, attrs);
      const axes = tf.util.parseAxisParam((attrs as { axis: number | number[] }).axis, x.shape);
      const expanded = tf.reshape(d, x.shape.map((n, i) => (axes.includes(i) ? 1 : n)));
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

/** Names of the tfjs kernels this module replaces on wasm. */
export const NATIVE_KERNEL_NAMES: readonly string[] = Object.keys(NATIVE);

/**
 * Registers (true) or removes (false) the native kernels on the wasm backend, which must be initialised
 * (its setupFuncs must have run). Returns false, changing nothing, when the addon is not loaded.
 */
export function setNativeKernels(on: boolean): boolean {
  if (on === enabled) return true;
  if (on && !nativeStatus().native) return false;
  if (on) wrapReductionGradients();
  for (const name of NATIVE_KERNEL_NAMES) {
    if (on) {
      const current = tf.getKernel(name, 'wasm');
      if (current !== undefined) {
        stock.set(name, current);
        tf.unregisterKernel(name, 'wasm');
      }
      tf.registerKernel({
        kernelName: name,
        backendName: 'wasm',
        kernelFunc: NATIVE[name] as unknown as tf.KernelFunc,
        // The stock setupFunc already ran when the backend initialised; kept so a re-initialised backend still
        // sets up the stock kernel the native one falls back to.
        ...(current?.setupFunc !== undefined ? { setupFunc: current.setupFunc } : {}),
      });
    } else if (tf.getKernel(name, 'wasm') !== undefined) {
      tf.unregisterKernel(name, 'wasm');
      const orig = stock.get(name);
      if (orig !== undefined) tf.registerKernel(orig);
    }
  }
  enabled = on;
  return true;
}

/** Whether the native kernels are registered on wasm now. */
export function nativeKernelsEnabled(): boolean {
  return enabled;
}
