/**
 * BitNet b1.58 fake quantizers for training (PAPER.md section 2). Both use the straight-through estimator:
 * the forward pass sees quantized values, the backward pass hands the incoming gradient through unchanged
 * (no clipping, no gradient through the scales), so the optimizer updates the full-precision latent weights.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError } from '@bitdistill/core';
import { fusedKernel, matMulT, registerFusedGradient } from '@bitdistill/model';
import { checkWeightQuantMode, type WeightQuantMode } from '@bitdistill/arch';

/** The straight-through estimator: forward = quantize(x), backward = identity. The only place it lives. */
function withSte(quantize: (x: tf.Tensor) => tf.Tensor): (x: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: quantize(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => [dy],
  })) as unknown as (x: tf.Tensor) => tf.Tensor;
}

/** clamp(round(w / d), -1, 1) * d with d broadcast against w. tf.round rounds half to even. */
function ternarize(w: tf.Tensor, d: tf.Tensor): tf.Tensor {
  return tf.mul(tf.clipByValue(tf.round(tf.div(w, d)), -1, 1), d);
}

function absmeanScale(absW: tf.Tensor, axis?: number): tf.Tensor {
  return tf.maximum(tf.mean(absW, axis, axis !== undefined), 1e-5);
}

function ternaryQuantRaw(w: tf.Tensor, mode: WeightQuantMode): tf.Tensor {
  return tf.tidy(() => {
    if (mode === 'absmean') return ternarize(w, absmeanScale(tf.abs(w)));
    if (mode === 'perRow') return ternarize(w, absmeanScale(tf.abs(w), -1));
    // block256: one scale per 256 consecutive values of the flattened tensor; the last block may be shorter.
    const n = w.size;
    const blocks = Math.ceil(n / 256);
    const flat = tf.reshape(w, [n]);
    const padded = tf.pad(flat, [[0, blocks * 256 - n]]);
    const counts = new Float32Array(blocks).fill(256);
    counts[blocks - 1] = n - (blocks - 1) * 256;
    const d = tf.maximum(tf.div(tf.sum(tf.abs(tf.reshape(padded, [blocks, 256])), 1, true), tf.tensor2d(counts, [blocks, 1])), 1e-5);
    const q = ternarize(tf.reshape(padded, [blocks, 256]), d);
    return tf.reshape(tf.slice(tf.reshape(q, [blocks * 256]), [0], [n]), w.shape);
  });
}

const steByMode: Record<WeightQuantMode, (x: tf.Tensor) => tf.Tensor> = {
  absmean: withSte((w) => ternaryQuantRaw(w, 'absmean')),
  block256: withSte((w) => ternaryQuantRaw(w, 'block256')),
  perRow: withSte((w) => ternaryQuantRaw(w, 'perRow')),
};

/**
 * Ternary weight fake-quantization (dequantized values in {-d, 0, +d} per scale group), with STE.
 * absmean: one d per tensor; block256: one per 256 consecutive values; perRow: one per output row (last axis =
 * input features). d = max(mean|W|, 1e-5) over the group; rounding half to even.
 */
export function ternaryQuant(w: tf.Tensor, mode: WeightQuantMode): tf.Tensor {
  checkWeightQuantMode(mode);
  if (w.dtype !== 'float32') throw new ArgumentError(`ternaryQuant: expected a float32 tensor, got ${w.dtype}`);
  return steByMode[mode](w);
}

/** Per-token (last axis) absmax int8 fake quantization: s = 127 / max(max|x|, 1e-5), with STE. */
export const int8Quant: (x: tf.Tensor) => tf.Tensor = withSte((x) =>
  tf.tidy(() => {
    const s = tf.div(127, tf.maximum(tf.max(tf.abs(x), -1, true), 1e-5));
    return tf.div(tf.clipByValue(tf.round(tf.mul(x, s)), -128, 127), s);
  }),
);

/**
 * The student's linear op in integer form, for absmean and perRow weights: the same forward value as
 * int8Quant(x) @ ternaryQuant(W)^T, but computed the way the packed-ternary kernels compute it,
 *   y = (q @ c^T) * (d / s),   q = clamp(round(x * s), -128, 127),  c = clamp(round(W / d), -1, 1),
 * where q @ c^T is a float32 matmul of small integers and therefore exact (|sum| < 2^24 for in < 131072).
 * So the trained student and the exported model agree bit for bit on every projection, instead of differing
 * by float32 accumulation noise that can flip later int8 roundings. The backward pass is the straight-through
 * one of the fake-quantized form: dx = dy @ (c * d), dW = dy^T @ (q / s), no gradient through the scales.
 */
