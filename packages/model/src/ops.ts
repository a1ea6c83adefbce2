/**
 * Matmul building blocks. Products with a transposed operand use tf.matMul's transpose flags where the
 * backend's BatchMatMul serves them at full speed (the native engine, wasm with the native kernels, tfjs-node,
 * webgpu): no transposed copy of a weight is ever made, which at Qwen3-0.6B scale is a 622 MB copy of the tied
 * embedding per forward and two per backward. Stock wasm is the exception (MACHINE.md): XNNPACK only serves
 * plain 2-D matmuls, transposed ones fall to a ~1 GFLOP/s scalar loop, so there the operands are transposed
 * explicitly first.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedOpsEnabled } from '@bitdistill/core';

/**
 * A variable that owns its initial tensor's data: tf.variable(t) shares t's storage and keeps t alive as a tensor
 * of its own, so disposing the variable alone would not free the weights. The initial tensor is disposed here.
 */
export function ownedVariable(initial: tf.Tensor, trainable: boolean): tf.Variable {
  const v = tf.variable(initial, trainable);
  initial.dispose();
  return v;
}

/**
 * Whether tf.matMul with transpose flags is fast on the active backend: everywhere but stock wasm. The native
 * kernels register BitDistillRmsNorm together with their BatchMatMul, so its presence on wasm tells.
 */
export function transposeFlagsFast(): boolean {
  const b = tf.getBackend();
  return b !== 'wasm' || tf.getKernel(RMS_NORM_KERNEL, b) !== undefined;
}

/** op(a) @ op(b) for 2-D or batched operands, with transpose flags or explicit transposes (see above). */
export function matMulT<T extends tf.Tensor>(a: T, b: T, transA = false, transB = false): T {
  if (transposeFlagsFast() || (!transA && !transB)) return tf.matMul(a, b, transA, transB) as T;
  const t = (x: T): T => {
    const perm = [...x.shape.keys()];
    perm.push(perm.splice(perm.length - 2, 1)[0] as number); // swap the last two axes
    return tf.transpose(x, perm) as T;
  };
  return tf.matMul(transA ? t(a) : a, transB ? t(b) : b) as T;
}

/**
 * The kernel of a product of a backward pass, {a, b} attrs {transposeA, transposeB} (2-D float32): packages/backend
 * registers it on the native engine, where optim.gradPrecision bf16 runs it with bf16 operands and fp32 sums (the
 * official code's bf16 backward); fp32 otherwise, the same product as tf.matMul.
 */
export const GRAD_MATMUL_KERNEL = 'BitDistillGradMatMul';

/** op(a) @ op(b) of a backward pass: GRAD_MATMUL_KERNEL where the backend has it, else matMulT. */
export function gradMatMul(a: tf.Tensor2D, b: tf.Tensor2D, transA = false, transB = false): tf.Tensor2D {
  if (tf.getKernel(GRAD_MATMUL_KERNEL, tf.getBackend()) === undefined) return matMulT(a, b, transA, transB);
  return tf.engine().runKernel(GRAD_MATMUL_KERNEL, { a, b }, { transposeA: transA, transposeB: transB } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/**
 * x [N, in] @ weight [out, in]^T -> [N, out] (the HF layout, never transposed in memory);
 * backward dx = dy @ weight, dweight = dy^T @ x (gradMatMul).
 */
const linearT = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([x, w]);
  return {
    value: matMulT(x, w, false, true),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
      const dy2 = dy as tf.Tensor2D;
      return [gradMatMul(dy2, sw), gradMatMul(dy2, sx, true, false)];
    },
  };
}) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * The linear op the model calls for every projection: x [N, in], weight [out, in] (HF layout) -> [N, out].
 * Quantization swaps this per projection from outside the model (packages/quant). `backward`, when present,
 * computes [dx, dweight] for an upstream dy without running the forward again: activation recomputation then
 * keeps the projection outputs of the first forward and replays only the cheap ops around them (decoder.ts).
 */
