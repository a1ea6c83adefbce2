/**
 * Reader for llama2.c checkpoints in the legacy "v0" layout (Karpathy's llama2.c `export.py --version 0`,
 * also what run.c reads): 7 little-endian int32
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 * (vocab_size < 0 means the classifier is not shared with the embedding and follows at the end), then f32 arrays
 *   token_embedding [V, D], rms_att [L, D], wq [L, D, D], wk [L, KV, D], wv [L, KV, D], wo [L, D, D],
 *   rms_ffn [L, D], w1 [L, H, D], w2 [L, D, H], w3 [L, H, D], rms_final [D],
 *   freq_cis_real [seq_len, hd/2], freq_cis_imag [seq_len, hd/2], and wcls [V, D] if vocab_size < 0,
 * with hd = D / n_heads and KV = n_kv_heads * hd. Matrices are [out, in] like nn.Linear (and HF).
 * The tensors come back under Hugging Face Llama names, with wq/wk rows permuted for HF's RoPE (see below).
 */
import { closeSync, existsSync, openSync, readSync, fstatSync } from 'node:fs';
import { FormatError, NotFoundError, ShapeError, UnsupportedError } from '@bitdistill/core';
import type { TensorEntry } from './safetensors.ts';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** |vocab_size| from the file. */
  vocabSize: number;
  seqLen: number;
  /** vocab_size > 0 in the file: lm_head is the embedding matrix. */
  sharedClassifier: boolean;
}

/** The config.json a Hugging Face LlamaForCausalLM of the same shape would have. */
export type HfLlamaConfig = {
  architectures: string[];
  model_type: 'llama';
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  vocab_size: number;
  attention_bias: boolean;
  hidden_act: 'silu';
  bos_token_id: number;
  eos_token_id: number;
};

export type F32Tensor = Extract<TensorEntry, { dtype: 'F32' }>;

export interface Llama2cCheckpoint {
  header: Llama2cHeader;
  /** HF Llama names -> F32 tensors, in HF order (embedding, layers, norm, lm_head if unshared). */
  tensors: Map<string, F32Tensor>;
  config: HfLlamaConfig;
}

const HEADER_BYTES = 28;
/** llama2.c `export.py` v1/v2 files start with this uint32 ("ak42"), then a version. */
const V1_MAGIC = 0x616b3432;
const LIMITS: [keyof Llama2cHeader, number][] = [
  ['dim', 1 << 16],
  ['hiddenDim', 1 << 18],
  ['nLayers', 1024],
  ['nHeads', 1024],
  ['nKvHeads', 1024],
  ['vocabSize', 1 << 22],
  ['seqLen', 1 << 22],
];

/**
 * RoPE pairing. llama2.c (like Meta's original Llama code) rotates adjacent pairs (2i, 2i+1) of each head by
 * angle pos * theta^(-2i/hd); HF Llama's `rotate_half` rotates (i, i + hd/2) by the same angle. Reordering the
 * output rows of wq and wk inside each head, interleaved row 2i+j -> row j*hd/2 + i, makes the HF forward compute
 * the same q.k scores. This is `permute` in transformers' models/llama/convert_llama_weights_to_hf.py:
 *   w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)
 * `w` is [nHeads * headDim, cols] row-major; returns a new array.
 */
export function interleavedToHalfRope(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  return permuteRows(w, nHeads, headDim, cols, true);
}

/** The inverse of interleavedToHalfRope (HF row order -> interleaved pairs, as llama.cpp's GGUF expects). */
export function halfToInterleavedRope(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  return permuteRows(w, nHeads, headDim, cols, false);
}

