// Tiny exports built in memory for the runtime's validation tests: an export folder (config.json,
// model.safetensors with packed ternary projections, the stories260K tokenizer) and bitnet GGUF files, from a
// seeded Rng. No tfjs and no exporter: the files are written with @bitdistill/format directly, so a test can
// change any one tensor or key and see what the loader says.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '@bitdistill/core';
import { bitnetGgufName, gv, packTernaryHF, writeGguf, writeSafetensors, type GgufTensor, type GgufValue, type TensorEntry } from '@bitdistill/format';
import { loadLlama2cTokenizer } from '@bitdistill/data';
import { parseDecoderConfig, PROJECTIONS, projectionName, projectionShape, sublnName, type DecoderConfig, type Projection } from '@bitdistill/arch';
import { TINY_LLAMA } from '../../format/test/fixtures.ts';

export const TOKENIZER = 'models/stories260K/tokenizer.bin'; // 512 tokens

/** TINY_LLAMA (2 layers, hidden 16, 2 heads of 8, 1 KV head) as a ternary export: SubLN standard, untied. */
export const BASE_CONFIG: Record<string, unknown> = {
  ...TINY_LLAMA,
  tie_word_embeddings: false,
  quantization_config: { quant_method: 'bitnet', linear_class: 'autobitlinear', quantization_mode: 'offline' },
  bitdistill: { subln: 'standard', weightQuant: 'absmean', packing: 'hf-bitnet-u8' },
};

export const rowsCols = (c: DecoderConfig, pr: Projection): [number, number] => projectionShape(c, pr);

function floats(rng: Rng, n: number, mean: number, std: number): Float32Array {
  return Float32Array.from({ length: n }, () => mean + std * rng.normal());
}

/**
 * The tensors of an export for `config` (Hugging Face names). Projections are packed ternary U8 with an F32 [1]
 * scale, except those listed in `dense` (F32 [out, in]).
 */
export function exportTensors(config: Record<string, unknown>, seed = 1, dense: readonly string[] = []): Map<string, TensorEntry> {
  const c = parseDecoderConfig(config, 'fixture');
  const rng = new Rng(seed);
  const C = c.hiddenSize;
  const t = new Map<string, TensorEntry>();
  const f32 = (name: string, shape: number[], mean: number, std: number) =>
    t.set(name, {
      dtype: 'F32',
      shape,
      data: floats(
        rng,
        shape.reduce((a, b) => a * b, 1),
        mean,
        std,
      ),
    });
  f32('model.embed_tokens.weight', [c.vocabSize, C], 0, 0.5);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    f32(`${p}.input_layernorm.weight`, [C], 1, 0.1);
    f32(`${p}.post_attention_layernorm.weight`, [C], 1, 0.1);
    if (c.qkNorm) {
      f32(`${p}.self_attn.q_norm.weight`, [c.headDim], 1, 0.1);
      f32(`${p}.self_attn.k_norm.weight`, [c.headDim], 1, 0.1);
    }
    for (const pr of PROJECTIONS) {
      const base = projectionName(l, pr);
      const [rows, cols] = rowsCols(c, pr);
      if (dense.includes(base)) {
        f32(`${base}.weight`, [rows, cols], 0, 0.2);
      } else {
        const codes = Int8Array.from({ length: rows * cols }, () => rng.int(3) - 1);
        t.set(`${base}.weight`, { dtype: 'U8', shape: [Math.ceil(rows / 4), cols], data: packTernaryHF(codes, rows, cols) });
        t.set(`${base}.weight_scale`, { dtype: 'F32', shape: [1], data: Float32Array.of(0.05 + 0.1 * rng.next()) });
      }
      const bias = pr === 'o_proj' ? c.oBias : pr === 'q_proj' || pr === 'k_proj' || pr === 'v_proj' ? c.qkvBias : false;
      if (bias) f32(`${base}.bias`, [rows], 0, 0.1);
      const s = sublnName(l, pr, c.subln);
      if (s !== null) f32(s, [cols], 1, 0.1);
    }
  }
  f32('model.norm.weight', [C], 1, 0.1);
  if (!c.tieWordEmbeddings) f32('lm_head.weight', [c.vocabSize, C], 0, 0.5);
  return t;
}

/** Write an export folder: config.json, model.safetensors, tokenizer.bin. */
export function writeExportDir(dir: string, config: Record<string, unknown>, tensors: ReadonlyMap<string, TensorEntry>): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', bitdistill: 'ternary-export-v1' });
  copyFileSync(TOKENIZER, join(dir, 'tokenizer.bin'));
  return dir;
}

