/**
 * Turning a full-precision decoder into a BitNet student, from outside the model file (like transformers'
 * `replace_with_bitnet_linear`): the seven block projections get `bitLinear` (int8 activations x ternary
 * weights, fake-quantized with STE) and the SubLN gains are inserted (PAPER.md section 3). Embeddings, lm_head
 * and the model's own norms stay full precision.
 */
import { ArgumentError } from '@bitdistill/core';
import {
  PROJECTIONS,
  checkWeightQuantMode,
  projectionName,
  absmeanScale,
  scaleGroups,
  sublnName,
  type SublnMode,
  type WeightQuantMode,
} from '@bitdistill/arch';
import { denseLinear, fusedKernel, type Decoder, type LinearFn } from '@bitdistill/model';
import { BITLINEAR_GRAD_KERNEL, bitLinearBackward, bitMatmulInt, int8Quant, normBitMatmulInt, ternaryQuant } from './quantizers.ts';
import { getBackend, type Tensor1D, type Tensor2D } from '@tensorflow/tfjs';

export interface BitLinearOptions {
  weightQuant: WeightQuantMode;
  /** Quantize the activations to int8 per token (default true). */
  quantizeActivations?: boolean;
}

/** The student's linear op: y = int8Quant(x) @ ternaryQuant(W)^T, x [N, in], W [out, in]. */
export function bitLinear(x: Tensor2D, weight: Tensor2D, options: BitLinearOptions = { weightQuant: 'absmean' }): Tensor2D {
  if (options.quantizeActivations !== false && options.weightQuant !== 'block256') {
    // Integer form (same value, computed like the packed-ternary kernels): see bitMatmulInt.
    return bitMatmulInt(x, weight, options.weightQuant);
  }
  const xq = options.quantizeActivations === false ? x : (int8Quant(x) as Tensor2D);
  return denseLinear(xq, ternaryQuant(weight, options.weightQuant) as Tensor2D);
}

export function makeBitLinear(options: BitLinearOptions): LinearFn {
  checkWeightQuantMode(options.weightQuant);
  const fn = (x: Tensor2D, w: Tensor2D): Tensor2D => bitLinear(x, w, options);
  // [dx, dW] for an upstream dy without the forward product, where the fused straight-through backward runs:
  // activation recomputation then replays the projection from its kept output (model/decoder.ts).
  const integer = options.quantizeActivations !== false && options.weightQuant !== 'block256';
  const mode = options.weightQuant === 'perRow' ? 'perRow' : 'absmean';
  const backward = (x: Tensor2D, w: Tensor2D, dy: Tensor2D): [Tensor2D, Tensor2D] => {
    const g = integer ? bitLinearBackward(x, w, dy, mode) : null;
    if (g === null) throw new Error('bitLinear backward: the fused kernel is not registered on this backend (replayable() was false)');
    return g;
  };
  const normed = (x: Tensor2D, gain: Tensor1D, eps: number, w: Tensor2D): Tensor2D | null => (integer ? normBitMatmulInt(x, gain, eps, w, mode) : null);
  return Object.assign(fn, { backward, replayable: () => integer && fusedKernel(BITLINEAR_GRAD_KERNEL), normed });
}

export interface PrepareStudentOptions {
  subln: SublnMode;
  /** RMSNorm epsilon of the SubLN gains (default: the model's, SUBLN_EPS = 1e-8 unless its config says otherwise). */
  sublnEps?: number;
  weightQuant: WeightQuantMode;
  /** Projections to keep full precision: substrings or RegExps matched against names like `model.layers.3.mlp.down_proj`. */
  exclude?: readonly (string | RegExp)[];
  /** false keeps every projection dense (same surgery, no quantization): the student then equals the teacher when subln is 'none'. */
  quantize?: boolean;
  quantizeActivations?: boolean;
}

export interface StudentReport {
  quantized: string[];
  excluded: string[];
  sublnAdded: string[];
}

/** What a checkpoint's config.json records about the student (the `bitdistill` block). */
export interface StudentRecord {
  subln: SublnMode;
  sublnEps: number;
  weightQuant: WeightQuantMode | 'none';
  activationQuant: 'int8-per-token' | 'none';
  exclude: string[];
}

