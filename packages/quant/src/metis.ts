/**
 * Metis (Cao et al. 2025, "Metis: Training Large Language Models with Advanced Low-Bit Quantization", arXiv
 * 2509.00404) on top of the low-bit training GEMMs (lowbit-gemm.ts). Weights are anisotropic: a few dominant
 * singular directions set a tensor's range, so a per-tensor or per-block low-bit scale spends its few levels on
 * them and flushes the long tail. Metis splits each projection weight W [out, in] into
 *
 *   W = U S V^T  (rank k, kept in fp32)  +  W_res = W - U S V^T  (through the low-bit GEMM)
 *
 * found by a randomized SVD (Halko, Martinsson & Tropp 2011: Gaussian embedding, power iterations, QR, a small
 * SVD), recomputed from the master weight every `refreshEvery` steps and held fixed in between. The projection
 *
 *   y  = x (U S V^T)^T  +  q_f(x) q_f(W_res)^T
 *   dx = dy (U S V^T)   +  q_b(dy) q_f(W_res)
 *   dW = q_b(dy)^T q_f(x)                        (U S V^T is a constant between refreshes: dW = dW_res)
 *
 * With k = 0 it is exactly lowBitLinear. Two optional parts:
 * - spectral learning rate: the weight gradient G is split on the same subspace, P = U U^T G V V^T, and
 *   G' = dominantScale P + tailScale (G - P) before clipping and AdamW (dominant directions damped, the
 *   under-represented rest kept or amplified);
 * - dual-range regularizer, a loss term on each W_res (dualRange below).
 * The randomized SVD reads weights on the CPU (dataSync), as the low-bit GEMMs do: a CPU-engine feature.
 */
import * as tf from '@tensorflow/tfjs';
import { PROJECTIONS, projectionName } from '@bitdistill/arch';
import type { GemmFormat } from '@bitdistill/config';
import { ArgumentError, Rng } from '@bitdistill/core';
import { matMulT, type Decoder, type LinearFn } from '@bitdistill/model';
import { LOWBIT_FORMATS, type LowBitFormat } from './lowbit.ts';
import { checkGemmFormats, quantTensor } from './lowbit-gemm.ts';
import { orthonormalColumns, symmetricEigen } from './spectral.ts';

/** Halko et al.'s oversampling: the embedding has k + 5 columns (capped at min(out, in)). */
export const METIS_OVERSAMPLE = 5;

export interface MetisSettings {
  /** k = max(1, round(rankFraction * min(out, in))) dominant directions per projection; 0 = no split. */
  rankFraction: number;
  /** Recompute the split from the master weights every N optimizer steps. */
  refreshEvery: number;
  /** Power iterations of the randomized SVD (sharpen the subspace when the spectrum decays slowly). */
  powerIterations: number;
  spectralLr: { enabled: boolean; dominantScale: number; tailScale: number };
  dualRange: { weight: number; rangeSigmas: number };
}

/** The number of dominant directions of an [m, n] weight: 0 when rankFraction is 0, else at least 1. */
export function metisRank(rankFraction: number, m: number, n: number): number {
  return rankFraction === 0 ? 0 : Math.min(Math.min(m, n), Math.max(1, Math.round(rankFraction * Math.min(m, n))));
}

/** A rank-k approximation U diag(s) V^T of an [m, n] matrix: u [m, k] and v [n, k] row-major, orthonormal columns. */
export interface LowRank {
  m: number;
  n: number;
  k: number;
  u: Float64Array;
  s: Float64Array;
  v: Float64Array;
}

/**
 * The top-k singular triplets of w [m, n] by randomized SVD: Y = W Omega with Omega [n, k + p] standard normal
 * (drawn from `rng`), `powerIterations` rounds of Q <- orth(W orth(W^T Q)), then B = Q^T W [l, n] and the SVD of
 * B through the eigen-decomposition of its l x l Gram matrix B B^T = Ub diag(s^2) Ub^T: U = Q Ub, V = B^T Ub / s.
 * The Gram matrix squares the condition number, which costs accuracy only in the small singular values this
 * keeps none of. The products with W are tfjs matmuls (O(m n l) each); the rest is float64 loops on thin blocks.
 */