export type LinearFn = ((x: tf.Tensor2D, weight: tf.Tensor2D) => tf.Tensor2D) & {
  backward?: ((x: tf.Tensor2D, weight: tf.Tensor2D, dy: tf.Tensor2D) => [tf.Tensor2D, tf.Tensor2D]) | undefined;
  /** Whether `backward` can run now (e.g. only where a fused kernel is registered); absent: whenever it exists. */
  replayable?: (() => boolean) | undefined;
  /**
   * The projection of rmsNorm(x, gain, eps) in one fused op (a SubLN gain in front of it), or null where no such
   * op runs now; the model then normalises and calls the linear op itself.
   */
  normed?: ((x: tf.Tensor2D, gain: tf.Tensor1D, eps: number, weight: tf.Tensor2D) => tf.Tensor2D | null) | undefined;
};

export const denseLinear: LinearFn = Object.assign((x: tf.Tensor2D, weight: tf.Tensor2D) => linearT(x, weight), {
  backward: (x: tf.Tensor2D, weight: tf.Tensor2D, dy: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] => [gradMatMul(dy, weight), gradMatMul(dy, x, true, false)],
});

/**
 * A projection whose output y was computed already (kept from the forward pass): value y, gradients those of
 * `linear` at (x, weight) through its `backward`. Used when a recomputed block replays its forward.
 */
export function replayedLinear(linear: LinearFn, y: tf.Tensor2D, x: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  const backward = linear.backward;
  if (backward === undefined) throw new Error('replayedLinear: the linear op has no backward');
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, wi, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([xi, wi]);
    return {
      value: tf.clone(y),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => backward(saved[0] as tf.Tensor2D, saved[1] as tf.Tensor2D, dy as tf.Tensor2D),
    };
  }) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;
  return op(x, weight);
}

/**
 * Optional fused RMSNorm kernels: a backend may register them (packages/backend does on wasm with the native
 * kernels); elsewhere rmsNorm runs tf's six-kernel composite. Contract (mirrored in packages/backend):
 *   BitDistillRmsNorm     {x [..., C], gain [C]}, attrs {eps} -> y = x * rsqrt(mean(x^2, -1) + eps) * gain
 *   BitDistillRmsNormGrad {dy, x, gain}, attrs {eps}         -> [dx, dgain]
 */
export const RMS_NORM_KERNEL = 'BitDistillRmsNorm';
export const RMS_NORM_GRAD_KERNEL = 'BitDistillRmsNormGrad';

/**
 * The gradient of a fused kernel pair: saves `inputs` (and `constants`), runs `gradKernel` on {dy, ...saved} with
 * the forward's attrs, and hands its outputs to `inputs` in order; `constants` get no gradient (zeros, never
 * formed unless asked for).
 */
export function registerFusedGradient(kernelName: string, gradKernel: string, inputs: readonly string[], constants: readonly string[] = []): void {
  const names = [...inputs, ...constants];
  tf.registerGradient({
    kernelName,
    inputsToSave: names,
    gradFunc: (dy, saved, attrs) => {
      const named: Record<string, tf.Tensor> = { dy: dy as tf.Tensor };
      names.forEach((n, i) => (named[n] = saved[i] as tf.Tensor));
      const res = tf.engine().runKernel(gradKernel, named as tf.NamedTensorMap, attrs) as tf.Tensor | tf.Tensor[];
      const outs = Array.isArray(res) ? res : [res]; // a gradient kernel with one output returns the tensor itself
      const grads: Record<string, () => tf.Tensor> = {};
      inputs.forEach((n, i) => (grads[n] = () => outs[i] as tf.Tensor));
      constants.forEach((n) => (grads[n] = () => tf.zerosLike(named[n] as tf.Tensor)));
      return grads;
    },
  });
}

registerFusedGradient(RMS_NORM_KERNEL, RMS_NORM_GRAD_KERNEL, ['x', 'gain']);

