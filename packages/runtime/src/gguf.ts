/**
 * Reading a llama.cpp `bitnet` GGUF (as `bitdistill export --format gguf` writes it; format/SPEC.md section 4) into
 * what TernaryRuntime runs: a Hugging Face config object, tensors under Hugging Face names (ternary projections in
 * the HF BitNet packing with a per-tensor `weight_scale`, as the safetensors export holds them), and the tokenizer.
 *
 *   - config: the bitnet.* keys; when the file carries `bitdistill.hf_config_json` (ours do) that config is used,
 *     after checking it against the keys (so eps and theta keep their float64 values, and the task block comes
 *     along);
 *   - TQ2_0 / TQ1_0 tensors: decoded by the reference twins in @bitdistill/format; the runtime's integer kernels
 *     take one scale per tensor, so every non-zero block must carry the same d (true for absmean students);
 *   - tokenizer: "llama" vocabularies are rebuilt as a llama2.c tokenizer (ids 0..258 must be <unk>, <s>, </s> and
 *     the 256 byte tokens, as in every Llama-2 style vocabulary); "gpt2" ones from the embedded
 *     tokenizer.huggingface.json.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, UnsupportedError } from '@bitdistill/core';
import {
  bf16ArrayToF32,
  bitnetHfName,
  dequantizeQ8_0,
  f16ArrayToF32,
  ggufArray,
  ggufMeta,
  packTernaryHF,
  readGguf,
  unpackTernaryGgml,
  type GgufFile,
  type TensorEntry,
} from '@bitdistill/format';
import { loadHfTokenizer, parseLlama2cTokenizer, type Tokenizer } from '@bitdistill/data';
import { parseDecoderConfig } from '@bitdistill/arch';

export interface GgufModel {
  raw: Record<string, unknown>;
  tensors: Map<string, TensorEntry>;
  /** Hugging Face name -> the GGUF tensor it came from (a weight_scale maps to its projection's tensor). */
  fileNames: Map<string, string>;
  tokenizer: Tokenizer;
}

export function loadGgufModel(path: string): GgufModel {
  const f = readGguf(path);
  const arch = ggufMeta(f, 'general.architecture', 'string', path).value;
  if (arch !== 'bitnet') {
    throw new UnsupportedError(`${path}: GGUF architecture '${arch}'; BitDistill's runtime reads llama.cpp 'bitnet' files`, {
      hint: 'export with `bitdistill export --ternary --format gguf`, or run this file with llama.cpp',
    });
  }
  const tensors = new Map<string, TensorEntry>();
  const fileNames = new Map<string, string>();
  for (const t of f.tensors) {
    const name = bitnetHfName(t.name);
    if (name === null) throw new UnsupportedError(`${path}: tensor '${t.name}' is not part of the bitnet architecture this runtime implements`);
    const shape = [...t.dims].reverse();
    const label = `${path}: ${t.name}`;
    fileNames.set(name, t.name);
    switch (t.type) {
      case 'F32':
        tensors.set(name, { dtype: 'F32', shape, data: new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4) });
        break;
      case 'F16':
      case 'BF16': {
        const bits = new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2);
        tensors.set(name, { dtype: 'F32', shape, data: t.type === 'F16' ? f16ArrayToF32(bits) : bf16ArrayToF32(bits) });
        break;
      }
      case 'Q8_0': {
        // llama.cpp's 8-bit embeddings: decoded to F32 (the runtime's --embeddings int8 re-quantizes per row).
        let n = 1;
        for (const d of shape) n *= d;
        tensors.set(name, { dtype: 'F32', shape, data: dequantizeQ8_0(t.data, n, label) });
        break;
      }
      case 'TQ1_0':
      case 'TQ2_0': {
        if (shape.length !== 2) throw new FormatError(path, `${t.type} tensor '${t.name}' has ${shape.length} dimensions, expected 2`);
        const [rows, cols] = shape as [number, number];
        const { codes, d } = unpackTernaryGgml(t.type, t.data, rows, cols, label);
        tensors.set(name, { dtype: 'U8', shape: [Math.ceil(rows / 4), cols], data: packTernaryHF(codes, rows, cols) });
        const scaleName = name.replace(/\.weight$/, '.weight_scale');
        tensors.set(scaleName, { dtype: 'F32', shape: [1], data: Float32Array.of(tensorScale(d, path, t.name)) });
        fileNames.set(scaleName, `${t.name} (block scales)`);
        break;
      }
    }
  }
  const raw = configOf(f, path, tensors);
  return { raw, tensors, fileNames, tokenizer: tokenizerFromGguf(f, path) };
}

