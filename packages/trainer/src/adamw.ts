/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW: tfjs ships Adam only.
 *   p <- p - lr * wd * p
 *   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
 *   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * The moments are plain tensors keyed by parameter name, so checkpoints save and restore them exactly.
 *
 * Memory at real size: on backends whose tensors are host TypedArrays that dataSync hands out as they are (the
 * native engine, tfjs cpu), the update is one fused pass per parameter (kernels-cpu adamwF32: native, threaded) that writes m and v in place (they are
 * this optimizer's own, never shared) and the new parameter into a new array (from the engine's buffer pool, through
 * its BitDistillAdamW kernel, where that is registered: the parameters in calls of up to 64 MiB); elsewhere it is tf ops in a
 * tidy per parameter. Either way at most one parameter's temporaries are alive at a time: one tidy over all
 * of Qwen3-0.6B's parameters held ~8 x 2.4 GB of temporaries at once.
 */
import * as tf from '@tensorflow/tfjs';
import { shapeSize } from '@bitdistill/core';
import { adamwF32 } from '@bitdistill/kernels-cpu/engine';

/**
 * The native engine's update kernel (packages/backend BitDistillAdamW: kernels-cpu adamwF32 with the new parameter
 * in the engine's buffer pool, m and v in place). Where it is registered it is used; a fresh array per parameter
 * and step otherwise cost the model's size in zero-fill and page faults every step.
 */
const ADAMW_KERNEL = 'BitDistillAdamW';

/** New-parameter bytes per BitDistillAdamW call (a larger parameter takes a call of its own). */
export const ADAMW_GROUP_BYTES = 64 * 2 ** 20;

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  readonly options: AdamWOptions;
  /** Number of updates applied so far (t in the bias correction). */
  step = 0;
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();

  constructor(options: AdamWOptions) {
    this.options = options;
  }

  /**
   * Apply one update with learning rate `lr` to every parameter that has a gradient in `grads`, each gradient
   * multiplied by `gradScale` first (gradient averaging and clipping, without a scaled copy of every gradient).
   */
  apply(params: Map<string, tf.Variable>, grads: Record<string, tf.Tensor>, lr: number, gradScale = 1): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    const updates: [tf.Variable, tf.Tensor, tf.Variable, tf.Variable][] = [];
    for (const [name, p] of params) {
      const g = grads[name];
      if (g === undefined || !p.trainable) continue;
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (m === undefined || v === undefined) {
        m = zeroVariable(p.shape);
        v = zeroVariable(p.shape);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      updates.push([p, g, m, v]);
    }
    if (updates.length === 0) return;
    if (tf.getKernel(ADAMW_KERNEL, tf.getBackend()) !== undefined) {
      // The parameters in groups of up to ADAMW_GROUP_BYTES, one kernel call each (inputs [p.., g.., m.., v..]):
      // a group's new parameters exist beside the old ones until they are assigned, so one call over every
      // parameter held a second copy of the model (2.4 GB at Qwen3-0.6B); the tiny model is one call.
      const attrs = { beta1, beta2, eps, weightDecay, lr, bc1, bc2, gradScale };
      const bytesOf = (i: number): number => 4 * (updates[i] as (typeof updates)[number])[0].size;
      let start = 0;
      while (start < updates.length) {
        let end = start + 1;
        for (let bytes = bytesOf(start); end < updates.length && bytes + bytesOf(end) <= ADAMW_GROUP_BYTES; end++) bytes += bytesOf(end);
        const group = updates.slice(start, end);
        const inputs = [0, 1, 2, 3].flatMap((j) => group.map((u) => u[j] as tf.Tensor));
        const next = tf.engine().runKernel(ADAMW_KERNEL, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
        group.forEach(([p], i) => {
          const t = next[i] as tf.Tensor;
          p.assign(t);
          t.dispose();
        });
        start = end;
      }
      return;
    }
    const fused = hostStorage();
    for (const [p, g, m, v] of updates) {
      if (fused) {
        const next = new Float32Array(p.size);
        adamwF32(hostValues(p), hostValues(g), hostValues(m), hostValues(v), next, { beta1, beta2, eps, weightDecay, lr, bc1, bc2, gradScale });
        const t = tf.tensor(next, p.shape);
        p.assign(t);
        t.dispose();
        continue;
      }
      tf.tidy(() => {
        const gs = gradScale === 1 ? g : tf.mul(g, gradScale);
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(gs, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(gs), 1 - beta2)));
        const update = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps));
        const decayed = weightDecay === 0 ? p : tf.mul(p, 1 - lr * weightDecay);
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      });
    }
  }

  /** Moments as named Float32Arrays (for optimizer.safetensors) plus the step. */
  async state(): Promise<{ step: number; tensors: Map<string, { shape: number[]; data: Float32Array }> }> {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, m] of this.m) tensors.set(`m.${name}`, { shape: [...m.shape], data: (await m.data()) as Float32Array });
    for (const [name, v] of this.v) tensors.set(`v.${name}`, { shape: [...v.shape], data: (await v.data()) as Float32Array });
    return { step: this.step, tensors };
  }

  load(step: number, tensors: Map<string, { shape: readonly number[]; data: Float32Array }>): void {
    this.dispose();
    this.step = step;
    for (const [key, t] of tensors) {
      const kind = key.slice(0, 2);
      const name = key.slice(2);
      const target = kind === 'm.' ? this.m : kind === 'v.' ? this.v : null;
      if (target === null) continue;
      target.set(name, tf.variable(tf.tensor(t.data, [...t.shape]), false));
    }
  }

  dispose(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

function zeroVariable(shape: readonly number[]): tf.Variable {
  const t = tf.tensor(new Float32Array(shapeSize(shape)), [...shape]);
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

/** Backends whose dataSync returns the tensor's own host storage (so m and v can be updated in place). */
function hostStorage(): boolean {
  const b = tf.getBackend();
  return b === 'native' || b === 'cpu';
}

/**
 * A tensor's host storage, read in place. Through the backend's data map rather than dataSync: the native
 * engine marks arrays dataSync hands out as never reusable, and the gradients read here are disposed right
 * after the update, so their buffers should go back to its pool.
 */
function hostValues(t: tf.Tensor): Float32Array {
  const entry = (tf.backend() as unknown as { data?: { get(id: object): { values?: unknown } | undefined } }).data?.get(t.dataId);
  const v = entry?.values;
  return v instanceof Float32Array ? v : (t.dataSync() as Float32Array);
}

/** Scalar reference twin of one AdamW update on plain arrays (for tests). */
export function adamwRef(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, step: number, lr: number, o: AdamWOptions): void {
  const bc1 = 1 - Math.pow(o.beta1, step);
  const bc2 = 1 - Math.pow(o.beta2, step);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] as number;
    m[i] = o.beta1 * (m[i] as number) + (1 - o.beta1) * gi;
    v[i] = o.beta2 * (v[i] as number) + (1 - o.beta2) * gi * gi;
    const upd = (m[i] as number) / bc1 / (Math.sqrt((v[i] as number) / bc2) + o.eps);
    p[i] = (p[i] as number) * (1 - lr * o.weightDecay) - lr * upd;
  }
}
