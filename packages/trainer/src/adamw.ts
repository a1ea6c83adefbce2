/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW: tfjs ships Adam only.
 *   p <- p - lr * wd * p
 *   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
 *   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * The moments are plain tensors keyed by parameter name, so checkpoints save and restore them exactly.
 */
import * as tf from '@tensorflow/tfjs';

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

  /** Apply one update with learning rate `lr` to every parameter that has a gradient in `grads`. */
  apply(params: Map<string, tf.Variable>, grads: Record<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    tf.tidy(() => {
      for (const [name, p] of params) {
        const g = grads[name];
        if (g === undefined || !p.trainable) continue;
        let m = this.m.get(name);
        let v = this.v.get(name);
        if (m === undefined || v === undefined) {
          m = tf.variable(tf.zerosLike(p), false);
          v = tf.variable(tf.zerosLike(p), false);
          this.m.set(name, m);
          this.v.set(name, v);
        }
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const update = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps));
        const decayed = weightDecay === 0 ? p : tf.mul(p, 1 - lr * weightDecay);
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      }
    });
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

/** Scalar reference twin of one AdamW update on plain arrays (for tests). */
export function adamwRef(
  p: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  step: number,
  lr: number,
  o: AdamWOptions,
): void {
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