export function randomizedSvd(w: tf.Tensor2D, k: number, o: { rng: Rng; powerIterations: number; oversample?: number }): LowRank {
  const [m, n] = w.shape;
  if (!Number.isInteger(k) || k < 1 || k > Math.min(m, n)) throw new ArgumentError(`randomizedSvd: rank ${k} is outside 1..${Math.min(m, n)} for [${m}, ${n}]`);
  const l = Math.min(k + (o.oversample ?? METIS_OVERSAMPLE), m, n);
  /** W b (b [n, l]) or W^T b (b [m, l]), read back as float64. */
  const times = (transposeW: boolean, b: ArrayLike<number>): Float64Array => {
    const prod = tf.tidy(() => matMulT(w, tf.tensor2d(Float32Array.from(b), [transposeW ? m : n, l]), transposeW, false));
    const out = Float64Array.from(prod.dataSync());
    prod.dispose();
    return out;
  };
  const omega = Float64Array.from({ length: n * l }, () => o.rng.normal());
  let q = orthonormalColumns(times(false, omega), m, l);
  for (let i = 0; i < o.powerIterations; i++) q = orthonormalColumns(times(false, orthonormalColumns(times(true, q), n, l)), m, l);
  const bt = times(true, q); // B^T = W^T Q [n, l]
  const gram = new Float64Array(l * l);
  for (let i = 0; i < l; i++)
    for (let j = i; j < l; j++) {
      let acc = 0;
      for (let r = 0; r < n; r++) acc += (bt[r * l + i] as number) * (bt[r * l + j] as number);
      gram[i * l + j] = acc;
      gram[j * l + i] = acc;
    }
  const { values, vectors } = symmetricEigen(gram, l);
  const s = Float64Array.from({ length: k }, (_, j) => Math.sqrt(Math.max(values[j] as number, 0)));
  const u = new Float64Array(m * k);
  const v = new Float64Array(n * k);
  for (let j = 0; j < k; j++) {
    for (let r = 0; r < m; r++) {
      let acc = 0;
      for (let t = 0; t < l; t++) acc += (q[r * l + t] as number) * (vectors[t * l + j] as number);
      u[r * k + j] = acc;
    }
    const sj = s[j] as number;
    for (let r = 0; r < n; r++) {
      let acc = 0;
      for (let t = 0; t < l; t++) acc += (bt[r * l + t] as number) * (vectors[t * l + j] as number);
      v[r * k + j] = sj > 0 ? acc / sj : 0;
    }
  }
  return { m, n, k, u, s, v };
}

/** A projection's current split as the GEMMs use it: U S [out, k], U [out, k], V [in, k] (fp32 tensors). */
export interface SplitTensors {
  us: tf.Tensor2D;
  u: tf.Tensor2D;
  v: tf.Tensor2D;
}

/** Where a Metis projection finds its split; null = no split (the plain low-bit GEMM). */
export interface SplitHolder {
  split: SplitTensors | null;
}

/** W_res = W - U S V^T (a new tensor), or W itself without a split. */
function residual(w: tf.Tensor2D, split: SplitTensors | null): tf.Tensor2D {
  return split === null ? w : tf.tidy(() => tf.sub(w, matMulT(split.us, split.v, false, true)));
}

/**
 * The Metis projection y = x (U S V^T)^T + q_f(x) q_f(W - U S V^T)^T with the split read from `holder` at each
 * call (see the file comment for the gradients).
 */
export function metisLinear(formats: { forward: GemmFormat; backward: GemmFormat }, holder: SplitHolder): LinearFn {
  checkGemmFormats(formats);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const split = holder.split; // the one this forward used is the one its backward uses
    const wres = residual(w, split);
    const xq = quantTensor(x, formats.forward);
    const wq = quantTensor(wres, formats.forward);
    if (wres !== w && wq !== wres) wres.dispose();
    const low = matMulT(xq, wq, false, true);
    const value = split === null ? low : tf.tidy(() => tf.add(low, matMulT(tf.matMul(x, split.v), split.us, false, true)));
    if (value !== low) low.dispose();
    save([xq, wq]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dy2 = dy as tf.Tensor2D;
        const dyq = quantTensor(dy2, formats.backward);
        const dxLow = tf.matMul(dyq, sw);
        const dx = split === null ? dxLow : tf.tidy(() => tf.add(dxLow, matMulT(tf.matMul(dy2, split.us), split.v, false, true)));
        const dw = matMulT(dyq, sx, true, false);
        if (dx !== dxLow) dxLow.dispose();
        if (dyq !== dy2) dyq.dispose();
        return [dx, dw];
      },
    };
  }) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;
  return Object.assign((x: tf.Tensor2D, w: tf.Tensor2D) => op(x, w), {});
}

