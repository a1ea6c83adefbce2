/**
 * Parameter names shared by the tfjs decoder, the exporter and the packed-ternary runtime (no tfjs here):
 * the seven quantized projections and where SubLN puts its gains.
 */
import type { DecoderConfig } from './config.ts';

/** Default SubLN RMSNorm epsilon (PAPER.md section 3, [code]); a student's own is DecoderConfig.sublnEps. */
export const SUBLN_EPS = 1e-8;

/** The seven projections of a decoder block that BitNet quantizes. */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Projection = (typeof PROJECTIONS)[number];

export function projectionName(layer: number, proj: Projection): string {
  const block = proj === 'gate_proj' || proj === 'up_proj' || proj === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${proj}`;
}

/**
 * Name of the SubLN gain in front of a projection, or null when `subln` puts none there. PAPER.md section 3:
 * 'standard' = before o_proj and down_proj (transformers' BitNet names attn_sub_norm / ffn_sub_norm);
 * 'allnorm' = before every quantized projection (the official code's released configs).
 */
export function sublnName(layer: number, proj: Projection, subln: DecoderConfig['subln']): string | null {
  if (subln === 'none') return null;
  if (proj === 'o_proj') return `model.layers.${layer}.self_attn.attn_sub_norm.weight`;
  if (proj === 'down_proj') return `model.layers.${layer}.mlp.ffn_sub_norm.weight`;
  if (subln === 'standard') return null;
  const block = proj === 'gate_proj' || proj === 'up_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${proj.replace('_proj', '')}_sub_norm.weight`;
}


/** [rows, cols] = [out, in] of a projection's weight, as the config's sizes imply it. */
export function projectionShape(c: DecoderConfig, pr: Projection): [number, number] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  if (pr === 'q_proj') return [q, c.hiddenSize];
  if (pr === 'k_proj' || pr === 'v_proj') return [kv, c.hiddenSize];
  if (pr === 'o_proj') return [c.hiddenSize, q];
  if (pr === 'down_proj') return [c.hiddenSize, c.intermediateSize];
  return [c.intermediateSize, c.hiddenSize];
}
