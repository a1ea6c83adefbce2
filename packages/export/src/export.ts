/**
 * `bitdistill export --ternary`: a training checkpoint (full-precision latent weights + the student record in
 * config.json) -> a packed ternary model folder (DESIGN.md "Ternary export"):
 *   - each quantized projection `<name>.weight` as U8 [ceil(out/4), in] in the Hugging Face BitNet packing, plus
 *     `<name>.weight_scale` F32 (multiplicative: weight = ternary x scale); [1] for absmean, [out] for perRow,
 *     [ceil(out*in/256)] for block256;
 *   - every other tensor (embeddings, lm_head, norms, SubLN gains) in full precision (F32, or BF16 on request);
 *   - config.json with `quantization_config` and the `bitdistill` block; the tokenizer files.
 * This package never loads tfjs: the quantizer used is the reference twin of the training one, so the export
 * holds exactly the ternary values the fake-quantized student computed with.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError, silentLogger, type Logger } from '@bitdistill/core';
import {
  loadSafetensorsDir,
  packTernaryHF,
  readJsonObjectFile,
  readSafetensors,
  tensorToFloat32,
  unpackTernaryHF,
  writeSafetensors,
  f32ArrayToBf16,
  type TensorEntry,
} from '@bitdistill/format';
import {
  hfConfigKeys,
  parseDecoderConfig,
  parseProjectionWeight,
  PROJECTIONS,
  projectionName,
  projectionShape,
  type DecoderConfig,
  ternaryQuantRef,
  type WeightQuantMode,
} from '@bitdistill/arch';
import { describeSublnEpsMismatch, sublnEpsMismatch, type SublnEpsMismatch } from './subln-eps.ts';

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.bin', 'vocab.txt'];

export interface ExportOptions {
  from: string;
  out: string;
  /** dtype for the tensors that stay full precision. */
  dtype?: 'F32' | 'BF16';
  /**
   * Write config.json for Hugging Face transformers' BitNet integration (docs/interop.md): a Llama student with
   * standard SubLN becomes model_type `bitnet` / BitNetForCausalLM, every model-shape key transformers defaults
   * differently is written out, and architectures it cannot express are refused. `linearClass` 'bitlinear'
   * (default; `true` means it) stores 1 / scale for BitLinear, which divides by weight_scale and is the class every
   * transformers release with BitNet support builds: releases whose integrations/bitnet.py has only BitLinear
   * ignore linear_class, later ones build BitLinear unless linear_class says 'autobitlinear'. 'autobitlinear'
   * keeps the multiplicative scale, which only releases with AutoBitLinear read right: older ones divide by it.
   */
  hfCompat?: boolean | { linearClass: 'autobitlinear' | 'bitlinear' };
  logger?: Logger;
}

export interface ExportReport {
  checkpoint: string;
  out: string;
  quantizedTensors: number;
  bytes: number;
  /** Size of a bf16 copy of the same model (every parameter in 2 bytes). */
  bf16Bytes: number;
  parameters: number;
  /** With hfCompat: the SubLN epsilon transformers applies differs from the student's, and what that changes. */
  sublnEps: SublnEpsMismatch | null;
}

/** A run's stage folder resolves to its final checkpoint; a checkpoint folder is taken as it is. */
export function resolveCheckpoint(from: string): string {
  if (!existsSync(from))
    throw new NotFoundError(from, `checkpoint '${from}' does not exist`, { hint: 'pass --from runs/<name>/<stage> or a checkpoint folder' });
  if (existsSync(join(from, 'config.json'))) return from;
  if (existsSync(join(from, 'final', 'config.json'))) return join(from, 'final');
  throw new NotFoundError(join(from, 'config.json'), `no config.json in '${from}' (nor in ${join(from, 'final')})`, {
    hint: 'the stage has not finished: run `bitdistill train` to the end, or pass a folder under checkpoints/',
  });
}

/** A checkpoint's config.json as an object (a FormatError naming the file otherwise). */
export function readConfigJson(path: string): Record<string, unknown> {
  return readJsonObjectFile(path, "the checkpoint's config.json is corrupt; export an intact checkpoint (checkpoints/step-N) instead");
}

