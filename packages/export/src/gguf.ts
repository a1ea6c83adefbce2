/**
 * `bitdistill export --ternary --format gguf`: a training checkpoint -> one GGUF v3 file for llama.cpp's `bitnet`
 * architecture (DESIGN.md "GGUF export"; docs/interop.md).
 *
 * What llama.cpp's bitnet graph is (src/models/bitnet.cpp, convert_hf_to_gguf.py BitnetModel), and so what can be
 * written: a Llama decoder (no attention biases, no q/k-norm, SwiGLU with SiLU, NeoX/rotate_half RoPE, so q/k
 * rows stay in Hugging Face order: the converter does not permute them for this architecture) with SubLN before
 * o_proj (attn_sub_norm, size hidden) and before down_proj (ffn_sub_norm, size intermediate) - our `standard`
 * SubLN - where num_attention_heads * head_dim == hidden_size, and logits from token_embd (no output tensor: the
 * embeddings must be tied). Every other case is refused, with the reason, before anything is written.
 *
 * Ternary projections are TQ2_0 (or TQ1_0) blocks of 256 along the input dimension; the quantizer's scale (per
 * tensor, per row or per block of 256) is folded into each block's fp16 d, which gives the bytes llama.cpp's
 * quantize_row_tq*_ref would write for the dequantized weight (format/SPEC.md section 5). A projection whose input
 * dimension is not a multiple of 256 cannot be a TQ tensor: refused, or with `allowFallback` written as F16
 * (the dequantized ternary weight) and reported. Norm gains are F32 (1-D tensors always are in llama.cpp files);
 * the embedding is F32 unless `dtype` says F16/BF16.
 *
 * The file is written to a temporary name, re-read and checked (tensor table, every code and block scale), then
 * renamed: a failed export never leaves a GGUF behind.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError, UnsupportedError, silentLogger, type Logger } from '@bitdistill/core';
import {
  GGML_QUANT_VERSION,
  LLAMA_FILE_TYPES,
  bitnetGgufName,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToF16,
  f16ToF32,
  gv,
  loadSafetensorsDir,
  packTernaryGgml,
  readGguf,
  tensorToFloat32,
  unpackTernaryGgml,
  writeGguf,
  QK_K,
  type GgmlType,
  type GgufTensor,
  type GgufValue,
  type TernaryGgmlType,
} from '@bitdistill/format';
import { parseDecoderConfig, type DecoderConfig, ternaryQuantRef } from '@bitdistill/arch';
import { checkCheckpoint, isQuantized, readConfigJson, resolveCheckpoint, studentBlock } from './export.ts';
import { ggufTokenizerMetadata } from './gguf-tokenizer.ts';
import { describeSublnEpsMismatch, sublnEpsMismatch, type SublnEpsMismatch } from './subln-eps.ts';

export interface GgufExportOptions {
  from: string;
  /** The .gguf file to write. */
  out: string;
  /** Ternary block type (default TQ2_0, 2.06 bits per weight; TQ1_0 is 1.69). */
  type?: TernaryGgmlType;
  /** Write projections whose input dimension is not a multiple of 256 as F16 instead of refusing. */
  allowFallback?: boolean;
  /** dtype of the token embedding (norm gains are always F32). */
  dtype?: 'F32' | 'F16' | 'BF16';
  logger?: Logger;
}

export interface GgufExportReport {
  checkpoint: string;
  out: string;
  type: TernaryGgmlType;
  /** general.file_type written: the type that holds most projection weights (F16 when fallbacks outweigh). */
  fileType: 'TQ2_0' | 'TQ1_0' | 'F16';
  quantizedTensors: number;
  /** Projections written as F16 because of `allowFallback`, with the reason. */
  fallbackTensors: { name: string; reason: string }[];
  tensors: number;
  bytes: number;
  /** Size of a bf16 copy of the same model (every parameter in 2 bytes). */
  bf16Bytes: number;
  parameters: number;
  /** The SubLN epsilon llama.cpp applies differs from the student's: what that changes (null when equal). */
  sublnEps: SublnEpsMismatch | null;
}