/**
 * The one d shared by every non-zero block (blocks of zeros carry d = 0). quantize_row_tq*_ref writes d = the
 * block's max |w|, so a negative d is corruption. An all-zero tensor has no d at all: its products are 0 under
 * any scale, and 1 is used.
 */
function tensorScale(d: Float32Array, path: string, name: string): number {
  let s = 0;
  for (let b = 0; b < d.length; b++) {
    const v = d[b] as number;
    if (v === 0) continue;
    if (!(v > 0))
      throw new FormatError(path, `tensor '${name}' block ${b} has scale d = ${v}; ternary block scales are > 0`, { hint: 'the file is corrupted' });
    if (s === 0) s = v;
    else if (v !== s) {
      throw new UnsupportedError(`${path}: ${name}: block scales differ (${s} and ${v} at block ${b}); the kernels runtime takes one scale per tensor`, {
        hint: 'per-row / per-block scales (weightQuant perRow or block256) run on llama.cpp, or through the tfjs student',
      });
    }
  }
  return s === 0 ? 1 : s;
}

function configOf(f: GgufFile, path: string, tensors: Map<string, TensorEntry>): Record<string, unknown> {
  const u32 = (k: string) => ggufMeta(f, `bitnet.${k}`, 'uint32', path).value;
  const f32 = (k: string) => ggufMeta(f, `bitnet.${k}`, 'float32', path).value;
  const embed = tensors.get('model.embed_tokens.weight');
  if (embed === undefined) throw new FormatError(path, "missing tensor 'token_embd.weight'");
  const heads = u32('attention.head_count');
  const keys: Record<string, unknown> = {
    hidden_size: u32('embedding_length'),
    intermediate_size: u32('feed_forward_length'),
    num_hidden_layers: u32('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: f.metadata.has('bitnet.attention.head_count_kv') ? u32('attention.head_count_kv') : heads,
    head_dim: f.metadata.has('bitnet.attention.key_length') ? u32('attention.key_length') : u32('embedding_length') / heads,
    max_position_embeddings: u32('context_length'),
    vocab_size: embed.shape[0],
  };
  const eps = f32('attention.layer_norm_rms_epsilon');
  const theta = f.metadata.has('bitnet.rope.freq_base') ? f32('rope.freq_base') : 10000;
  const scaling = f.metadata.get('bitnet.rope.scaling.type');
  if (scaling !== undefined && !(scaling.type === 'string' && (scaling.value === 'none' || (scaling.value === 'linear' && f32('rope.scaling.factor') === 1)))) {
    throw new UnsupportedError(`${path}: RoPE scaling ${JSON.stringify(scaling)} is not supported by this runtime`);
  }
  const ours = f.metadata.get('bitdistill.hf_config_json');
  if (ours !== undefined) {
    if (ours.type !== 'string') throw new FormatError(path, 'bitdistill.hf_config_json must be a string');
    let parsed: unknown;
    try {
      parsed = JSON.parse(ours.value);
    } catch (e) {
      throw new FormatError(path, `bitdistill.hf_config_json is not valid JSON: ${(e as Error).message}`, {
        hint: 'the file is corrupted: export it again',
        cause: e,
      });
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new FormatError(path, 'bitdistill.hf_config_json is not a JSON object', { hint: 'the file is corrupted: export it again' });
    const raw = parsed as Record<string, unknown>;
    const c = parseDecoderConfig(raw, `${path} (bitdistill.hf_config_json)`);
    const said: Record<string, unknown> = {
      hidden_size: c.hiddenSize,
      intermediate_size: c.intermediateSize,
      num_hidden_layers: c.numLayers,
      num_attention_heads: c.numHeads,
      num_key_value_heads: c.numKvHeads,
      head_dim: c.headDim,
      max_position_embeddings: c.maxPositionEmbeddings,
      vocab_size: c.vocabSize,
    };
    for (const [k, v] of Object.entries(keys))
      if (said[k] !== v) throw new FormatError(path, `bitdistill.hf_config_json says ${k} = ${String(said[k])}, the GGUF keys ${String(v)}`);
    if (Math.fround(c.rmsNormEps) !== eps || Math.fround(c.ropeTheta) !== theta)
      throw new FormatError(path, 'bitdistill.hf_config_json disagrees with the GGUF rms_norm_eps / rope_theta');
    return raw;
  }
  // A bitnet GGUF from elsewhere (e.g. llama.cpp's converter): Llama with standard SubLN and tied embeddings, whose
  // SubLN takes the file's one epsilon, as llama.cpp applies it.
  return {
    ...keys,
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    rms_norm_eps: eps,
    rope_theta: theta,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    attention_bias: false,
    bitdistill: { subln: 'standard', sublnEps: eps },
  };
}

/** The tokenizer a bitnet GGUF carries in its tokenizer.ggml.* (and tokenizer.huggingface.json) metadata. */
export function tokenizerFromGguf(f: GgufFile, path: string): Tokenizer {
  const model = ggufMeta(f, 'tokenizer.ggml.model', 'string', path).value;
  if (model === 'llama') {
    // llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 length, bytes; '▁' as ' ' and
    // BOS/EOS as '\n<s>\n' / '\n</s>\n', as llama2.c's tokenizer.py exports a SentencePiece model.
    const tokens = ggufArray(f, 'tokenizer.ggml.tokens', 'string', path).map((t) => t.value);
    const scores = ggufArray(f, 'tokenizer.ggml.scores', 'float32', path).map((t) => t.value);
    if (scores.length !== tokens.length) throw new FormatError(path, `${scores.length} scores for ${tokens.length} tokens`);
    const enc = new TextEncoder();
    const pieces = tokens.map((t, id) => enc.encode(id === 1 && t === '<s>' ? '\n<s>\n' : id === 2 && t === '</s>' ? '\n</s>\n' : t.replaceAll('\u2581', ' ')));
    // A loop, not Math.max(...pieces): a spread of a 256k-token vocabulary overflows the call stack.
    let maxLen = 1;
    let size = 4;
    for (const p of pieces) {
      if (p.length > maxLen) maxLen = p.length;
      size += 8 + p.length;
    }
    const buf = new Uint8Array(size);
    const view = new DataView(buf.buffer);
    view.setInt32(0, maxLen, true);
    let o = 4;
    pieces.forEach((p, i) => {
      view.setFloat32(o, scores[i] as number, true);
      view.setInt32(o + 4, p.length, true);
      buf.set(p, o + 8);
      o += 8 + p.length;
    });
    return parseLlama2cTokenizer(buf, `${path} (tokenizer.ggml.tokens)`);
  }
  if (model === 'gpt2') {
    const json = f.metadata.get('tokenizer.huggingface.json');
    if (json === undefined || json.type !== 'string') {
      throw new UnsupportedError(
        `${path}: a "gpt2" vocabulary without tokenizer.huggingface.json; BitDistill's runtime rebuilds byte-level BPE tokenizers from that key`,
        {
          hint: 'files written by `bitdistill export --format gguf` carry it',
        },
      );
    }
    // loadHfTokenizer reads files (tokenizer.json + tokenizer_config.json for the special ids): give it a
    // private folder for the moment it takes to build the tokenizer.
    const dir = mkdtempSync(join(tmpdir(), 'bitdistill-gguf-tok-'));
    try {
      writeFileSync(join(dir, 'tokenizer.json'), json.value);
      const cfg = f.metadata.get('bitdistill.tokenizer_config_json');
      if (cfg !== undefined && cfg.type === 'string') writeFileSync(join(dir, 'tokenizer_config.json'), cfg.value);
      return loadHfTokenizer(join(dir, 'tokenizer.json'));
    } catch (e) {
      // The loader names the private copies; name the GGUF and its keys instead.
      if (!(e instanceof FormatError)) throw e;
      const keys = e.message
        .replaceAll(join(dir, 'tokenizer.json'), 'tokenizer.huggingface.json')
        .replaceAll(join(dir, 'tokenizer_config.json'), 'bitdistill.tokenizer_config_json');
      throw new FormatError(path, keys, { hint: 'the tokenizer embedded in the file is corrupt: export it again', cause: e });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new UnsupportedError(`${path}: tokenizer.ggml.model '${model}' is not supported by BitDistill's runtime`, {
    hint: 'it reads "llama" (SentencePiece) and "gpt2" (byte-level BPE) vocabularies',
  });
}
