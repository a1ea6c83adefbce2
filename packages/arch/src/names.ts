/**
 * Hugging Face tensor names and shapes, shared by the tfjs decoder, the exporter and the packed-ternary runtime:
 * the seven quantized projections, where SubLN puts its gains, and every tensor a config implies.
 */
import type { DecoderConfig } from './config.ts';

/** Default SubLN RMSNorm epsilon (PAPER.md section 3, [code]); a student's own is DecoderConfig.sublnEps. */
export const SUBLN_EPS = 1e-8;

/** The seven projections of a decoder block that BitNet quantizes. */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** The projection's base name, e.g. `model.layers.0.self_attn.q_proj` (append `.weight`, `.bias`). */
export function projectionName(layer: number, proj: Projection): string {
  const block = proj === 'gate_proj' || proj === 'up_proj' || proj === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${proj}`;
}

const PROJECTION_WEIGHT = /^model\.layers\.(\d+)\.(?:self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))\.weight$/;

/** The layer and projection of a projection's weight name (the inverse of projectionName + `.weight`), else null. */
export function parseProjectionWeight(name: string): { layer: number; proj: Projection } | null {
  const m = PROJECTION_WEIGHT.exec(name);
  if (m === null) return null;
  return { layer: Number(m[1]), proj: (m[2] ?? m[3]) as Projection };
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

/** The tensor names a config needs, with their shapes (Hugging Face names; SubLN gains when the config has them). */
export function expectedTensorShapes(c: DecoderConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const C = c.hiddenSize;
  m.set('model.embed_tokens.weight', [c.vocabSize, C]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [C]);
    for (const pr of ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const) m.set(`${projectionName(l, pr)}.weight`, projectionShape(c, pr));
    if (c.qkvBias) for (const pr of ['q_proj', 'k_proj', 'v_proj'] as const) m.set(`${projectionName(l, pr)}.bias`, [projectionShape(c, pr)[0]]);
    if (c.oBias) m.set(`${p}.self_attn.o_proj.bias`, [C]);
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      m.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    m.set(`${p}.post_attention_layernorm.weight`, [C]);
    for (const pr of ['gate_proj', 'up_proj', 'down_proj'] as const) m.set(`${projectionName(l, pr)}.weight`, projectionShape(c, pr));
    for (const pr of PROJECTIONS) {
      const s = sublnName(l, pr, c.subln);
      if (s !== null) m.set(s, [projectionShape(c, pr)[1]]);
    }
  }
  m.set('model.norm.weight', [C]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, C]);
  return m;
}
