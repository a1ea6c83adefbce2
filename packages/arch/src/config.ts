/**
 * The decoder's configuration, read from Hugging Face config.json keys (Llama / Qwen2 / Qwen3 family).
 * The raw JSON is kept so that saving writes back every key we did not interpret.
 */
import { FormatError, UnsupportedError } from '@bitdistill/core';
import { SUBLN_EPS } from './names.ts';

export const SUBLN_MODES = ['none', 'standard', 'allnorm'] as const;
export type SublnMode = (typeof SUBLN_MODES)[number];

export const SUPPORTED_MODEL_TYPES = ['llama', 'qwen2', 'qwen3'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface DecoderConfig {
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ropeTheta: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** Biases on q, k, v (Qwen2 always; Llama when attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama attention_bias only). */
  oBias: boolean;
  /** Qwen3's per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** BitDistill student state (config.json `bitdistill` block); 'none' for a plain model. */
  subln: SublnMode;
  /**
   * RMSNorm epsilon of the SubLN gains (`bitdistill.sublnEps`, default SUBLN_EPS = 1e-8, the official code's).
   * llama.cpp and transformers apply rms_norm_eps there instead (docs/interop.md).
   */
  sublnEps: number;
  /** Every key of the original config.json, written back on save. */
  raw: Record<string, unknown>;
}

const CORRUPT_HINT = 'the config.json is corrupt, or not the config of a decoder this project runs';

function num(raw: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(file, `missing required key '${key}'`, { hint: 'config.json must hold the Hugging Face model keys' });
  }
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new FormatError(file, `key '${key}' must be a finite number, got ${typeof v === 'number' ? v : JSON.stringify(v)}`, { hint: CORRUPT_HINT });
  return v;
}

/**
 * Upper bounds on the sizes a config.json may state: far above every released decoder (vocabularies of 256k,
 * hidden 16k, 126 layers, 10M-token contexts), low enough that a corrupt value fails here instead of sizing
 * loops and buffers downstream (an exporter padding a vocabulary of 2^40 tokens never finishes).
 */
const MAX_SIZE: Record<string, number> = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  intermediate_size: 1 << 18,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1 << 12,
  max_position_embeddings: 1 << 26,
};

function posInt(raw: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = num(raw, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new FormatError(file, `key '${key}' must be a positive integer, got ${v}`, { hint: CORRUPT_HINT });
  const max = MAX_SIZE[key];
  if (max !== undefined && v > max) throw new FormatError(file, `key '${key}' is ${v}, beyond the ${max} this project accepts`, { hint: CORRUPT_HINT });
  return v;
}

/** A number that must be finite and > 0 (an epsilon). */
function positive(raw: Record<string, unknown>, key: string, file: string, fallback: number): number {
  const v = num(raw, key, file, fallback);
  if (!(v > 0)) throw new FormatError(file, `key '${key}' must be a number > 0, got ${v}`, { hint: CORRUPT_HINT });
  return v;
}

/**
 * rope_theta: position p turns pair i by p * theta^(-2i/d), so a base below 1 gives frequencies above 1 that grow
 * without bound as theta shrinks (a denormal base overflows float32 to NaN). Released models use 10000 (Llama 2),
 * 500000 (Llama 3), 1e6 (Qwen).
 */
function ropeBase(raw: Record<string, unknown>, file: string): number {
  const v = num(raw, 'rope_theta', file, 10000);
  if (!(v >= 1)) throw new FormatError(file, `key 'rope_theta' must be a number >= 1 (a RoPE base, e.g. 10000), got ${v}`, { hint: CORRUPT_HINT });
  return v;
}

function firstId(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

export function parseDecoderConfig(raw: Record<string, unknown>, file: string): DecoderConfig {
  const modelType = raw['model_type'];
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new UnsupportedError(`${file}: unsupported architecture model_type=${JSON.stringify(modelType)}`, {
      hint: `supported model_type values: ${SUPPORTED_MODEL_TYPES.join(', ')} (Llama / Qwen2 / Qwen3 decoders)`,
    });
  }
  const act = raw['hidden_act'] ?? 'silu';
  if (act !== 'silu')
    throw new UnsupportedError(`${file}: hidden_act '${String(act)}' is not supported`, { hint: "only SwiGLU ('silu') decoders are supported" });
  const mt = modelType as ModelType;
  const hiddenSize = posInt(raw, 'hidden_size', file);
  const numHeads = posInt(raw, 'num_attention_heads', file);
  const numKvHeads = posInt(raw, 'num_key_value_heads', file, numHeads);
  const headDim = posInt(raw, 'head_dim', file, hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw new FormatError(file, `head_dim ${headDim} is odd; RoPE rotates pairs of dimensions`, { hint: CORRUPT_HINT });
  if (numHeads % numKvHeads !== 0) {
    throw new FormatError(file, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const attentionBias = raw['attention_bias'] === true;
  const rmsNormEps = positive(raw, 'rms_norm_eps', file, 1e-6);
  const bd = raw['bitdistill'];
  let subln: SublnMode = 'none';
  let sublnEps = SUBLN_EPS;
  if (bd !== undefined && bd !== null && typeof bd === 'object') {
    const s = (bd as Record<string, unknown>)['subln'];
    if (s !== undefined) {
      if (typeof s !== 'string' || !(SUBLN_MODES as readonly string[]).includes(s)) {
        throw new FormatError(file, `bitdistill.subln must be one of ${SUBLN_MODES.join(', ')}, got ${JSON.stringify(s)}`);
      }
      subln = s as SublnMode;
    }
    sublnEps = positive(bd as Record<string, unknown>, 'sublnEps', `${file} (bitdistill block)`, SUBLN_EPS);
  }
  const ropeScaling = raw['rope_scaling'];
  if (ropeScaling !== undefined && ropeScaling !== null) {
    throw new UnsupportedError(`${file}: rope_scaling is not supported yet`, { hint: 'remove rope_scaling or use a model without it' });
  }
  return {
    modelType: mt,
    vocabSize: posInt(raw, 'vocab_size', file),
    hiddenSize,
    intermediateSize: posInt(raw, 'intermediate_size', file),
    numLayers: posInt(raw, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: ropeBase(raw, file),
    rmsNormEps,
    tieWordEmbeddings: raw['tie_word_embeddings'] === true,
    qkvBias: mt === 'qwen2' || attentionBias,
    oBias: mt !== 'qwen2' && attentionBias,
    qkNorm: mt === 'qwen3',
    maxPositionEmbeddings: posInt(raw, 'max_position_embeddings', file, 2048),
    bosTokenId: firstId(raw['bos_token_id']),
    eosTokenId: firstId(raw['eos_token_id']),
    subln,
    sublnEps,
    // The config's own copy: prepareStudent records its choices in raw['bitdistill'], and a second model built
    // from the same JSON object (a teacher beside its student) must not inherit them.
    raw: { ...raw },
  };
}

/**
 * The Hugging Face config.json keys a DecoderConfig stands for (the inverse of parseDecoderConfig on the keys it
 * interprets): parseDecoderConfig(hfConfigKeys(c)) gives c back, `raw` aside. attention_bias is Llama's flag
 * (Qwen2's q/k/v biases come with its model_type).
 */
export function hfConfigKeys(c: DecoderConfig): Record<string, unknown> {
  return {
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.modelType === 'qwen2' ? false : c.oBias,
    max_position_embeddings: c.maxPositionEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    ...(c.subln !== 'none' ? { bitdistill: { subln: c.subln, sublnEps: c.sublnEps } } : {}),
  };
}