/** Why a checkpoint's architecture has no place in llama.cpp's bitnet graph; empty when it fits. */
export function bitnetArchitectureProblems(config: Record<string, unknown>, file: string): string[] {
  const c = parseDecoderConfig(config, file);
  const problems: string[] = [];
  if (c.modelType === 'qwen2')
    problems.push("model_type qwen2: its q/k/v projections have biases, and llama.cpp's bitnet architecture has no attention bias tensors");
  if (c.modelType === 'qwen3') problems.push("model_type qwen3: its per-head q_norm/k_norm have no counterpart in llama.cpp's bitnet architecture");
  if (c.modelType === 'llama' && (c.qkvBias || c.oBias)) problems.push("attention_bias is true: llama.cpp's bitnet architecture has no attention bias tensors");
  if (c.subln === 'allnorm')
    problems.push(
      "subln allnorm puts a SubLN before every projection (q/k/v/gate/up *_sub_norm); llama.cpp's bitnet architecture has only attn_sub_norm and ffn_sub_norm (subln standard)",
    );
  if (c.subln === 'none') problems.push("subln none: llama.cpp's bitnet architecture requires the SubLN gains attn_sub_norm and ffn_sub_norm (subln standard)");
  if (c.numHeads * c.headDim !== c.hiddenSize)
    problems.push(
      `num_attention_heads x head_dim = ${c.numHeads} x ${c.headDim} = ${c.numHeads * c.headDim} differs from hidden_size ${c.hiddenSize}; llama.cpp's bitnet graph sizes attn_q, attn_output and attn_sub_norm by hidden_size`,
    );
  if (!c.tieWordEmbeddings)
    problems.push("tie_word_embeddings is false: llama.cpp's bitnet graph computes the logits with token_embd and has no separate output (lm_head) tensor");
  return problems;
}

interface Planned {
  tensor: GgufTensor;
  /** What verification expects back. */
  expect: { kind: 'ternary'; codes: Int8Array; d: Float32Array } | { kind: 'raw' };
}