/**
 * The checkpoint's tensors against its config.json, before anything loops over the config's sizes (the GGUF
 * tokenizer pads to vocab_size, the planner walks num_hidden_layers): the embedding is [vocab_size, hidden_size],
 * every layer 0..num_hidden_layers-1 has its seven projections and no tensor belongs to a layer beyond. With
 * `shapes`, every projection also has the [out, in] shape the config implies, and an untied lm_head is
 * [vocab_size, hidden_size] (the GGUF export asks for that only once the architecture is known to fit).
 */
export function checkCheckpoint(c: DecoderConfig, tensors: ReadonlyMap<string, TensorEntry>, dir: string, o: { shapes: boolean }): void {
  const fail = (message: string): never => {
    throw new FormatError(join(dir, 'model.safetensors'), message, {
      hint: 'the weights and config.json of this checkpoint disagree; export an intact checkpoint (checkpoints/step-N) instead',
    });
  };
  const shaped = (name: string, want: readonly number[], what: string): void => {
    const t = tensors.get(name);
    if (t === undefined) fail(`tensor '${name}' is missing`);
    else if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i]))
      fail(`tensor '${name}' is [${t.shape.join(', ')}]; config.json implies [${want.join(', ')}] (${what})`);
  };
  shaped('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize], '[vocab_size, hidden_size]');
  if (o.shapes && !c.tieWordEmbeddings) shaped('lm_head.weight', [c.vocabSize, c.hiddenSize], '[vocab_size, hidden_size]');
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m !== null && Number(m[1]) >= c.numLayers) fail(`tensor '${name}' belongs to layer ${m[1]}, and config.json's num_hidden_layers is ${c.numLayers}`);
  }
  for (let l = 0; l < c.numLayers; l++) {
    for (const pr of PROJECTIONS) {
      const name = `${projectionName(l, pr)}.weight`;
      if (o.shapes) shaped(name, projectionShape(c, pr), "[out, in] from the config's sizes");
      else if (!tensors.has(name)) fail(`tensor '${name}' is missing (num_hidden_layers is ${c.numLayers})`);
    }
  }
}

export interface StudentBlock {
  subln: string;
  weightQuant: WeightQuantMode;
  exclude: string[];
}

export function studentBlock(config: Record<string, unknown>, file: string): StudentBlock {
  const b = config['bitdistill'] as Record<string, unknown> | undefined;
  const wq = b?.['weightQuant'];
  if (b === undefined || wq === undefined || wq === 'none') {
    throw new UnsupportedError(`${file}: this checkpoint is not a ternary student (no weight quantizer recorded in config.json's bitdistill block)`, {
      hint: 'export a bitnet-sft, continual-pretrain or distill checkpoint; a teacher stays full precision',
    });
  }
  if (wq !== 'absmean' && wq !== 'perRow' && wq !== 'block256') throw new FormatError(file, `unknown bitdistill.weightQuant '${String(wq)}'`);
  return { subln: String(b['subln'] ?? 'none'), weightQuant: wq, exclude: Array.isArray(b['exclude']) ? (b['exclude'] as string[]) : [] };
}

export function isQuantized(name: string, exclude: readonly string[]): boolean {
  return parseProjectionWeight(name) !== null && !exclude.includes(name.replace(/\.weight$/, ''));
}

/**
 * config.json keys for transformers (hfCompat), or the reasons it cannot express this student. BitNetForCausalLM
 * (models/bitnet) is Llama + attn_sub_norm before o_proj + ffn_sub_norm before down_proj, both of size
 * hidden/intermediate with eps rms_norm_eps; its config defaults (hidden_act relu2, rope_theta 500000, untied
 * embeddings, Llama-3 bos/eos ids) differ from ours, so every one of those keys is written explicitly.
 */
