/** Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_). */
import * as tf from '@tensorflow/tfjs';

/** The native engine's one-call gradient-norm pass (packages/backend BitDistillSquaredSums), where registered. */
const SQUARED_SUMS_KERNEL = 'BitDistillSquaredSums';

/** Returns the clipped gradients (new tensors) and the norm before clipping. maxNorm <= 0 disables clipping. */
export function clipByGlobalNorm(grads: Record<string, tf.Tensor>, maxNorm: number): { grads: Record<string, tf.Tensor>; norm: number } {
  const names = Object.keys(grads);
  const normT = tf.tidy(() => tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n] as tf.Tensor))))));
  const norm = normT.dataSync()[0] as number;
  normT.dispose();
  if (maxNorm <= 0 || !Number.isFinite(norm) || norm <= maxNorm) return { grads, norm };
  const scale = maxNorm / (norm + 1e-6);
  const out: Record<string, tf.Tensor> = {};
  for (const n of names) out[n] = tf.mul(grads[n] as tf.Tensor, scale);
  return { grads: out, norm };
}

/**
 * The factor that averages summed gradients over `divisor` micro-batches and clips their global L2 norm to
 * maxNorm (<= 0: no clipping): g_used = g_sum * scale. `norm` is the averaged gradients' norm before clipping
 * (what clipByGlobalNorm reports). One squared sum per parameter (on the native engine all of them in one kernel
 * call, in double, with no squared copy; elsewhere one gradient squared at a time), read back together and asynchronously (a GPU backend under Node has no synchronous read), then
 * added up here in float64.
 */
export async function clipScale(summed: Record<string, tf.Tensor>, maxNorm: number, divisor = 1): Promise<{ norm: number; scale: number }> {
  const gs = Object.values(summed);
  let sq = 0;
  if (gs.length > 0) {
    let all: tf.Tensor;
    if (gs.every((g) => g.dtype === 'float32') && tf.getKernel(SQUARED_SUMS_KERNEL, tf.getBackend()) !== undefined) {
      all = tf.engine().runKernel(SQUARED_SUMS_KERNEL, gs as unknown as tf.NamedTensorMap) as tf.Tensor;
    } else {
      const sums = gs.map((g) => tf.tidy(() => tf.sum(tf.square(g))));
      all = tf.stack(sums);
      tf.dispose(sums);
    }
    for (const s of (await all.data()) as Float32Array) sq += s;
    all.dispose();
  }
  const norm = Math.sqrt(sq) / divisor;
  const clip = maxNorm > 0 && Number.isFinite(norm) && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return { norm, scale: clip / divisor };
}