function makeBitMatmulInt(perRow: boolean): (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const s = tf.div(127, tf.maximum(tf.max(tf.abs(x), -1, true), 1e-5)); // [N, 1]
    const q = tf.clipByValue(tf.round(tf.mul(x, s)), -128, 127) as tf.Tensor2D; // [N, in]
    const d = perRow ? tf.maximum(tf.mean(tf.abs(w), -1, true), 1e-5) : tf.maximum(tf.mean(tf.abs(w)), 1e-5); // [out, 1] or []
    const c = tf.clipByValue(tf.round(tf.div(w, d)), -1, 1) as tf.Tensor2D; // [out, in]
    const acc = matMulT(q, c, false, true); // [N, out], exact integers
    const ratio = perRow ? tf.div(tf.reshape(d, [1, -1]), s) : tf.div(d, s); // f32(d / s): [N, out] or [N, 1]
    save([q, s, c, d]);
    return {
      value: tf.mul(acc, ratio),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, ss, sc, sd] = saved as [tf.Tensor2D, tf.Tensor, tf.Tensor2D, tf.Tensor];
        const dy2 = dy as tf.Tensor2D;
        const wq = tf.mul(sc, sd) as tf.Tensor2D; // dequantized ternary weights [out, in]
        const xq = tf.div(sq, ss) as tf.Tensor2D; // dequantized activations [N, in]
        return [tf.matMul(dy2, wq), matMulT(dy2, xq, true, false)];
      },
    };
  }) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;
}

const bitMatmulAbsmean = makeBitMatmulInt(false);
const bitMatmulPerRow = makeBitMatmulInt(true);

/**
 * The fused form (issue 15): one native kernel each way (packages/backend registers it on the native engine),
 * with the quantized operands only inside the call. Autograd saves x and W, both alive anyway, where the twin
 * above saves q, s, c (a ternary copy of every weight) and d. Same values: see kernels-cpu fused.ts.
 */
export const BITLINEAR_KERNEL = 'BitDistillBitLinear';
export const BITLINEAR_GRAD_KERNEL = 'BitDistillBitLinearGrad';

registerFusedGradient(BITLINEAR_KERNEL, BITLINEAR_GRAD_KERNEL, ['x', 'w']);

/**
 * With the SubLN gain in front (issue 15): rmsNorm(x, gain, eps) and the BitLinear in one kernel each way, the
 * normalised rows recomputed in the backward instead of kept ([N, in] per projection).
 */
export const NORM_BITLINEAR_KERNEL = 'BitDistillNormBitLinear';
export const NORM_BITLINEAR_GRAD_KERNEL = 'BitDistillNormBitLinearGrad';

registerFusedGradient(NORM_BITLINEAR_KERNEL, NORM_BITLINEAR_GRAD_KERNEL, ['x', 'gain', 'w']);

/** bitMatmulInt(rmsNorm(x, gain, eps), w) on the fused kernel, or null where it is not registered. */
export function normBitMatmulInt(x: tf.Tensor2D, gain: tf.Tensor1D, eps: number, w: tf.Tensor2D, mode: 'absmean' | 'perRow'): tf.Tensor2D | null {
  if (x.dtype !== 'float32' || w.dtype !== 'float32' || gain.dtype !== 'float32' || !fusedKernel(NORM_BITLINEAR_KERNEL)) return null;
  if (x.rank !== 2 || w.rank !== 2 || gain.rank !== 1 || x.shape[1] !== w.shape[1] || gain.shape[0] !== x.shape[1]) return null;
  return tf.engine().runKernel(NORM_BITLINEAR_KERNEL, { x, gain, w }, { perRow: mode === 'perRow', eps }) as tf.Tensor2D;
}

/** The fused straight-through backward [dx, dW] of bitMatmulInt for dy, or null where the kernel is not registered. */
export function bitLinearBackward(x: tf.Tensor2D, w: tf.Tensor2D, dy: tf.Tensor2D, mode: 'absmean' | 'perRow'): [tf.Tensor2D, tf.Tensor2D] | null {
  if (!fusedKernel(BITLINEAR_GRAD_KERNEL) || x.dtype !== 'float32' || w.dtype !== 'float32') return null;
  return tf.engine().runKernel(BITLINEAR_GRAD_KERNEL, { dy, x, w }, { perRow: mode === 'perRow' }) as unknown as [tf.Tensor2D, tf.Tensor2D];
}

/** The op-by-op twin of bitMatmulInt (tf ops under a custom gradient), on every backend. */
export function bitMatmulIntTwin(x: tf.Tensor2D, w: tf.Tensor2D, mode: 'absmean' | 'perRow'): tf.Tensor2D {
  return mode === 'perRow' ? bitMatmulPerRow(x, w) : bitMatmulAbsmean(x, w);
}

/** x [N, in] @ ternary(W [out, in])^T with int8 activations, integer form; mode absmean or perRow. */
export function bitMatmulInt(x: tf.Tensor2D, w: tf.Tensor2D, mode: 'absmean' | 'perRow'): tf.Tensor2D {
  if (x.dtype === 'float32' && w.dtype === 'float32' && x.rank === 2 && w.rank === 2 && x.shape[1] === w.shape[1] && fusedKernel(BITLINEAR_KERNEL)) {
    return tf.engine().runKernel(BITLINEAR_KERNEL, { x, w }, { perRow: mode === 'perRow' }) as tf.Tensor2D;
  }
  return bitMatmulIntTwin(x, w, mode);
}