function hfCompatConfig(
  config: Record<string, unknown>,
  cfgPath: string,
  student: StudentBlock,
  linearClass: 'autobitlinear' | 'bitlinear',
): Record<string, unknown> {
  const c = parseDecoderConfig(config, cfgPath);
  const problems: string[] = [];
  if (c.modelType !== 'llama')
    problems.push(
      `model_type ${c.modelType}: transformers' BitNet model (BitNetForCausalLM) is Llama-based; ${c.modelType === 'qwen3' ? 'q_norm/k_norm' : 'q/k/v biases'} have no place in it`,
    );
  if (c.qkvBias || c.oBias) problems.push('attention_bias: AutoBitLinear scales the bias together with the product (output * weight_scale), which changes it');
  if (c.subln === 'allnorm')
    problems.push(
      "subln allnorm: BitNetForCausalLM has SubLN only before o_proj and down_proj (subln standard); transformers' quantization_config use_rms_norm would need renamed per-projection norms, which this export does not write",
    );
  if (student.weightQuant !== 'absmean')
    problems.push(`weightQuant ${student.weightQuant}: transformers' BitLinear/AutoBitLinear hold one weight_scale per tensor (absmean)`);
  if (c.subln === 'standard' && c.numHeads * c.headDim !== c.hiddenSize)
    problems.push(`num_attention_heads x head_dim = ${c.numHeads * c.headDim} differs from hidden_size ${c.hiddenSize}, the size of BitNet's attn_sub_norm`);
  const outs = [c.numHeads * c.headDim, c.numKvHeads * c.headDim, c.hiddenSize, c.intermediateSize];
  if (outs.some((n) => n % 4 !== 0)) problems.push(`output sizes ${outs.join(', ')} must be multiples of 4: transformers allocates out // 4 packed rows`);
  if (problems.length > 0) {
    throw new UnsupportedError(`${cfgPath}: --hf-compat cannot describe this student to transformers:\n  - ${problems.join('\n  - ')}`, {
      hint: "export without --hf-compat and run it with BitDistill's runtime (bitdistill eval --runtime kernels); docs/interop.md lists what each target runs",
    });
  }
  const hf = hfConfigKeys(c);
  const keys: Record<string, unknown> = Object.fromEntries(
    [
      'hidden_act',
      'rope_theta',
      'rms_norm_eps',
      'tie_word_embeddings',
      'head_dim',
      'num_key_value_heads',
      'max_position_embeddings',
      'attention_bias',
      'bos_token_id',
      'eos_token_id',
    ].map((k) => [k, hf[k]]),
  );
  return {
    ...(c.subln === 'standard' ? { model_type: 'bitnet', architectures: ['BitNetForCausalLM'] } : {}),
    ...keys,
    quantization_config: {
      quant_method: 'bitnet',
      linear_class: linearClass,
      quantization_mode: 'offline',
      modules_to_not_convert: ['lm_head', ...student.exclude],
    },
  };
}