/** The E2M1 / E4M3 / E5M2 grid whose range the dual-range regularizer guards for a forward format. */
export function gridOf(format: GemmFormat): LowBitFormat {
  switch (format) {
    case 'fp8-e4m3':
      return LOWBIT_FORMATS.e4m3;
    case 'fp8-e5m2':
      return LOWBIT_FORMATS.e5m2;
    case 'fp4-e2m1':
    case 'nvfp4':
      return LOWBIT_FORMATS.e2m1;
    default:
      throw new ArgumentError(`Metis needs a low-bit forward format, got '${format}'`, {
        hint: 'set lowbitGemm.forward to fp8-e4m3, fp8-e5m2, fp4-e2m1 or nvfp4',
      });
  }
}

/** The smallest positive (subnormal) value of a format: 2^(1 - bias - mantissaBits) (E2M1 0.5, E4M3 2^-9). */
export function smallestSubnormal(fmt: LowBitFormat): number {
  return 2 ** (1 - fmt.bias - fmt.mantissaBits);
}

/** The identity whose gradient is zero (tfjs has no stop_gradient). */
const stopGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
}) as unknown as <T extends tf.Tensor>(x: T) => T;

/**
 * The dual-range regularizer of one tensor r (a residual W_res; docs/lowbit-training.md). With the reference
 * scale s = rangeSigmas * rms(r) / max (the scale at which the format's largest value sits at rangeSigmas RMS;
 * held constant: no gradient flows through s), u = |r| / s and m the format's smallest subnormal:
 *
 *   R(r) = mean( relu(u / max - 1)^2 )             values beyond the range the bulk deserves, |r| > rangeSigmas rms
 *                                                  (they would set the per-tensor scale and crush everything else)
 *        + mean( relu(4 u (m - u) / m^2) )         the values inside the underflow band (0, m): a bump, 1 at m/2,
 *                                                  0 at 0 and at m, so they move to 0 or to m, both representable
 */
export function dualRange(r: tf.Tensor, fmt: LowBitFormat, rangeSigmas: number): tf.Scalar {
  return tf.tidy(() => {
    const rms = tf.sqrt(tf.mean(tf.square(r)));
    const s = stopGradient(tf.maximum(tf.mul(rms, rangeSigmas / fmt.max), 1e-30));
    const u = tf.div(tf.abs(r), s);
    const m = smallestSubnormal(fmt);
    const high = tf.mean(tf.square(tf.relu(tf.sub(tf.div(u, fmt.max), 1))));
    const low = tf.mean(tf.relu(tf.mul(tf.mul(u, tf.sub(m, u)), 4 / (m * m))));
    return tf.add(high, low) as tf.Scalar;
  });
}

interface MetisProjection {
  /** HF weight name (model.layers.L.self_attn.q_proj.weight). */
  weight: string;
  k: number;
  holder: SplitHolder;
  /** Sum of s^2 over ||W||_F^2 at the last refresh: how much of the weight the fp32 part carries. */
  energy: number;
}

