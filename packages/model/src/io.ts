/**
 * Loading and saving decoders: a Hugging Face folder (config.json + model.safetensors or a sharded index +
 * tokenizer), or a llama2.c checkpoint (`.bin`, legacy v0 layout). Saving writes an HF folder.
 */
import { existsSync, statSync, readdirSync, copyFileSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FormatError, NotFoundError, silentLogger, type Logger } from '@bitdistill/core';
import { loadSafetensorsDir, readJsonObjectFile, readLlama2c, writeSafetensors, tensorToFloat32, type TensorEntry } from '@bitdistill/format';
import { loadTokenizer, type Tokenizer } from '@bitdistill/data';
import { parseDecoderConfig, type DecoderConfig } from '@bitdistill/arch';
import { Decoder } from './decoder.ts';
import { ownedVariable } from './ops.ts';

export interface LoadedModel {
  model: Decoder;
  tokenizer: Tokenizer;
  /** Folder the model came from (for copying the tokenizer on save). */
  source: string;
}

export interface LoadOptions {
  /** Make the parameters trainable (default true); a frozen teacher passes false. */
  trainable?: boolean;
  logger?: Logger;
}

/** Files that make up a tokenizer, copied along when a model is saved. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.bin', 'vocab.txt'];

function hintForFolder(dir: string): string {
  for (const sub of ['final', 'latest']) {
    if (existsSync(join(dir, sub, 'config.json'))) return `did you mean --model ${join(dir, sub)}?`;
  }
  return 'a model folder holds config.json and model.safetensors (Hugging Face layout), or pass a llama2.c .bin file';
}

function toVariables(tensors: Map<string, TensorEntry>, file: string, trainable: boolean): Map<string, tf.Variable> {
  const params = new Map<string, tf.Variable>();
  for (const [name, t] of tensors) {
    const data = tensorToFloat32(t, `${file}: ${name}`);
    // A weight that is NaN or infinite is damage (no trained model holds one); it would only surface as a NaN loss
    // steps later, or as NaN logits in evaluation.
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i] as number)) {
        throw new FormatError(file, `tensor '${name}' holds ${data[i]} at index ${i}`, {
          hint: 'the weights are corrupt: restore the file from its source, or pass an intact checkpoint',
        });
      }
    }
    params.set(name, ownedVariable(tf.tensor(data, [...t.shape], 'float32'), trainable));
  }
  return params;
}

function checkTokenizer(tokenizer: Tokenizer, config: DecoderConfig, where: string): void {
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new FormatError(where, `the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${config.vocabSize}`, {
      hint: 'the tokenizer does not belong to this model: use the tokenizer files saved with the weights',
    });
  }
}

export function loadModel(path: string, options: LoadOptions = {}): LoadedModel {
  const trainable = options.trainable ?? true;
  const logger = options.logger ?? silentLogger;
  if (!existsSync(path)) throw new NotFoundError(path, `model path '${path}' does not exist`, { hint: 'pass --model DIR (a Hugging Face style folder)' });

  if (statSync(path).isFile()) {
    // llama2.c checkpoint; its tokenizer sits next to it.
    const ck = readLlama2c(path);
    const config = parseDecoderConfig(ck.config, path);
    const tokenizer = loadTokenizer(dirname(path));
    checkTokenizer(tokenizer, config, path);
    logger.debug({ path, params: ck.tensors.size }, 'loaded llama2.c checkpoint');
    return { model: new Decoder(config, toVariables(ck.tensors, path, trainable)), tokenizer, source: dirname(path) };
  }

  const cfgPath = join(path, 'config.json');
  if (!existsSync(cfgPath)) throw new NotFoundError(cfgPath, `expected config.json in '${path}'`, { hint: hintForFolder(path) });
  const raw = readJsonObjectFile(cfgPath, 'config.json is corrupt: restore it from the base model, or pass an intact checkpoint');
  const config = parseDecoderConfig(raw, cfgPath);
  const st = loadSafetensorsDir(path);
  const tokenizer = loadTokenizer(path);
  checkTokenizer(tokenizer, config, path);
  const model = new Decoder(config, toVariables(st.tensors, join(path, 'model.safetensors'), trainable));
  logger.debug({ path, params: model.params.size }, 'loaded model');
  return { model, tokenizer, source: path };
}

export interface SaveOptions {
  /** Extra keys merged into config.json's `bitdistill` block (quantizer, task, template...). */
  bitdistill?: Record<string, unknown>;
  /** Folder to copy tokenizer files from (default: none copied). */
  tokenizerFrom?: string;
  /** safetensors __metadata__. */
  metadata?: Record<string, string>;
}

/** The config.json object for a model (original keys + the bitdistill block). */
export function configJson(model: Decoder, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const c = model.config;
  const out: Record<string, unknown> = { ...c.raw };
  const prev = c.raw['bitdistill'];
  const block: Record<string, unknown> = {
    ...(prev !== null && typeof prev === 'object' ? (prev as Record<string, unknown>) : {}),
    ...extra,
    subln: c.subln,
    ...(c.subln !== 'none' ? { sublnEps: c.sublnEps } : {}),
  };
  if (c.subln === 'none' && Object.keys(extra).length === 0 && prev === undefined) delete out['bitdistill'];
  else out['bitdistill'] = block;
  return out;
}

function writeAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

/** Save as a Hugging Face folder: config.json, model.safetensors (F32), tokenizer files. */
export async function saveModel(model: Decoder, dir: string, options: SaveOptions = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, TensorEntry>();
  for (const [name, v] of model.params) {
    tensors.set(name, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, options.metadata ?? { format: 'pt' });
  writeAtomic(join(dir, 'config.json'), `${JSON.stringify(configJson(model, options.bitdistill), null, 2)}\n`);
  if (options.tokenizerFrom !== undefined) copyTokenizerFiles(options.tokenizerFrom, dir);
}

export function copyTokenizerFiles(from: string, to: string): string[] {
  const copied: string[] = [];
  if (!existsSync(from)) return copied;
  for (const f of TOKENIZER_FILES) {
    const src = join(from, f);
    if (existsSync(src) && join(from) !== join(to)) {
      copyFileSync(src, join(to, f));
      copied.push(f);
    }
  }
  if (copied.length === 0) {
    // llama2.c style tokenizer file with another name (tok512.bin): copy as tokenizer.bin.
    const tok = readdirSync(from).find((f) => /^tok.*\.bin$/.test(f));
    if (tok !== undefined) {
      copyFileSync(join(from, tok), join(to, 'tokenizer.bin'));
      copied.push(basename(tok));
    }
  }
  return copied;
}