/**
 * Fused training ops (issue 15): a backend may register kernels for the student's BitLinear and for SwiGLU (the
 * native engine does, packages/backend); elsewhere, or with the fused ops switched off, each op runs as its
 * op-by-op twin. The twins stay for the tests and for the bench's comparison. Contracts:
 *   BitDistillSwiglu     {gate, up} -> silu(gate) * up         BitDistillSwigluGrad     {dy, gate, up} -> [dgate, dup]
 *   BitDistillBitLinear  {x [M, K], w [N, K]}, attrs {perRow} -> y [M, N]   (see packages/quant bitMatmulInt)
 *   BitDistillBitLinearGrad {dy, x, w}, attrs {perRow} -> [dx, dw]
 * The switch is @bitdistill/core's setFusedOps (BITDISTILL_FUSED=0 in the environment starts with them off).
 */
/** Whether the fused kernel `name` runs on the active backend now. */
export function fusedKernel(name: string): boolean {
  return fusedOpsEnabled() && tf.getKernel(name, tf.getBackend()) !== undefined;
}

export const SWIGLU_KERNEL = 'BitDistillSwiglu';
export const SWIGLU_GRAD_KERNEL = 'BitDistillSwigluGrad';

registerFusedGradient(SWIGLU_KERNEL, SWIGLU_GRAD_KERNEL, ['gate', 'up']);

/** SwiGLU: silu(gate) * up = gate * sigmoid(gate) * up (fused where the backend has the kernel). */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (gate.dtype === 'float32' && up.dtype === 'float32' && tf.util.arraysEqual(gate.shape, up.shape) && fusedKernel(SWIGLU_KERNEL)) {
    return tf.engine().runKernel(SWIGLU_KERNEL, { gate, up }) as tf.Tensor;
  }
  return tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
}

export const ATTENTION_KERNEL = 'BitDistillAttention';
export const ATTENTION_GRAD_KERNEL = 'BitDistillAttentionGrad';

registerFusedGradient(ATTENTION_KERNEL, ATTENTION_GRAD_KERNEL, ['q', 'k', 'v'], ['cos', 'sin']);

/**
 * Fused causal self-attention (where the backend has the kernel; decoder.ts keeps the op-by-op form as its
 * twin): q [B, T, H, d] and k, v [B, T, Hkv, d] before RoPE, cos / sin [T, d] -> [B, T, H, d] =
 * softmax(causal(scale * rope(q) rope(k)^T)) v, query head h reading KV head floor(h H_kv / H).
 */
export function fusedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, scale: number): tf.Tensor4D {
  return tf.engine().runKernel(ATTENTION_KERNEL, { q, k, v, cos, sin } as unknown as tf.NamedTensorMap, { scale }) as tf.Tensor4D;
}

/**
 * One dense decoder layer's forward without gradient in one kernel (packages/backend; the op-by-op block is its
 * twin, bit-identical on the native engine): the frozen teacher's forward and evaluation, where nothing is recorded.
 */
export const DENSE_BLOCK_KERNEL = 'BitDistillDenseBlock';

export const ROPE_HEADS_KERNEL = 'BitDistillRopeHeads';
export const ROPE_HEADS_GRAD_KERNEL = 'BitDistillRopeHeadsGrad';

registerFusedGradient(ROPE_HEADS_KERNEL, ROPE_HEADS_GRAD_KERNEL, ['x'], ['cos', 'sin']);

/**
 * The relation KD's view of a projection (fused, where the backend has the kernel): x [B, T, H, d] ->
 * [B, H, T, d], with RoPE (rotate_half, cos / sin [T, d]) when `rope`. decoder.ts keeps the op-by-op form
 * (transpose, then its applyRope) as the twin.
 */
export function fusedRopeHeads(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, rope: boolean): tf.Tensor4D {
  return tf.engine().runKernel(ROPE_HEADS_KERNEL, { x, cos, sin } as unknown as tf.NamedTensorMap, { rope } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * gain. */
export function rmsNorm(x: tf.Tensor, gain: tf.Tensor, eps: number): tf.Tensor {
  const fused = x.dtype === 'float32' && gain.rank === 1 && x.shape[x.rank - 1] === gain.size && tf.getKernel(RMS_NORM_KERNEL, tf.getBackend()) !== undefined;
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
