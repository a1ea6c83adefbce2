/**
 * The AdamW update as one pass over a parameter (torch.optim.AdamW, decoupled weight decay): the trainer's
 * update at real size, where tf ops would hold several parameter-sized temporaries and a JavaScript loop over
 * Qwen3-0.6B's 596M values took 5-8 s of a 34 s step. Native: threaded, double per element; the twin below is
 * the same arithmetic in TypeScript (the fallback, and the tests' reference).
 */
import { ArgumentError } from '@bitdistill/core';
import { nativeAddon } from './native.ts';

export interface AdamwStep {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  lr: number;
  /** Bias corrections 1 - beta1^t and 1 - beta2^t. */
  bc1: number;
  bc2: number;
  /** Multiplies every gradient first (micro-batch averaging and clipping). */
  gradScale: number;
}

/**
 * gs = g * gradScale; m = b1 m + (1 - b1) gs; v = b2 v + (1 - b2) gs^2 (m and v in place);
 * out = p (1 - lr wd) - lr (m / bc1) / (sqrt(v / bc2) + eps). `out` may be `p`.
 */
export function adamwF32(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, s: AdamwStep): void {
  const n = p.length;
  if (g.length !== n || m.length !== n || v.length !== n || out.length !== n) {
    throw new ArgumentError(`adamwF32: p, g, m, v, out must have the same length (got ${n}, ${g.length}, ${m.length}, ${v.length}, ${out.length})`);
  }
  const addon = nativeAddon();
  if (addon === null) {
    adamwF32Ts(p, g, m, v, out, s);
    return;
  }
  addon.adamwF32(p, g, m, v, out, Float64Array.of(s.beta1, s.beta2, s.eps, 1 - s.lr * s.weightDecay, s.lr, s.bc1, s.bc2, s.gradScale));
}

/** TypeScript twin of adamwF32. */
export function adamwF32Ts(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, s: AdamwStep): void {
  const { beta1, beta2, eps, bc1, bc2, gradScale, lr } = s;
  const decay = 1 - lr * s.weightDecay;
  for (let i = 0; i < p.length; i++) {
    const gi = (g[i] as number) * gradScale;
    const mi = beta1 * (m[i] as number) + (1 - beta1) * gi;
    const vi = beta2 * (v[i] as number) + (1 - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    out[i] = (p[i] as number) * decay - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps);
  }
}

/**
 * The sum of x[i]^2, accumulated in double (the gradient-norm pass: one call per gradient, no squared copy).
 * Native: threaded over fixed 64K-element blocks whose partials are added in order, so the result does not depend
 * on the thread count.
 */
export function sumSquaresF32(x: Float32Array): number {
  const addon = nativeAddon();
  return addon === null ? sumSquaresF32Ts(x) : addon.sumSquaresF32(x);
}

/** TypeScript twin of sumSquaresF32 (double accumulation, one running sum). */
export function sumSquaresF32Ts(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] as number) * (x[i] as number);
  return s;
}
