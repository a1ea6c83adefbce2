/**
 * Matmul building blocks that keep the wasm backend on its fast path (MACHINE.md): XNNPACK only serves plain
 * 2-D matmuls without transpose flags, so the backward passes below transpose explicitly instead of letting
 * autograd emit transposed matmuls (which fall to a ~1 GFLOP/s scalar loop).
 */
import * as tf from '@tensorflow/tfjs';

/** a [M, K] @ b [K, N] -> [M, N], with a backward made of plain matmuls. */
export const matmul2d = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
      const dy2 = dy as tf.Tensor2D;
      return [tf.matMul(dy2, tf.transpose(sb)), tf.matMul(tf.transpose(sa), dy2)];
    },
  };
}) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * The linear op the model calls for every projection: x [N, in], weight [out, in] (HF layout) -> [N, out].
 * Quantization swaps this per projection from outside the model (packages/quant).
 */
export type LinearFn = (x: tf.Tensor2D, weight: tf.Tensor2D) => tf.Tensor2D;

export const denseLinear: LinearFn = (x, weight) => matmul2d(x, tf.transpose(weight));

/**
 * Optional fused RMSNorm kernels: a backend may register them (packages/backend does on wasm with the native
 * kernels); elsewhere rmsNorm runs tf's six-kernel composite. Contract (mirrored in packages/backend):
 *   BitDistillRmsNorm     {x [..., C], gain [C]}, attrs {eps} -> y = x * rsqrt(mean(x^2, -1) + eps) * gain
 *   BitDistillRmsNormGrad {dy, x, gain}, attrs {eps}         -> [dx, dgain]
 */
export const RMS_NORM_KERNEL = 'BitDistillRmsNorm';
export const RMS_NORM_GRAD_KERNEL = 'BitDistillRmsNormGrad';

tf.registerGradient({
  kernelName: RMS_NORM_KERNEL,
  inputsToSave: ['x', 'gain'],
  gradFunc: (dy, saved, attrs) => {
    const [x, gain] = saved as [tf.Tensor, tf.Tensor];
    const [dx, dgain] = tf.engine().runKernel(RMS_NORM_GRAD_KERNEL, { dy: dy as tf.Tensor, x, gain }, attrs) as tf.Tensor[];
    return { x: () => dx as tf.Tensor, gain: () => dgain as tf.Tensor };
  },
});

/** RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * gain. */
export function rmsNorm(x: tf.Tensor, gain: tf.Tensor, eps: number): tf.Tensor {
  const fused =
    x.dtype === 'float32' && gain.rank === 1 && x.shape[x.rank - 1] === gain.size && tf.getKernel(RMS_NORM_KERNEL, tf.getBackend()) !== undefined;
  if (fused) return tf.engine().runKernel(RMS_NORM_KERNEL, { x, gain }, { eps }) as tf.Tensor;
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), gain);
}

/**
 * Batched matmul for attention: a [G, M, K] @ b [G, K, N] -> [G, M, N] (G = batch x heads). A plain
 * tf.matMul: a loop of 2-D matmuls over tf.unstack was measured 10x slower on wasm (its Unpack copies slowly),
 * and attention is a small share of the FLOPs; a native BatchMatMul kernel (kernels-cpu) takes this over.
 */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return tf.matMul(a, b);
}