export function prepareStudent(model: Decoder, options: PrepareStudentOptions): StudentReport {
  checkWeightQuantMode(options.weightQuant);
  const exclude = options.exclude ?? [];
  const matches = (name: string) => exclude.some((p) => (typeof p === 'string' ? name.includes(p) : p.test(name)));
  const quantize = options.quantize ?? true;
  const linear = quantize ? makeBitLinear({ weightQuant: options.weightQuant, quantizeActivations: options.quantizeActivations ?? true }) : denseLinear;
  const report: StudentReport = { quantized: [], excluded: [], sublnAdded: [] };
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const proj of PROJECTIONS) {
      const name = projectionName(l, proj);
      if (matches(name)) {
        report.excluded.push(name);
        model.linears.delete(name);
        continue;
      }
      model.linears.set(name, linear);
      report.quantized.push(name);
    }
  }
  if (report.quantized.length === 0) {
    throw new ArgumentError(
      `prepareStudent: no projection left to quantize (exclude=${JSON.stringify(exclude.map(String))} matched all ${report.excluded.length})`,
      {
        hint: 'narrow the exclude patterns',
      },
    );
  }
  report.sublnAdded = model.setSubln(options.subln, options.sublnEps);
  const record: StudentRecord = {
    subln: options.subln,
    sublnEps: model.config.sublnEps,
    weightQuant: quantize ? options.weightQuant : 'none',
    activationQuant: quantize && options.quantizeActivations !== false ? 'int8-per-token' : 'none',
    exclude: report.excluded,
  };
  const prev = model.config.raw['bitdistill'];
  model.config.raw['bitdistill'] = { ...(prev !== null && typeof prev === 'object' ? prev : {}), ...record };
  return report;
}

/** The student record of a loaded checkpoint's config.json, or null for a plain model. */
export function studentRecord(model: Decoder): StudentRecord | null {
  const b = model.config.raw['bitdistill'];
  if (b === null || typeof b !== 'object') return null;
  const r = b as Partial<StudentRecord>;
  if (r.weightQuant === undefined) return null;
  return {
    subln: model.config.subln,
    sublnEps: model.config.sublnEps,
    weightQuant: r.weightQuant,
    activationQuant: r.activationQuant ?? 'int8-per-token',
    exclude: Array.isArray(r.exclude) ? r.exclude : [],
  };
}