function permuteRows(w: Float32Array, nHeads: number, headDim: number, cols: number, toHalf: boolean): Float32Array {
  if (headDim % 2 !== 0 || w.length !== nHeads * headDim * cols) {
    throw new ShapeError(`RoPE row permutation: ${w.length} values do not form [${nHeads} * ${headDim} (even), ${cols}]`);
  }
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const inter = h * headDim + 2 * i + j; // llama2.c row
        const halves = h * headDim + j * half + i; // HF row
        const [src, dst] = toHalf ? [inter, halves] : [halves, inter];
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

function parseHeader(bytes: Uint8Array, label: string): Llama2cHeader {
  if (bytes.length < HEADER_BYTES) {
    throw new FormatError(label, `file is ${bytes.length} bytes; a llama2.c checkpoint starts with a ${HEADER_BYTES}-byte header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const f = (i: number): number => dv.getInt32(4 * i, true);
  if (dv.getUint32(0, true) === V1_MAGIC) {
    throw new UnsupportedError(`${label}: llama2.c export version ${f(1)} (magic "ak42"); only the legacy v0 layout is read`, {
      hint: 'export the checkpoint with llama2.c `python export.py out.bin --version 0 --checkpoint ckpt.pt`',
    });
  }
  const vocab = f(5);
  const header: Llama2cHeader = {
    dim: f(0),
    hiddenDim: f(1),
    nLayers: f(2),
    nHeads: f(3),
    nKvHeads: f(4),
    vocabSize: Math.abs(vocab),
    seqLen: f(6),
    sharedClassifier: vocab > 0,
  };
  const bad = (msg: string): FormatError =>
    new FormatError(label, `bad llama2.c header (${JSON.stringify(header)}): ${msg}`, { hint: 'not a llama2.c v0 checkpoint, or a corrupt one' });
  for (const [key, max] of LIMITS) {
    const v = header[key] as number;
    if (v < 1 || v > max) throw bad(`${key} = ${v} is outside [1, ${max}]`);
  }
  const { dim, nHeads, nKvHeads } = header;
  if (dim % nHeads !== 0) throw bad(`dim ${dim} is not a multiple of n_heads ${nHeads}`);
  if ((dim / nHeads) % 2 !== 0) throw bad(`head size ${dim / nHeads} is odd; RoPE needs pairs`);
  if (nKvHeads > nHeads || nHeads % nKvHeads !== 0) throw bad(`n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  return header;
}

/** Number of f32 values after the header, in file order. */
function layout(h: Llama2cHeader): [string, number][] {
  const { dim: D, hiddenDim: H, nLayers: L, vocabSize: V, seqLen: S } = h;
  const hd = D / h.nHeads;
  const kv = h.nKvHeads * hd;
  const parts: [string, number][] = [
    ['token_embedding', V * D],
    ['rms_att', L * D],
    ['wq', L * D * D],
    ['wk', L * kv * D],
    ['wv', L * kv * D],
    ['wo', L * D * D],
    ['rms_ffn', L * D],
    ['w1', L * H * D],
    ['w2', L * D * H],
    ['w3', L * H * D],
    ['rms_final', D],
    ['freq_cis_real', (S * hd) / 2],
    ['freq_cis_imag', (S * hd) / 2],
  ];
  if (!h.sharedClassifier) parts.push(['wcls', V * D]);
  return parts;
}

export function llama2cConfig(h: Llama2cHeader): HfLlamaConfig {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    head_dim: h.dim / h.nHeads,
    max_position_embeddings: h.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: h.sharedClassifier,
    vocab_size: h.vocabSize,
    attention_bias: false,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
  };
}

/** The number of f32 values after the header; the file size must be exactly 28 + 4 * that. */
function checkSize(header: Llama2cHeader, size: number, label: string): number {
  const floats = layout(header).reduce((n, [, c]) => n + c, 0);
  const expected = HEADER_BYTES + 4 * floats;
  if (size !== expected) {
    throw new FormatError(label, `expected ${expected} bytes for this header (28 + 4 * ${floats} f32 values), got ${size}`, {
      hint: size < expected ? 'the file is truncated' : 'the file has trailing bytes: not a llama2.c v0 checkpoint, or another version',
    });
  }
  return floats;
}

/** Parse a llama2.c v0 checkpoint held in memory; `label` names it in errors. */
export function parseLlama2c(bytes: Uint8Array, label = '<buffer>'): Llama2cCheckpoint {
  const header = parseHeader(bytes, label);
  const parts = layout(header);
  const floats = checkSize(header, bytes.length, label);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new UnsupportedError('llama2.c reading needs a little-endian host');
  // One aligned copy of all floats, then each tensor is sliced (copied) out of it.
  const all = new Float32Array(floats);
  new Uint8Array(all.buffer).set(bytes.subarray(HEADER_BYTES));
  const at = new Map<string, number>();
  let off = 0;
  for (const [name, n] of parts) {
    at.set(name, off);
    off += n;
  }
  const { dim: D, hiddenDim: H, nLayers: L, nHeads, nKvHeads, vocabSize: V } = header;
  const hd = D / nHeads;
  const kv = nKvHeads * hd;
  const tensors = new Map<string, F32Tensor>();
  // Layer `i` of a stacked array `name` whose per-layer shape is [rows, cols].
  const take = (name: string, i: number, rows: number, cols: number): Float32Array => {
    const start = (at.get(name) as number) + i * rows * cols;
    return all.slice(start, start + rows * cols);
  };
  const put = (name: string, shape: number[], data: Float32Array): void => {
    tensors.set(name, { dtype: 'F32', shape, data });
  };

  put('model.embed_tokens.weight', [V, D], take('token_embedding', 0, V, D));
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    put(`${p}.input_layernorm.weight`, [D], take('rms_att', i, 1, D));
    put(`${p}.self_attn.q_proj.weight`, [D, D], interleavedToHalfRope(take('wq', i, D, D), nHeads, hd, D));
    put(`${p}.self_attn.k_proj.weight`, [kv, D], interleavedToHalfRope(take('wk', i, kv, D), nKvHeads, hd, D));
    put(`${p}.self_attn.v_proj.weight`, [kv, D], take('wv', i, kv, D));
    put(`${p}.self_attn.o_proj.weight`, [D, D], take('wo', i, D, D));
    put(`${p}.post_attention_layernorm.weight`, [D], take('rms_ffn', i, 1, D));
    put(`${p}.mlp.gate_proj.weight`, [H, D], take('w1', i, H, D));
    put(`${p}.mlp.down_proj.weight`, [D, H], take('w2', i, D, H));
    put(`${p}.mlp.up_proj.weight`, [H, D], take('w3', i, H, D));
  }
  put('model.norm.weight', [D], take('rms_final', 0, 1, D));
  if (!header.sharedClassifier) put('lm_head.weight', [V, D], take('wcls', 0, V, D));
  return { header, tensors, config: llama2cConfig(header) };
}

/** Read a llama2.c v0 checkpoint file. */
export function readLlama2c(path: string): Llama2cCheckpoint {
  if (!existsSync(path)) throw new NotFoundError(path, `llama2.c checkpoint '${path}' does not exist`);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    // Check the header against the size before reading the rest, so a huge wrong file is not loaded.
    const head = new Uint8Array(Math.min(size, HEADER_BYTES));
    readFully(fd, head, 0, path);
    checkSize(parseHeader(head, path), size, path);
    const bytes = new Uint8Array(size);
    readFully(fd, bytes, 0, path);
    return parseLlama2c(bytes, path);
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, dst: Uint8Array, position: number, label: string): void {
  for (let done = 0; done < dst.length;) {
    const n = readSync(fd, dst, done, Math.min(1 << 30, dst.length - done), position + done);
    if (n === 0) throw new FormatError(label, `file ended at byte ${position + done} while reading; was it modified while being read?`);
    done += n;
  }
}