export function exportGguf(o: GgufExportOptions): GgufExportReport {
  const log = o.logger ?? silentLogger;
  const type = o.type ?? 'TQ2_0';
  const ckpt = resolveCheckpoint(o.from);
  const cfgPath = join(ckpt, 'config.json');
  const config = readConfigJson(cfgPath);
  const student = studentBlock(config, cfgPath);
  if (existsSync(o.out) && statSync(o.out).isDirectory())
    throw new UnsupportedError(`--out ${o.out} is a folder; a GGUF export is one file`, { hint: `pass e.g. --out ${join(o.out, 'model.gguf')}` });

  // 1. Everything that can be decided from config.json and the tokenizer, collected and reported at once; first
  //    the sizes the loops below take from config.json (vocab_size, num_hidden_layers) are checked against the
  //    tensors, so a corrupt config fails here instead of padding a vocabulary of 2^40 tokens.
  const c = parseDecoderConfig(config, cfgPath);
  const { tensors } = loadSafetensorsDir(ckpt);
  checkCheckpoint(c, tensors, ckpt, { shapes: false });
  const problems = bitnetArchitectureProblems(config, cfgPath);
  const tokenizer = ggufTokenizerMetadata(ckpt, c.vocabSize, config);
  problems.push(...tokenizer.problems);
  const inDim = (name: string): number => (/o_proj/.test(name) ? c.numHeads * c.headDim : /down_proj/.test(name) ? c.intermediateSize : c.hiddenSize);
  const fallback: { name: string; reason: string }[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      const name = `model.layers.${l}.${p}.weight`;
      const cols = inDim(name);
      if (!isQuantized(name, student.exclude) || cols % QK_K === 0) continue;
      const reason = `input dimension ${cols} is not a multiple of ${QK_K} (one ${type} block)`;
      if (o.allowFallback === true) fallback.push({ name, reason });
      else problems.push(`${name}: ${reason}`);
    }
  }
  if (problems.length > 0) {
    throw new UnsupportedError(`${ckpt} cannot be exported to GGUF for llama.cpp's bitnet architecture:\n  - ${problems.join('\n  - ')}`, {
      hint:
        'llama.cpp runs Llama-family students (model_type llama, no attention bias, no q/k-norm) trained with student.subln=standard, ' +
        `tied embeddings, num_attention_heads x head_dim = hidden_size and hidden/intermediate sizes that are multiples of ${QK_K} ` +
        "(--allow-fallback writes the other projections as F16); the safetensors export (--format safetensors) runs every architecture on BitDistill's own runtime. See docs/interop.md",
    });
  }

  // 2. Tensors (each projection of the shape the metadata will state).
  checkCheckpoint(c, tensors, ckpt, { shapes: true });
  const planned: Planned[] = [];
  const fallbackNames = new Set(fallback.map((f) => f.name));
  const smallScales: string[] = [];
  let parameters = 0;
  let quantized = 0;
  let ternaryWeights = 0;
  let f16Weights = 0;
  for (const [name, t] of tensors) {
    const data = tensorToFloat32(t, `${ckpt}: ${name}`);
    parameters += data.length;
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i]))
        throw new FormatError(join(ckpt, 'model.safetensors'), `tensor '${name}' holds ${data[i]} at index ${i}`, {
          hint: 'the checkpoint is corrupted or training diverged',
        });
    const gname = bitnetGgufName(name);
    if (gname === null)
      throw new UnsupportedError(`${ckpt}: tensor '${name}' has no place in llama.cpp's bitnet architecture`, {
        hint: 'see docs/interop.md for the tensors a bitnet GGUF holds',
      });
    const dims = [...t.shape].reverse(); // ggml order: ne[0] is the row length
    if (isQuantized(name, student.exclude)) {
      if (t.shape.length !== 2) throw new FormatError(cfgPath, `projection '${name}' has shape [${t.shape.join(', ')}], expected 2-D`);
      const [rows, cols] = t.shape as [number, number];
      const q = ternaryQuantRef(data, cols, student.weightQuant);
      if (fallbackNames.has(name)) {
        // The dequantized ternary weight, so llama.cpp computes with the student's weights (in fp16).
        planned.push({ tensor: { name: gname, type: 'F16', dims, data: bytesOf(f32ArrayToF16(q.values)) }, expect: { kind: 'raw' } });
        f16Weights += data.length;
        continue;
      }
      const packed = packTernaryGgml(type, q.codes, rows, cols, q.scales);
      const d = blockScales(q.codes, q.scales, rows, cols);
      if (q.scales.some((s) => s < 6.103515625e-5)) smallScales.push(name);
      planned.push({ tensor: { name: gname, type, dims, data: packed }, expect: { kind: 'ternary', codes: q.codes, d } });
      quantized++;
      ternaryWeights += data.length;
    } else {
      const dtype: GgmlType = t.shape.length === 1 ? 'F32' : (o.dtype ?? 'F32');
      const raw = dtype === 'F32' ? bytesOf(data) : dtype === 'F16' ? bytesOf(f32ArrayToF16(data)) : bytesOf(f32ArrayToBf16(data));
      planned.push({ tensor: { name: gname, type: dtype, dims, data: raw }, expect: { kind: 'raw' } });
    }
  }
  if (quantized === 0 && fallback.length === 0) throw new UnsupportedError(`${ckpt}: no quantized projection found to export`);
  if (smallScales.length > 0) log.warn({ tensors: smallScales }, 'ternary scales below 6.1e-5 are fp16 subnormals in the GGUF block scales and lose precision');
  for (const f of fallback) log.warn(f, 'projection written as F16 (--allow-fallback)');

  // 3. Metadata: the keys llama.cpp's converter writes for BitnetModel (TextModel.set_gguf_parameters + linear
  //    RoPE scaling of factor 1), the tokenizer, and our own namespaced keys. general.file_type names the type of
  //    most projection weights, so that llama.cpp's "TQ2_0 - 2.06 bpw" is not said of a file of F16 fallbacks.
  const fileType = f16Weights > ternaryWeights ? 'F16' : type;
  const bd = (config['bitdistill'] ?? {}) as Record<string, unknown>;
  const task = typeof bd['task'] === 'string' ? ` (${bd['task']})` : '';
  const exportConfig = { ...config, bitdistill: { ...bd, packing: `gguf-${type.toLowerCase()}`, weightScale: 'folded-into-block-d', exportedFrom: ckpt } };
  const a = 'bitnet';
  const metadata: [string, GgufValue][] = [
    ['general.architecture', gv.str(a)],
    ['general.type', gv.str('model')],
    ['general.name', gv.str(`BitDistill student${task}`)],
    ...ggufDecoderMetadata(a, c),
    ['general.file_type', gv.u32(LLAMA_FILE_TYPES[fileType])],
    [`${a}.rope.scaling.type`, gv.str('linear')],
    [`${a}.rope.scaling.factor`, gv.f32(1)],
    ['general.quantization_version', gv.u32(GGML_QUANT_VERSION)],
    ['general.alignment', gv.u32(32)],
    ...tokenizer.entries,
    ['bitdistill.hf_config_json', gv.str(JSON.stringify(exportConfig))],
  ];

  // 4. Write to a temporary file, verify it, rename.
  mkdirSync(dirname(o.out), { recursive: true });
  const bytes = writeGguf(
    o.out,
    metadata,
    planned.map((p) => p.tensor),
    { beforeRename: (tmp) => verifyGguf(tmp, planned, type) },
  );
  if (fileType !== type) log.warn({ fileType, ternaryWeights, f16Weights }, `general.file_type is ${fileType}: most projection weights are F16 fallbacks`);
  const eps = sublnEpsMismatch(o.out, c);
  if (eps !== null) log.warn(eps, describeSublnEpsMismatch(eps, 'llama.cpp'));
  const report: GgufExportReport = {
    checkpoint: ckpt,
    out: o.out,
    type,
    fileType,
    quantizedTensors: quantized,
    fallbackTensors: fallback,
    tensors: planned.length,
    bytes,
    bf16Bytes: parameters * 2,
    parameters,
    sublnEps: eps,
  };
  log.info({ ...report, fallbackTensors: fallback.length, sublnEps: eps?.maxLogitDiff ?? null }, 'GGUF export written and verified');
  return report;
}