/** Re-apply the student surgery recorded in a checkpoint (after loadModel). Returns false for a plain model. */
export function restoreStudent(model: Decoder): boolean {
  const r = studentRecord(model);
  if (r === null) return false;
  const exclude = r.exclude.map((n) => new RegExp(`^${n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
  prepareStudent(model, {
    subln: r.subln,
    sublnEps: r.sublnEps,
    weightQuant: r.weightQuant === 'none' ? 'absmean' : r.weightQuant,
    quantize: r.weightQuant !== 'none',
    quantizeActivations: r.activationQuant !== 'none',
    exclude,
  });
  return true;
}

/** Per-tensor description for `bitdistill info --student`: which tensors are quantized, which are SubLN gains. */
export function describeStudent(model: Decoder): { name: string; shape: number[]; role: 'quantized' | 'subln' | 'full-precision' }[] {
  const sub = new Set<string>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const proj of PROJECTIONS) {
      const s = sublnName(l, proj, model.config.subln);
      if (s !== null) sub.add(s);
    }
  }
  return [...model.params].map(([name, v]) => {
    const base = name.replace(/\.weight$/, '');
    const role = sub.has(name)
      ? 'subln'
      : name.endsWith('.weight') && model.linears.get(base) !== undefined && model.linears.get(base) !== denseLinear
        ? 'quantized'
        : 'full-precision';
    return { name, shape: [...v.shape], role };
  });
}

/** Latent-weight statistics of a student's quantized projections (PAPER.md figure 2 and its analysis). */
export interface LatentWeightStats {
  /** sum (W - Q(W))^2 / sum W^2 over all quantized projections. */
  relErr: number;
  /** Fraction of weights within 0.05 d of the rounding boundary |W| = d/2 (they flip with tiny updates). */
  nearBoundary: number;
  /** Fraction of weights quantized to 0. */
  zeroFrac: number;
  /** relErr per projection type (q_proj, ..., down_proj), over all layers. */
  relErrByType: Record<string, number>;
}

/**
 * Measures how far the latent (full-precision) weights sit from their ternary values, with the reference
 * quantizer's scale (absmeanScale) and codes (ternaryCode's clamp(round_half_even(f(w / d)), -1, 1), which for a
 * ternary code is r > 0.5 -> 1, r < -0.5 -> -1, else 0 with r = f(w / d): the same values) in one pass per tensor,
 * no arrays formed - it runs at every log step, and through ternaryQuantRef it cost ~33 ns a weight (141 ms for the
 * reference config, ~15 s a call at 0.6B). Null for a model without quantized projections. The weights are read
 * asynchronously: on a GPU backend under Node there is no synchronous read.
 */
/**
 * A faster pass for latentWeightStats over one tensor (the trainer passes kernels-cpu's ternaryStatsF32): w, its
 * absmean scales (one per group of groupLen weights) -> [sum (w - c d)^2, sum w^2, near-boundary count, zero-code
 * count], or null to fall back to the loop here.
 */
export type TernaryStatsFn = (w: Float32Array, d: Float32Array, groupLen: number) => [number, number, number, number] | null;

export async function latentWeightStats(model: Decoder, fast: TernaryStatsFn | null = null): Promise<LatentWeightStats | null> {
  const rec = studentRecord(model);
  if (rec === null || rec.weightQuant === 'none') return null;
  let err = 0;
  let norm = 0;
  let near = 0;
  let zeros = 0;
  let count = 0;
  const byType = new Map<string, { err: number; norm: number }>();
  const syncRead = getBackend() !== 'webgpu';
  for (const base of model.linears.keys()) {
    const p = model.params.get(`${base}.weight`);
    if (p === undefined) continue;
    // A synchronous read where the backend has one (each await of data() cost ~0.3 ms on the CPU engine: most of
    // a tiny model's call).
    const w = (syncRead ? p.dataSync() : await p.data()) as Float32Array;
    const cols = p.shape[p.shape.length - 1] as number;
    const type = base.slice(base.lastIndexOf('.') + 1);
    const t = byType.get(type) ?? { err: 0, norm: 0 };
    const groups = scaleGroups(w.length, cols, rec.weightQuant);
    const fastOut =
      fast === null
        ? null
        : fast(
            w,
            Float32Array.from(groups, ([s, e]) => absmeanScale(w, s, e)),
            (groups[0]?.[1] ?? 1) - (groups[0]?.[0] ?? 0),
          );
    if (fastOut !== null) {
      t.err += fastOut[0];
      t.norm += fastOut[1];
      near += fastOut[2];
      zeros += fastOut[3];
      byType.set(type, t);
      count += w.length;
      continue;
    }
    let te = 0;
    let tn = 0;
    for (const [s, e] of groups) {
      const d = absmeanScale(w, s, e);
      for (let i = s; i < e; i++) {
        const wi = w[i] as number;
        const r = Math.fround(wi / d);
        const code = r > 0.5 ? 1 : r < -0.5 ? -1 : 0;
        const diff = wi - code * d; // code * d is exact: 0 or +-d
        te += diff * diff;
        tn += wi * wi;
        if (Math.abs(Math.abs(wi) / d - 0.5) < 0.05) near++;
        if (code === 0) zeros++;
      }
    }
    t.err += te;
    t.norm += tn;
    byType.set(type, t);
    count += w.length;
  }
  if (count === 0) return null;
  const relErrByType: Record<string, number> = {};
  for (const [k, v] of byType) {
    relErrByType[k] = v.norm > 0 ? v.err / v.norm : 0;
    err += v.err;
    norm += v.norm;
  }
  return { relErr: norm > 0 ? err / norm : 0, nearBoundary: near / count, zeroFrac: zeros / count, relErrByType };
}
