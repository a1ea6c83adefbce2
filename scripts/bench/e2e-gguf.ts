/**
 * The e2e bench's model as llama.cpp runs it: the ternary export of a Qwen3-shaped student (packed ternary
 * projections + one scale each, subln none, tied embeddings) written as a GGUF for llama.cpp's `qwen3`
 * architecture - the architecture llama.cpp knows for that shape (q_norm / k_norm; `bitdistill export --format
 * gguf` writes only `bitnet`, which has neither). Projections are TQ2_0 with the tensor's scale folded into every
 * block's d (the same codes and scale our runtime multiplies with); the token embedding, which is also the LM head,
 * is Q8_0 (llama.cpp's 8-bit type, blocks of 32) to match our runtime's `--embeddings int8` (one int8 scale per
 * row); norms F32. Q/K rows stay in Hugging Face order: llama.cpp's converter permutes them only for `llama`.
 *
 * Both sides then compute the same network; the activations are quantized differently (ours: int8 per token
 * before every projection; llama.cpp: q8_K per block of 256 for TQ2_0, q8_0 per 32 for the head).
 */
import { join } from 'node:path';
import { QK_K, gv, loadSafetensorsDir, packTernaryGgml, quantizeQ8_0, tensorToFloat32, unpackTernaryHF, writeGguf, LLAMA_FILE_TYPES, GGML_QUANT_VERSION, type GgufTensor, type GgufValue } from '@bitdistill/format';
import { ggufDecoderMetadata, ggufTokenizerMetadata } from '@bitdistill/export';
import { parseDecoderConfig } from '@bitdistill/arch';

const LAYER_NAMES: [hf: string, gguf: string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['self_attn.q_norm.weight', 'attn_q_norm.weight'],
  ['self_attn.k_norm.weight', 'attn_k_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
];

/** The fields of config.json the writer reads (parseDecoderConfig checks them all). */
export interface Qwen3Config {
  hidden_size: number;
  num_hidden_layers: number;
  vocab_size: number;
}

/** Write `out` from the ternary export folder `dir` (config `cfg`); returns the file's size in bytes. */
export function writeQwen3Gguf(dir: string, cfg: Qwen3Config & Record<string, unknown>, out: string): number {
  const { tensors } = loadSafetensorsDir(dir);
  const get = (name: string) => {
    const t = tensors.get(name);
    if (t === undefined) throw new Error(`${dir}: no tensor ${name}`);
    return t;
  };
  const gguf: GgufTensor[] = [];
  const f32 = (name: string, gname: string) => {
    const data = tensorToFloat32(get(name), name);
    gguf.push({ name: gname, type: 'F32', dims: [data.length], data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  };
  const emb = tensorToFloat32(get('model.embed_tokens.weight'), 'model.embed_tokens.weight');
  gguf.push({ name: 'token_embd.weight', type: 'Q8_0', dims: [cfg.hidden_size, cfg.vocab_size], data: quantizeQ8_0(emb) });
  f32('model.norm.weight', 'output_norm.weight');
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    for (const [hf, g] of LAYER_NAMES) {
      const name = `model.layers.${l}.${hf}`;
      const t = get(name);
      if (t.dtype !== 'U8') {
        f32(name, `blk.${l}.${g}`);
        continue;
      }
      const rows = (t.shape[0] as number) * 4;
      const cols = t.shape[1] as number;
      if (cols % QK_K !== 0) throw new Error(`${name}: input dimension ${cols} is not a multiple of ${QK_K}`);
      // The exporter pads rows to a multiple of 4; every projection of this shape has rows % 4 == 0.
      const codes = unpackTernaryHF(t.data as Uint8Array, rows, cols, name);
      const scale = tensorToFloat32(get(name.replace(/\.weight$/, '.weight_scale')), `${name} scale`);
      gguf.push({ name: `blk.${l}.${g}`, type: 'TQ2_0', dims: [cols, rows], data: packTernaryGgml('TQ2_0', codes, rows, cols, scale) });
    }
  }
  const tokenizer = ggufTokenizerMetadata(dir, cfg.vocab_size, cfg);
  if (tokenizer.problems.length > 0) throw new Error(`${dir}: ${tokenizer.problems.join('; ')}`);
  const a = 'qwen3';
  const metadata: [string, GgufValue][] = [
    ['general.architecture', gv.str(a)],
    ['general.type', gv.str('model')],
    ['general.name', gv.str('BitDistill e2e bench (random ternary Qwen3-0.6B shape)')],
    ...ggufDecoderMetadata(a, parseDecoderConfig(cfg, join(dir, 'config.json'))),
    ['general.file_type', gv.u32(LLAMA_FILE_TYPES.TQ2_0)],
    ['general.quantization_version', gv.u32(GGML_QUANT_VERSION)],
    ['general.alignment', gv.u32(32)],
    ...tokenizer.entries,
  ];
  return writeGguf(out, metadata, gguf);
}

export const qwen3GgufName = (layers: number): string => join(`ternary-${layers}`, 'model-tq2_0-q8_0.gguf');
