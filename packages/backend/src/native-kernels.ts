/**
 * Native kernels for the wasm backend (MACHINE.md): tfjs's wasm backend runs single-threaded and its fast path
 * only serves plain 2-D matmuls, so the kernels that dominate a training step are replaced by the Node-API
 * addon of @bitdistill/kernels-cpu (blocked SIMD, run-time ISA dispatch, 2 threads).
 *
 * How a kernel is replaced: unregister tfjs's kernel, register ours under the same name (gradients are
 * registered by kernel name, so autograd keeps working and its matMul ops land here too). Ours allocates the
 * output with `makeOutput` first and takes heap views after (allocation can grow the wasm memory and detach
 * older views); the addon reads and writes the wasm heap in place. The stock configs are kept so tests can
 * switch back (`setNativeKernels(false)`) and compare.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { batchMatmulF32, broadcastBatch, nativeStatus } from '@bitdistill/kernels-cpu';

type KernelFn = (args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }) => tf.TensorInfo;

/**
 * tf.matMul: a [...batchA, M, K] (or [..., K, M] with transposeA), b [...batchB, K, N] (or [..., N, K]) ->
 * [...broadcast(batchA, batchB), M, N]. The plain BatchMatMul kernel has only these two attrs (bias and
 * activation belong to _FusedMatMul, which nothing here emits).
 */
const batchMatMul: KernelFn = ({ inputs, attrs, backend }) => {
  const wasm = backend as BackendWasm;
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error('BatchMatMul (native): only float32 tensors are supported');
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`BatchMatMul (native): inputs must have rank >= 2, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
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
  const out = wasm.makeOutput([...broadcastBatch(batchA, batchB).shape, m, n], 'float32');
  const av = wasm.typedArrayFromHeap(a) as Float32Array;
  const bv = wasm.typedArrayFromHeap(b) as Float32Array;
  const ov = wasm.typedArrayFromHeap(out) as Float32Array;
  batchMatmulF32(av, bv, { batchA, batchB, m, k, n }, { transA: transposeA, transB: transposeB }, ov);
  return out;
};

const NATIVE: Record<string, KernelFn> = {
  BatchMatMul: batchMatMul,
};

/** Names of the kernels this module replaces on wasm. */
export const NATIVE_KERNEL_NAMES: readonly string[] = Object.keys(NATIVE);

const stock = new Map<string, tf.KernelConfig>();
let enabled = false;

/**
 * Registers (true) or removes (false) the native kernels on the wasm backend; the wasm backend must be
 * initialised. Returns false when enabling is impossible because the addon is not loaded.
 */
export function setNativeKernels(on: boolean): boolean {
  if (on === enabled) return true;
  if (on && !nativeStatus().native) return false;
  for (const name of NATIVE_KERNEL_NAMES) {
    const current = tf.getKernel(name, 'wasm');
    if (on) {
      if (current !== undefined) {
        stock.set(name, current);
        tf.unregisterKernel(name, 'wasm');
      }
      // The stock setupFunc is kept: it already ran when the backend initialised and is harmless to keep.
      tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: NATIVE[name] as tf.KernelFunc, ...(current?.setupFunc ? { setupFunc: current.setupFunc } : {}) });
    } else {
      if (current !== undefined) tf.unregisterKernel(name, 'wasm');
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
