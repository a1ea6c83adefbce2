/**
 * BitNet b1.58 fake quantizers for training (PAPER.md section 2). Both use the straight-through estimator:
 * the forward pass sees quantized values, the backward pass hands the incoming gradient through unchanged
 * (no clipping, no gradient through the scales), so the optimizer updates the full-precision latent weights.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError } from '@bitdistill/core';
import { checkWeightQuantMode, type WeightQuantMode } from './reference.ts';

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
