/**
 * `bitdistill soup`: the uniform model soup (Wortsman et al. 2022, "Model soups: averaging weights of multiple
 * fine-tuned models improves accuracy without increasing inference time"): every tensor is the elementwise mean of
 * that tensor over the checkpoints. The checkpoints must be one architecture (the same config.json model keys and
 * student record) with the same tensor names and shapes; config.json and the tokenizer come from the first.
 * tfjs-free: tensors are read one at a time from the safetensors files (the output is held in memory until
 * written, as one model).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { ArgumentError, FormatError, UnsupportedError, silentLogger, type Logger } from '@bitdistill/core';
import { openSafetensorsDir, tensorToFloat32, writeSafetensors, type LazySafetensors, type TensorEntry } from '@bitdistill/format';
import { hfConfigKeys, parseDecoderConfig } from '@bitdistill/arch';
import { readConfigJson, resolveCheckpoint } from './export.ts';

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.bin', 'vocab.txt'];
/** The student record keys that change what the weights mean (a latent ternary weight is not a dense one). */
const STUDENT_KEYS = ['weightQuant', 'activationQuant', 'exclude'];

export interface SoupOptions {
  /** Checkpoint folders, or run stage folders (their final/). Two or more. */
  models: readonly string[];
  out: string;
  logger?: Logger;
}

export interface SoupReport {
  /** The checkpoint folders averaged, in order. */
  models: string[];
  out: string;
  tensors: number;
  parameters: number;
}

/** What must agree between the checkpoints: the architecture keys config.json stands for, and the student record. */
function architecture(config: Record<string, unknown>, file: string): Map<string, string> {
  const keys = new Map<string, string>();
  for (const [k, v] of Object.entries(hfConfigKeys(parseDecoderConfig(config, file)))) keys.set(k, JSON.stringify(v));
  const b = config['bitdistill'];
  const block = b !== null && typeof b === 'object' ? (b as Record<string, unknown>) : {};
  for (const k of STUDENT_KEYS) keys.set(`bitdistill.${k}`, JSON.stringify(block[k] ?? null));
  return keys;
}

export function soupCheckpoints(o: SoupOptions): SoupReport {
  const log = o.logger ?? silentLogger;
  if (o.models.length < 2)
    throw new ArgumentError(`soup: ${o.models.length} checkpoint given, a soup needs two or more`, { hint: 'pass --model DIR twice or more' });
  const dirs = o.models.map(resolveCheckpoint);
  const outDir = resolve(o.out);
  if (dirs.some((d) => resolve(d) === outDir || resolve(d).startsWith(outDir + sep)))
    throw new ArgumentError(`soup: --out ${o.out} is or holds one of the checkpoints (--out is replaced)`, { hint: 'write the soup to a new folder' });
  const configs = dirs.map((d) => {
    const file = join(d, 'config.json');
    const config = readConfigJson(file);
    if (config['quantization_config'] !== undefined)
      throw new UnsupportedError(`${file}: this is a packed export (config.json has quantization_config); its weights cannot be averaged`, {
        hint: 'soup the training checkpoints the exports came from (runs/<name>/<stage>/final), then export the soup',
      });
    return { file, config, arch: architecture(config, file) };
  });
  const first = configs[0] as (typeof configs)[number];
  for (const c of configs.slice(1)) {
    for (const [k, v] of first.arch) {
      if (c.arch.get(k) !== v)
        throw new FormatError(c.file, `${k} is ${c.arch.get(k)}, ${first.file} has ${v}: the checkpoints are not one architecture`, {
          hint: 'a soup averages checkpoints of one model (e.g. fine-tunes of the same base, or the stages of one run that share a student record)',
        });
    }
  }

  const files: LazySafetensors[] = [];
  const out = new Map<string, TensorEntry>();
  let parameters = 0;
  try {
    for (const d of dirs) files.push(openSafetensorsDir(d));
    const base = files[0] as LazySafetensors;
    for (let m = 1; m < files.length; m++) {
      const other = (files[m] as LazySafetensors).tensors;
      const where = join(dirs[m] as string, 'model.safetensors');
      const hint = 'a soup needs the same tensors in every checkpoint';
      for (const [name, t] of base.tensors) {
        const u = other.get(name);
        if (u === undefined) throw new FormatError(where, `tensor '${name}' is missing (it is in ${dirs[0]})`, { hint });
        if (u.shape.length !== t.shape.length || u.shape.some((s, i) => s !== t.shape[i]))
          throw new FormatError(where, `tensor '${name}' is [${u.shape.join(', ')}], in ${dirs[0]} [${t.shape.join(', ')}]`, { hint });
      }
      for (const name of other.keys()) if (!base.tensors.has(name)) throw new FormatError(where, `tensor '${name}' is not in ${dirs[0]}`, { hint });
    }
    for (const [name, t] of base.tensors) {
      const sum = new Float64Array(t.shape.reduce((a, b) => a * b, 1));
      for (let m = 0; m < files.length; m++) {
        const data = tensorToFloat32(((files[m] as LazySafetensors).tensors.get(name) as typeof t).read(), `${dirs[m]}: ${name}`);
        for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (data[i] as number);
      }
      const mean = new Float32Array(sum.length);
      for (let i = 0; i < sum.length; i++) {
        mean[i] = (sum[i] as number) / files.length;
        if (!Number.isFinite(mean[i] as number))
          throw new FormatError(join(dirs[0] as string, 'model.safetensors'), `tensor '${name}': the mean at index ${i} is ${mean[i]}`, {
            hint: 'a checkpoint holds NaN or infinity (or values whose sum overflows float32): leave it out of the soup',
          });
      }
      out.set(name, { dtype: 'F32', shape: [...t.shape], data: mean });
      parameters += mean.length;
    }
  } finally {
    for (const f of files) f.close();
  }

  // The soup's own record. The first checkpoint's PTQ record no longer holds (the mean is off its grid), nor its
  // finalEval (a training stage's dev result).
  const block = { ...((first.config['bitdistill'] as Record<string, unknown> | undefined) ?? {}) };
  delete block['ptq'];
  delete block['finalEval'];
  const config = { ...first.config, bitdistill: { ...block, soup: { method: 'uniform', models: dirs } } };
  // Written into a temporary folder and renamed, so a failure never leaves a half-written model behind.
  const tmp = `${o.out.replace(/\/+$/, '')}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeSafetensors(join(tmp, 'model.safetensors'), out, { format: 'pt', bitdistill: 'soup-v1' });
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    const src = dirs[0] as string;
    for (const f of TOKENIZER_FILES) if (existsSync(join(src, f))) copyFileSync(join(src, f), join(tmp, f));
    rmSync(o.out, { recursive: true, force: true });
    renameSync(tmp, o.out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const report: SoupReport = { models: dirs, out: o.out, tensors: out.size, parameters };
  let bytes = 0;
  for (const f of readdirSync(o.out)) bytes += statSync(join(o.out, f)).size;
  log.info({ ...report, bytes }, 'soup written');
  return report;
}