export function exportTernary(o: ExportOptions): ExportReport {
  const log = o.logger ?? silentLogger;
  const ckpt = resolveCheckpoint(o.from);
  const cfgPath = join(ckpt, 'config.json');
  const config = readConfigJson(cfgPath);
  const student = studentBlock(config, cfgPath);
  const linearClass = o.hfCompat === undefined || o.hfCompat === false ? null : o.hfCompat === true ? 'bitlinear' : o.hfCompat.linearClass;
  const hf = linearClass === null ? null : hfCompatConfig(config, cfgPath, student, linearClass);
  const { tensors } = loadSafetensorsDir(ckpt);
  checkCheckpoint(parseDecoderConfig(config, cfgPath), tensors, ckpt, { shapes: true });
  const out = new Map<string, TensorEntry>();
  const expected = new Map<string, { codes: Int8Array; scales: Float32Array }>();
  let parameters = 0;
  for (const [name, t] of tensors) {
    const data = tensorToFloat32(t, `${ckpt}: ${name}`);
    parameters += data.length;
    if (isQuantized(name, student.exclude)) {
      if (t.shape.length !== 2) throw new FormatError(cfgPath, `projection '${name}' has shape [${t.shape.join(', ')}], expected 2-D`);
      const [rows, cols] = t.shape as [number, number];
      const q = ternaryQuantRef(data, cols, student.weightQuant);
      // transformers' BitLinear divides by weight_scale; AutoBitLinear and our runtime multiply.
      const scales = linearClass === 'bitlinear' ? q.scales.map((v) => Math.fround(1 / v)) : q.scales;
      out.set(name, { dtype: 'U8', shape: [Math.ceil(rows / 4), cols], data: packTernaryHF(q.codes, rows, cols) });
      out.set(name.replace(/\.weight$/, '.weight_scale'), { dtype: 'F32', shape: [scales.length], data: scales });
      expected.set(name, { codes: q.codes, scales });
    } else if (o.dtype === 'BF16') {
      out.set(name, { dtype: 'BF16', shape: [...t.shape], data: f32ArrayToBf16(data) });
    } else {
      out.set(name, { dtype: 'F32', shape: [...t.shape], data });
    }
  }
  if (expected.size === 0) throw new UnsupportedError(`${ckpt}: no quantized projection found to export`);

  const exportConfig = {
    ...config,
    // Excluded projections stay dense: transformers must not swap them for BitNet linears either.
    quantization_config: {
      quant_method: 'bitnet',
      linear_class: 'autobitlinear',
      quantization_mode: 'offline',
      ...(student.exclude.length > 0 ? { modules_to_not_convert: ['lm_head', ...student.exclude] } : {}),
    },
    ...hf,
    bitdistill: {
      ...(config['bitdistill'] as Record<string, unknown>),
      weightScale: linearClass === 'bitlinear' ? 'reciprocal' : 'multiplicative',
      packing: 'hf-bitnet-u8',
      exportedFrom: ckpt,
      ...(hf !== null ? { baseModelType: config['model_type'] } : {}),
    },
  };

  // Write into a temporary folder and rename, so a failed export never leaves a half-written model behind.
  const tmp = `${o.out.replace(/\/+$/, '')}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeSafetensors(join(tmp, 'model.safetensors'), out, { format: 'pt', bitdistill: 'ternary-export-v1' });
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(exportConfig, null, 2)}\n`);
    for (const f of TOKENIZER_FILES) if (existsSync(join(ckpt, f))) copyFileSync(join(ckpt, f), join(tmp, f));
    verifyExport(tmp, tensors, expected, o.dtype ?? 'F32');
    rmSync(o.out, { recursive: true, force: true });
    renameSync(tmp, o.out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  let bytes = 0;
  for (const f of readdirSync(o.out)) bytes += statSync(join(o.out, f)).size;
  const eps = linearClass === null ? null : sublnEpsMismatch(o.out, parseDecoderConfig(config, cfgPath));
  if (eps !== null) log.warn(eps, describeSublnEpsMismatch(eps, 'transformers (BitNetForCausalLM)'));
  const report: ExportReport = { checkpoint: ckpt, out: o.out, quantizedTensors: expected.size, bytes, bf16Bytes: parameters * 2, parameters, sublnEps: eps };
  log.info({ ...report, sublnEps: eps?.maxLogitDiff ?? null }, 'ternary export written and verified');
  return report;
}

/** Re-read what was written and check it against the checkpoint: codes, scales, and every other tensor. */
function verifyExport(
  dir: string,
  source: Map<string, TensorEntry>,
  expected: Map<string, { codes: Int8Array; scales: Float32Array }>,
  dtype: 'F32' | 'BF16',
): void {
  const file = join(dir, 'model.safetensors');
  const { tensors } = readSafetensors(file);
  for (const [name, t] of source) {
    const e = expected.get(name);
    const got = tensors.get(name);
    if (got === undefined) throw new FormatError(file, `verification: tensor '${name}' missing from the export`);
    if (e !== undefined) {
      const [rows, cols] = t.shape as [number, number];
      if (got.dtype !== 'U8') throw new FormatError(file, `verification: '${name}' should be U8`);
      const codes = unpackTernaryHF(got.data, rows, cols, `${file}: ${name}`);
      for (let i = 0; i < codes.length; i++) {
        if (codes[i] !== e.codes[i]) throw new FormatError(file, `verification: '${name}' code ${i} is ${codes[i]}, expected ${e.codes[i]}`);
      }
      const s = tensors.get(name.replace(/\.weight$/, '.weight_scale'));
      if (s === undefined || s.dtype !== 'F32' || s.data.length !== e.scales.length || s.data.some((v, i) => v !== e.scales[i])) {
        throw new FormatError(file, `verification: '${name}' scale differs from the checkpoint's`);
      }
    } else {
      const a = tensorToFloat32(t);
      const b = tensorToFloat32(got);
      const ref = dtype === 'BF16' ? tensorToFloat32({ dtype: 'BF16', shape: t.shape, data: f32ArrayToBf16(a) }) : a;
      if (b.length !== ref.length || b.some((v, i) => !Object.is(v, ref[i])))
        throw new FormatError(file, `verification: tensor '${name}' differs from the checkpoint's`);
    }
  }
}