/** A seed for (run seed, refresh step, projection index): the same split at a step whether or not the run resumed. */
function splitSeed(seed: number, step: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(step + 1, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

/**
 * Metis on every projection of a full-precision decoder: owns the splits, refreshes them, rescales gradients,
 * computes the regularizer. Made by applyMetis; the stage calls refresh() before each step and dispose() at the end.
 */
export class MetisTraining {
  readonly settings: MetisSettings;
  readonly grid: LowBitFormat;
  private readonly model: Decoder;
  private readonly seed: number;
  private readonly projections: MetisProjection[];
  private refreshedAt: number | null = null;

  constructor(model: Decoder, formats: { forward: GemmFormat; backward: GemmFormat }, settings: MetisSettings, seed: number) {
    this.model = model;
    this.settings = settings;
    this.seed = seed;
    this.grid = gridOf(formats.forward);
    this.projections = [];
    for (let l = 0; l < model.config.numLayers; l++) {
      for (const pr of PROJECTIONS) {
        const base = projectionName(l, pr);
        if (model.linears.has(base)) {
          throw new ArgumentError(`${base} already has its own op (a ternary student?); Metis applies to full-precision stages`, {
            hint: 'list only full-precision stages (pretrain, teacher) in lowbitGemm.stages',
          });
        }
        const weight = `${base}.weight`;
        const [m, n] = model.param(weight).shape as [number, number];
        const p: MetisProjection = { weight, k: metisRank(settings.rankFraction, m, n), holder: { split: null }, energy: 0 };
        model.linears.set(base, metisLinear(formats, p.holder));
        this.projections.push(p);
      }
    }
  }

  /** Recomputes every split from the current weights when `step` (optimizer steps done) is a multiple of refreshEvery, or none exists yet. */
  refresh(step: number): boolean {
    if (this.refreshedAt !== null && (step === this.refreshedAt || step % this.settings.refreshEvery !== 0)) return false;
    this.projections.forEach((p, i) => {
      if (p.k === 0) return;
      const w = this.model.param(p.weight) as tf.Tensor as tf.Tensor2D;
      const r = randomizedSvd(w, p.k, { rng: new Rng(splitSeed(this.seed, step, i)), powerIterations: this.settings.powerIterations });
      const old = p.holder.split;
      const us = new Float32Array(r.m * r.k);
      for (let i2 = 0; i2 < r.m; i2++) for (let j = 0; j < r.k; j++) us[i2 * r.k + j] = (r.u[i2 * r.k + j] as number) * (r.s[j] as number);
      p.holder.split = {
        us: tf.tensor2d(us, [r.m, r.k]),
        u: tf.tensor2d(Float32Array.from(r.u), [r.m, r.k]),
        v: tf.tensor2d(Float32Array.from(r.v), [r.n, r.k]),
      };
      if (old !== null) tf.dispose([old.us, old.u, old.v]);
      const total = tf.tidy(() => tf.sum(tf.square(w)).dataSync()[0] as number);
      p.energy = total > 0 ? r.s.reduce((a, x) => a + x * x, 0) / total : 0;
    });
    this.refreshedAt = step;
    return true;
  }

  /**
   * The spectral learning-rate rule on the summed gradients (before clipping and AdamW): for each projection with
   * a split, G' = dominantScale P + tailScale (G - P) with P = U U^T G V V^T. Replaces (and disposes) the gradients
   * it changes; the others pass through.
   */
  transformGrads(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
    const { enabled, dominantScale, tailScale } = this.settings.spectralLr;
    if (!enabled) return grads;
    for (const p of this.projections) {
      const g = grads[p.weight];
      const split = p.holder.split;
      if (g === undefined || split === null) continue;
      grads[p.weight] = tf.tidy(() => {
        const core = tf.matMul(matMulT(split.u, g as tf.Tensor2D, true, false), split.v); // U^T G V [k, k]
        const proj = matMulT(tf.matMul(split.u, core), split.v, false, true); // P [out, in]
        return tf.add(tf.mul(g, tailScale), tf.mul(proj, dominantScale - tailScale));
      });
      g.dispose();
    }
    return grads;
  }

  /** The dual-range term: the mean over projections of dualRange(W_res) (taped: its gradient reaches the weights). */
  dualRangeLoss(): tf.Scalar {
    return tf.tidy(() => {
      const terms = this.projections.map((p) => {
        const w = this.model.param(p.weight) as tf.Tensor as tf.Tensor2D;
        return dualRange(residual(w, p.holder.split), this.grid, this.settings.dualRange.rangeSigmas);
      });
      return tf.div(tf.addN(terms), terms.length) as tf.Scalar;
    });
  }

  /** The current split of a projection weight (by HF name), null before the first refresh or with k = 0. */
  splitOf(weight: string): SplitTensors | null {
    return this.projections.find((p) => p.weight === weight)?.holder.split ?? null;
  }

  /** Numbers for the train records: mean rank, mean dominant energy, the step of the last refresh, the regularizer's weight. */
  metrics(): Record<string, number> {
    const n = this.projections.length;
    return {
      'metis.rank': this.projections.reduce((a, p) => a + p.k, 0) / n,
      'metis.dominantEnergy': this.projections.reduce((a, p) => a + p.energy, 0) / n,
      'metis.refreshedAt': this.refreshedAt ?? -1,
      'metis.dualRangeWeight': this.settings.dualRange.weight,
    };
  }

  dispose(): void {
    for (const p of this.projections) {
      const s = p.holder.split;
      if (s !== null) tf.dispose([s.us, s.u, s.v]);
      p.holder.split = null;
    }
  }
}

/** Puts Metis projections on every projection of a full-precision decoder (the splits come at the first refresh). */
export function applyMetis(model: Decoder, formats: { forward: GemmFormat; backward: GemmFormat }, settings: MetisSettings, seed: number): MetisTraining {
  return new MetisTraining(model, formats, settings, seed);
}