/** tokenizer.ggml.* for the stories260K tokenizer, as `export --format gguf` writes a llama2.c vocabulary. */
export function ggufTokenizerEntries(): [string, GgufValue][] {
  const tok = loadLlama2cTokenizer(TOKENIZER);
  const tokens: string[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const piece = tok.idToToken(id) ?? '';
    tokens.push(id === 1 ? '<s>' : id === 2 ? '</s>' : /^<0x[0-9A-F]{2}>$/.test(piece) ? piece : piece.replaceAll(' ', '\u2581'));
  }
  return [
    ['tokenizer.ggml.model', gv.str('llama')],
    ['tokenizer.ggml.tokens', gv.strings(tokens)],
    ['tokenizer.ggml.scores', gv.f32s(tok.scores)],
    ['tokenizer.ggml.bos_token_id', gv.u32(1)],
    ['tokenizer.ggml.eos_token_id', gv.u32(2)],
  ];
}

/** A layer's tensors with SubLN standard, by Hugging Face name and in llama.cpp's order, with their projection. */
function ggufLayer(l: number): [hf: string, pr: Projection | null][] {
  const names: [string, Projection | null][] = [[`model.layers.${l}.input_layernorm.weight`, null]];
  for (const pr of PROJECTIONS) {
    if (pr === 'gate_proj') names.push([`model.layers.${l}.post_attention_layernorm.weight`, null]);
    const s = sublnName(l, pr, 'standard');
    if (s !== null) names.push([s, null]);
    names.push([`${projectionName(l, pr)}.weight`, pr]);
  }
  return names;
}

/**
 * A bitnet GGUF (llama, SubLN standard, tied embeddings) with every projection dense F32 (any size) or, with
 * `ternary`, TQ2_0 blocks (hidden and intermediate must be multiples of 256). `hfConfig` adds
 * bitdistill.hf_config_json as our exporter does; without it the config comes from the bitnet.* keys alone.
 */
export function ggufFile(
  path: string,
  config: Record<string, unknown>,
  o: { seed?: number; ternary?: boolean; hfConfig?: boolean } = {},
): { metadata: [string, GgufValue][]; tensors: GgufTensor[] } {
  const c = parseDecoderConfig(config, 'fixture');
  const rng = new Rng(o.seed ?? 3);
  const tensors: GgufTensor[] = [];
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const f32 = (name: string, shape: number[], mean: number, std: number) => {
    tensors.push({
      name,
      type: 'F32',
      dims: [...shape].reverse(),
      data: bytes(
        floats(
          rng,
          shape.reduce((a, b) => a * b, 1),
          mean,
          std,
        ),
      ),
    });
  };
  f32('token_embd.weight', [c.vocabSize, c.hiddenSize], 0, 0.5);
  for (let l = 0; l < c.numLayers; l++) {
    for (const [hf, pr] of ggufLayer(l)) {
      const name = bitnetGgufName(hf) as string;
      if (pr === null) {
        const size = hf.includes('ffn_sub_norm') ? c.intermediateSize : c.hiddenSize;
        f32(name, [size], 1, 0.1);
        continue;
      }
      const [rows, cols] = rowsCols(c, pr);
      if (o.ternary !== true) {
        f32(name, [rows, cols], 0, 0.2);
        continue;
      }
      // TQ2_0 block: 64 bytes of 2-bit codes (value + 1; 4 per byte, in groups of 32 bytes) then fp16 d.
      const blocks = (rows * cols) / 256;
      const data = new Uint8Array(blocks * 66);
      for (let b = 0; b < blocks; b++) {
        for (let j = 0; j < 64; j++) data[b * 66 + j] = rng.int(3) | (rng.int(3) << 2) | (rng.int(3) << 4) | (rng.int(3) << 6);
        data[b * 66 + 64] = 0x66; // fp16 0x2e66 = 0.0999...
        data[b * 66 + 65] = 0x2e;
      }
      tensors.push({ name, type: 'TQ2_0', dims: [cols, rows], data });
    }
  }
  f32('output_norm.weight', [c.hiddenSize], 1, 0.1);
  const metadata: [string, GgufValue][] = [
    ['general.architecture', gv.str('bitnet')],
    ['general.name', gv.str('fixture')],
    ['bitnet.block_count', gv.u32(c.numLayers)],
    ['bitnet.context_length', gv.u32(c.maxPositionEmbeddings)],
    ['bitnet.embedding_length', gv.u32(c.hiddenSize)],
    ['bitnet.feed_forward_length', gv.u32(c.intermediateSize)],
    ['bitnet.attention.head_count', gv.u32(c.numHeads)],
    ['bitnet.attention.head_count_kv', gv.u32(c.numKvHeads)],
    ['bitnet.attention.key_length', gv.u32(c.headDim)],
    ['bitnet.rope.freq_base', gv.f32(c.ropeTheta)],
    ['bitnet.attention.layer_norm_rms_epsilon', gv.f32(c.rmsNormEps)],
    ...ggufTokenizerEntries(),
  ];
  if (o.hfConfig === true) metadata.push(['bitdistill.hf_config_json', gv.str(JSON.stringify(config))]);
  writeGguf(path, metadata, tensors);
  return { metadata, tensors };
}

/** BASE_CONFIG as a bitnet GGUF takes it: tied embeddings. */
export const GGUF_CONFIG: Record<string, unknown> = { ...BASE_CONFIG, tie_word_embeddings: true };