/** The hyperparameter keys llama.cpp reads for a Llama-family decoder under architecture `arch` (bitnet, qwen3, ...). */
export function ggufDecoderMetadata(arch: string, c: DecoderConfig): [string, GgufValue][] {
  return [
    [`${arch}.block_count`, gv.u32(c.numLayers)],
    [`${arch}.context_length`, gv.u32(c.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, gv.u32(c.hiddenSize)],
    [`${arch}.feed_forward_length`, gv.u32(c.intermediateSize)],
    [`${arch}.attention.head_count`, gv.u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, gv.u32(c.numKvHeads)],
    [`${arch}.rope.freq_base`, gv.f32(c.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(c.rmsNormEps)],
    [`${arch}.attention.key_length`, gv.u32(c.headDim)],
    [`${arch}.attention.value_length`, gv.u32(c.headDim)],
  ];
}

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The fp16 d that each block of 256 must carry (0 for an all-zero block), as float32. */
function blockScales(codes: Int8Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  const perRow = cols / QK_K;
  const nb = rows * perRow;
  const d = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let any = false;
    for (let j = 0; j < QK_K && !any; j++) any = codes[b * QK_K + j] !== 0;
    const s = scales.length === 1 ? scales[0] : scales.length === nb ? scales[b] : scales[Math.floor(b / perRow)];
    d[b] = any ? f16ToF32(f32ToF16(s as number)) : 0;
  }
  return d;
}

/** Re-read the written file and compare its tensor table, every ternary code and block scale, and raw bytes. */
function verifyGguf(path: string, planned: Planned[], type: TernaryGgmlType): void {
  const f = readGguf(path);
  if (f.tensors.length !== planned.length) throw new FormatError(path, `verification: ${f.tensors.length} tensors read back, ${planned.length} written`);
  planned.forEach((p, i) => {
    const got = f.tensors[i];
    const want = p.tensor;
    if (got === undefined || got.name !== want.name || got.type !== want.type || got.dims.join() !== want.dims.join()) {
      throw new FormatError(
        path,
        `verification: tensor ${i} reads back as ${got?.name} ${got?.type} [${got?.dims.join(', ')}], written as ${want.name} ${want.type} [${want.dims.join(', ')}]`,
      );
    }
    if (p.expect.kind === 'ternary') {
      const [cols, rows] = want.dims as [number, number];
      const back = unpackTernaryGgml(type, got.data, rows, cols, `${path}: ${want.name}`);
      const e = p.expect;
      for (let j = 0; j < e.codes.length; j++)
        if (back.codes[j] !== e.codes[j]) throw new FormatError(path, `verification: '${want.name}' code ${j} is ${back.codes[j]}, expected ${e.codes[j]}`);
      for (let b = 0; b < e.d.length; b++)
        if (back.d[b] !== e.d[b]) throw new FormatError(path, `verification: '${want.name}' block ${b} scale is ${back.d[b]}, expected ${e.d[b]}`);
    } else if (!Buffer.from(got.data).equals(Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength))) {
      throw new FormatError(path, `verification: '${want.name}' bytes differ from what was written`);
    }
  });
}
