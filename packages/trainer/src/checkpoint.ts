/**
 * Checkpoints (DESIGN.md "Files on disk"): one Hugging Face style folder per checkpoint, written to a temporary
 * folder, fsynced, then renamed into place; a `latest` file names the newest complete one and is itself
 * replaced atomically. A crash (or a full disk) at any moment leaves the previous checkpoint intact and
 * `latest` pointing at it.
 *
 *   <stageDir>/checkpoints/step-000120/{model.safetensors, config.json, tokenizer files,
 *       optimizer.safetensors, trainer_state.json, config.resolved.yaml, manifest.json}
 *   <stageDir>/latest        "checkpoints/step-000120"
 *   <stageDir>/final/        the stage's output model (same layout, no optimizer)
 *
 * manifest.json, written last, holds every other file's size and SHA-256. A resume verifies it (and the trainer
 * state's schema, and the tensor names and shapes of both safetensors files against the model) before loading
 * anything; a latest checkpoint that fails is skipped, with a warning, for the newest earlier one that passes.
 * Temporary folders and files left by killed processes are removed when a stage starts.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BitDistillError, FormatError, NotFoundError, isBitDistillError, type RngState } from '@bitdistill/core';
import { loadSafetensorsDir, readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { configJson, copyTokenizerFiles, type Decoder } from '@bitdistill/model';

export interface TrainerState {
  stage: string;
  /** Optimizer steps done. */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Where the data stream continues (stage-specific JSON). */
  dataCursor: unknown;
  rng: RngState;
  bestMetric: number | null;
  bestStep: number | null;
  tokensSeen: number;
  elapsedSeconds: number;
}

/** Write bytes to a file and fsync it. */
function writeSynced(file: string, data: string | Uint8Array): void {
  const fd = openSync(file, 'w');
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A safetensors file streamed tensor by tensor from the tensors' own storage, then fsynced: serialising the
 * whole file first held a second copy of every byte (at Qwen3-0.6B: 2.4 GB of weights and 4.8 GB of AdamW
 * moments at once, on top of the live ones).
 */
function writeSafetensorsSynced(file: string, tensors: ReadonlyMap<string, TensorEntry>, metadata: Record<string, string>): void {
  writeSafetensors(file, tensors, metadata);
  const fd = openSync(file, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Write `name` into `dir` atomically (temp file + fsync + rename + directory fsync). */
export function writeFileAtomic(dir: string, name: string, data: string | Uint8Array): void {
  const tmp = join(dir, `.${name}.tmp-${process.pid}`);
  writeSynced(tmp, data);
  renameSync(tmp, join(dir, name));
  fsyncDir(dir);
}

export async function modelTensors(model: Decoder): Promise<Map<string, TensorEntry>> {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, v] of model.params) tensors.set(name, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  return tensors;
}

export interface CheckpointContent {
  model: Decoder;
  /** Tensors for optimizer.safetensors (AdamW moments, EMA shadow), or null for a final model. */
  optimizer: Map<string, TensorEntry> | null;
  state: TrainerState | null;
  resolvedYaml: string;
  tokenizerFrom: string;
  bitdistill: Record<string, unknown>;
}

/** Test hook: called after each file of a checkpoint is written (a throw simulates a full disk). */
export type WriteHook = (file: string) => void;

/**
 * Write a complete checkpoint folder at `target` (which must not exist yet, or is replaced atomically for
 * `final`). Everything goes to a temporary sibling first; on any error the temporary folder is removed and
 * the error re-thrown, so nothing half-written is ever visible under `target`.
 */
export async function writeCheckpointDir(target: string, c: CheckpointContent, hook?: WriteHook): Promise<void> {
  const parent = join(target, '..');
  mkdirSync(parent, { recursive: true });
  const base = target.split('/').pop() as string;
  const tmp = join(parent, `.tmp-${base}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const optimizer = c.optimizer;
    const weights = await modelTensors(c.model);
    const files: [string, () => void][] = [
      ['model.safetensors', () => writeSafetensorsSynced(join(tmp, 'model.safetensors'), weights, { format: 'pt' })],
      ['config.json', () => writeSynced(join(tmp, 'config.json'), `${JSON.stringify(configJson(c.model, c.bitdistill), null, 2)}\n`)],
      ['config.resolved.yaml', () => writeSynced(join(tmp, 'config.resolved.yaml'), c.resolvedYaml)],
    ];
    if (optimizer !== null)
      files.push(['optimizer.safetensors', () => writeSafetensorsSynced(join(tmp, 'optimizer.safetensors'), optimizer, { format: 'bitdistill-optimizer' })]);
    const state = c.state;
    if (state !== null) files.push(['trainer_state.json', () => writeSynced(join(tmp, 'trainer_state.json'), `${JSON.stringify(state, null, 2)}\n`)]);
    for (const [name, write] of files) {
      write();
      hook?.(name);
    }
    copyTokenizerFiles(c.tokenizerFrom, tmp);
    writeManifest(tmp);
    hook?.(MANIFEST_FILE);
    fsyncDir(tmp);
    if (existsSync(target)) {
      const old = join(parent, `.old-${base}-${process.pid}`);
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
    fsyncDir(parent);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new BitDistillError('E_IO', `disk full while writing checkpoint ${target}`, {
        cause: e,
        hint: 'free some space; the previous checkpoint is intact and `--resume auto` continues from it',
      });
    }
    throw e;
  }
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** Save a training checkpoint, move `latest` to it, and prune old ones (keeping `keep` names too). */
export async function saveCheckpoint(
  stageDir: string,
  c: CheckpointContent & { state: TrainerState },
  keepLast: number,
  keep: readonly string[] = [],
  hook?: WriteHook,
): Promise<string> {
  const rel = join('checkpoints', checkpointName(c.state.step));
  await writeCheckpointDir(join(stageDir, rel), c, hook);
  writeFileAtomic(stageDir, 'latest', `${rel}\n`);
  const dir = join(stageDir, 'checkpoints');
  const all = readdirSync(dir)
    .filter((n) => /^step-\d+$/.test(n))
    .sort();
  const protect = new Set([...keep, rel].map((k) => k.replace(/^checkpoints\//, '')));
  const removable = all.filter((n) => !protect.has(n));
  const excess = all.length - Math.max(1, keepLast);
  for (const n of removable.slice(0, Math.max(0, excess))) rmSync(join(dir, n), { recursive: true, force: true });
  return rel;
}

/** The folder named by `<stageDir>/latest`, or null when there is none. */
export function latestCheckpoint(stageDir: string): string | null {
  const p = join(stageDir, 'latest');
  if (!existsSync(p)) return null;
  const rel = readFileSync(p, 'utf8').trim();
  const dir = join(stageDir, rel);
  if (!existsSync(join(dir, 'trainer_state.json'))) {
    throw new FormatError(p, `points at '${rel}', which is not a complete checkpoint`, {
      hint: `delete ${p} to start the stage over, or point it at a folder under checkpoints/`,
    });
  }
  return dir;
}

/** Every complete checkpoint of a stage, oldest first. */
export function listCheckpoints(stageDir: string): string[] {
  const dir = join(stageDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => /^step-\d+$/.test(n) && existsSync(join(dir, n, 'trainer_state.json')))
    .sort()
    .map((n) => join(dir, n));
}

const STATE_HINT = 'trainer_state.json is written by the trainer; resume from an earlier checkpoint (--resume PATH) or start the stage over (--resume none)';

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isNonNegative = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** Check a parsed trainer_state.json key by key; the error names the file and the first bad key. */
export function validateTrainerState(raw: unknown, file: string): TrainerState {
  const bad = (key: string, want: string, got: unknown): FormatError =>
    new FormatError(file, `'${key}' must be ${want}, got ${got === undefined ? 'nothing (missing)' : JSON.stringify(got)?.slice(0, 80)}`, { hint: STATE_HINT });
  if (!isObject(raw))
    throw new FormatError(file, `must hold a JSON object, got ${Array.isArray(raw) ? 'an array' : JSON.stringify(raw)?.slice(0, 40)}`, { hint: STATE_HINT });
  const r = raw;
  if (typeof r['stage'] !== 'string' || r['stage'] === '') throw bad('stage', 'a stage name', r['stage']);
  if (!isCount(r['totalSteps'])) throw bad('totalSteps', 'an integer >= 0', r['totalSteps']);
  if (!isCount(r['step']) || r['step'] > r['totalSteps']) throw bad('step', `an integer between 0 and totalSteps (${r['totalSteps']})`, r['step']);
  if (!isNonNegative(r['epoch'])) throw bad('epoch', 'a number >= 0', r['epoch']);
  if (!('dataCursor' in r) || r['dataCursor'] === undefined) throw bad('dataCursor', 'the data stream position', undefined);
  const rng = r['rng'];
  if (
    !isObject(rng) ||
    !isCount(rng['s']) ||
    rng['s'] > 0xffffffff ||
    !(rng['spare'] === null || (typeof rng['spare'] === 'number' && Number.isFinite(rng['spare'])))
  ) {
    throw bad('rng', '{"s": a uint32, "spare": a number or null}', rng);
  }
  if (!(r['bestMetric'] === null || (typeof r['bestMetric'] === 'number' && Number.isFinite(r['bestMetric']))))
    throw bad('bestMetric', 'a number or null', r['bestMetric']);
  if (!(r['bestStep'] === null || (isCount(r['bestStep']) && r['bestStep'] <= r['step'])))
    throw bad('bestStep', `null or an integer between 0 and step (${r['step']})`, r['bestStep']);
  if (!isNonNegative(r['tokensSeen'])) throw bad('tokensSeen', 'a number >= 0', r['tokensSeen']);
  if (!isNonNegative(r['elapsedSeconds'])) throw bad('elapsedSeconds', 'a number >= 0', r['elapsedSeconds']);
  return r as unknown as TrainerState;
}

/** Read and schema-check a checkpoint's trainer_state.json. */
export function readTrainerState(dir: string): TrainerState {
  const p = join(dir, 'trainer_state.json');
  if (!existsSync(p))
    throw new NotFoundError(p, `${dir} is not a checkpoint: it has no trainer_state.json`, { hint: 'pass a folder under <run>/<stage>/checkpoints/' });
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new FormatError(p, `cannot read trainer state: ${(e as Error).message}`, { cause: e, hint: STATE_HINT });
  }
  return validateTrainerState(raw, p);
}

export function readOptimizerTensors(dir: string): Map<string, TensorEntry> {
  const p = join(dir, 'optimizer.safetensors');
  if (!existsSync(p))
    throw new NotFoundError(p, `checkpoint ${dir} has no optimizer.safetensors`, {
      hint: 'a stage resumes from a training checkpoint (checkpoints/step-N), not from final/',
    });
  // Straight from the file, tensor by tensor: readFileSync stops at 2 GiB (Qwen3-0.6B's moments are 4.8 GB).
  return readSafetensors(p).tensors;
}

/** Load a checkpoint's weights into an existing model (names and shapes must match). */
export function loadWeightsInto(model: Decoder, dir: string): void {
  const { tensors } = loadSafetensorsDir(dir);
  const file = join(dir, 'model.safetensors');
  for (const [name, v] of model.params) {
    const t = tensors.get(name);
    if (t === undefined) throw new FormatError(file, `missing tensor '${name}'`);
    if (t.dtype !== 'F32') throw new FormatError(file, `tensor '${name}' is ${t.dtype}, expected F32 in a checkpoint`);
    if (!sameShape(t.shape, v.shape))
      throw new FormatError(file, `tensor '${name}' is [${t.shape.join(', ')}], the model's is [${v.shape.join(', ')}]`, {
        hint: 'the checkpoint belongs to a different model config',
      });
    tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, [...t.shape])));
  }
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

// --- integrity: manifest, verification, fallback, stale temporaries ---

export const MANIFEST_FILE = 'manifest.json';

export interface CheckpointManifest {
  format: 'bitdistill-checkpoint';
  version: 1;
  /** Every other file of the folder: size in bytes and SHA-256 (hex). */
  files: Record<string, { bytes: number; sha256: string }>;
}

/** Size and SHA-256 of a file, read in 16 MiB pieces (a 0.6B model's moments are 4.8 GB). */
export function fileDigest(file: string): { bytes: number; sha256: string } {
  const fd = openSync(file, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(16 << 20, fstatSync(fd).size)));
    let bytes = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      bytes += n;
    }
    return { bytes, sha256: h.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

function writeManifest(dir: string): void {
  const files: CheckpointManifest['files'] = {};
  for (const name of readdirSync(dir).sort()) {
    if (name !== MANIFEST_FILE && statSync(join(dir, name)).isFile()) files[name] = fileDigest(join(dir, name));
  }
  const m: CheckpointManifest = { format: 'bitdistill-checkpoint', version: 1, files };
  writeSynced(join(dir, MANIFEST_FILE), `${JSON.stringify(m, null, 2)}\n`);
}

function readManifest(dir: string): CheckpointManifest | null {
  const p = join(dir, MANIFEST_FILE);
  if (!existsSync(p)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new FormatError(p, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (!isObject(raw) || raw['format'] !== 'bitdistill-checkpoint' || raw['version'] !== 1 || !isObject(raw['files'])) {
    throw new FormatError(p, 'is not a bitdistill checkpoint manifest (format "bitdistill-checkpoint", version 1, files {...})');
  }
  for (const [name, f] of Object.entries(raw['files'])) {
    if (
      !isObject(f) ||
      !isCount(f['bytes']) ||
      typeof f['sha256'] !== 'string' ||
      !/^[0-9a-f]{64}$/.test(f['sha256']) ||
      !/^[^/\\\0]+$/.test(name) ||
      name === '.' ||
      name === '..' ||
      name === MANIFEST_FILE
    ) {
      throw new FormatError(p, `entry '${name.slice(0, 80)}' must be {"bytes": n, "sha256": 64 hex digits} for a file of the folder`);
    }
  }
  return raw as unknown as CheckpointManifest;
}

/** What a checkpoint of the running stage must hold. */
export interface CheckpointExpectation {
  stage: string;
  /** Every model parameter's name and shape: model.safetensors holds exactly these, as F32. */
  params: ReadonlyMap<string, readonly number[]>;
  /** Trainable parameters: optimizer.safetensors may hold m.<name>, v.<name> (in pairs) and ema.<name> of these. */
  trainable: ReadonlySet<string>;
}

export interface VerifiedCheckpoint {
  dir: string;
  state: TrainerState;
  /** False for a checkpoint written before manifests existed (structure checked, bytes not). */
  checksums: boolean;
}

/**
 * Check a training checkpoint without loading it: every file its manifest lists has its size and SHA-256, the
 * trainer state passes its schema and names this stage, and the two safetensors files hold the model's tensors
 * (names, dtypes, shapes) and the optimizer's. Throws a FormatError / NotFoundError naming the file otherwise.
 */
export function verifyCheckpoint(dir: string, expect: CheckpointExpectation): VerifiedCheckpoint {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new NotFoundError(dir, `checkpoint folder '${dir}' does not exist`, { hint: 'pass a folder under <run>/<stage>/checkpoints/' });
  const manifest = readManifest(dir);
  if (manifest !== null) {
    for (const [name, want] of Object.entries(manifest.files)) {
      const f = join(dir, name);
      if (!existsSync(f)) throw new NotFoundError(f, `checkpoint file '${name}' listed in ${MANIFEST_FILE} is missing`);
      if (!statSync(f).isFile()) throw new FormatError(f, `is listed in ${MANIFEST_FILE} as a file but is not one`);
      const got = fileDigest(f);
      if (got.bytes !== want.bytes) throw new FormatError(f, `is ${got.bytes} bytes, ${MANIFEST_FILE} says ${want.bytes}: the file was cut short or replaced`);
      if (got.sha256 !== want.sha256)
        throw new FormatError(f, `SHA-256 ${got.sha256.slice(0, 16)}... differs from ${MANIFEST_FILE}'s ${want.sha256.slice(0, 16)}...: the file is corrupt`);
    }
    for (const name of ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'config.json']) {
      if (!(name in manifest.files)) throw new FormatError(join(dir, MANIFEST_FILE), `does not list '${name}', which every training checkpoint holds`);
    }
  }
  const state = readTrainerState(dir);
  if (state.stage !== expect.stage) {
    throw new FormatError(join(dir, 'trainer_state.json'), `is a checkpoint of stage '${state.stage}', not of '${expect.stage}'`, {
      hint: 'resume each stage from its own checkpoints',
    });
  }
  const modelFile = join(dir, 'model.safetensors');
  if (!existsSync(modelFile)) throw new NotFoundError(modelFile, `checkpoint ${dir} has no model.safetensors`);
  const model = readSafetensorsHeader(modelFile).tensors;
  for (const [name, shape] of expect.params) {
    const t = model.get(name);
    if (t === undefined) throw new FormatError(modelFile, `missing tensor '${name}'`, { hint: 'the checkpoint belongs to a different model config' });
    if (t.dtype !== 'F32' || !sameShape(t.shape, shape)) {
      throw new FormatError(modelFile, `tensor '${name}' is ${t.dtype} [${t.shape.join(', ')}], expected F32 [${shape.join(', ')}]`, {
        hint: 'the checkpoint belongs to a different model config',
      });
    }
  }
  for (const name of model.keys())
    if (!expect.params.has(name))
      throw new FormatError(modelFile, `tensor '${name}' is not a parameter of this model`, { hint: 'the checkpoint belongs to a different model config' });
  const optFile = join(dir, 'optimizer.safetensors');
  if (!existsSync(optFile))
    throw new NotFoundError(optFile, `checkpoint ${dir} has no optimizer.safetensors`, {
      hint: 'a stage resumes from a training checkpoint (checkpoints/step-N), not from final/',
    });
  const opt = readSafetensorsHeader(optFile).tensors;
  for (const [key, t] of opt) {
    const m = /^(m|v|ema)\.(.+)$/.exec(key);
    const name = m?.[2];
    if (m === null || name === undefined || !expect.trainable.has(name))
      throw new FormatError(optFile, `tensor '${key}' is not m.<param>, v.<param> or ema.<param> of a trainable parameter`);
    const shape = expect.params.get(name) as readonly number[];
    if (t.dtype !== 'F32' || !sameShape(t.shape, shape))
      throw new FormatError(optFile, `tensor '${key}' is ${t.dtype} [${t.shape.join(', ')}], expected F32 [${shape.join(', ')}]`);
    if (m[1] !== 'ema' && !opt.has(`${m[1] === 'm' ? 'v' : 'm'}.${name}`))
      throw new FormatError(optFile, `'${key}' has no matching ${m[1] === 'm' ? 'v' : 'm'}.${name}: AdamW keeps both moments`);
  }
  if (manifest === null) {
    // No checksums to trust: at least no NaN or infinity may come back from a checkpoint (the trainer never writes one).
    for (const f of [modelFile, optFile]) {
      for (const [name, t] of readSafetensors(f).tensors) {
        const i = t.data instanceof Float32Array ? firstNonFinite(t.data) : -1;
        if (i >= 0) throw new FormatError(f, `tensor '${name}' holds ${t.data[i]} at index ${i}; a checkpoint never does: the file is corrupt`);
      }
    }
  }
  return { dir, state, checksums: manifest !== null };
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) return i;
  return -1;
}

export interface ResumePoint extends VerifiedCheckpoint {
  /** Checkpoints passed over, newest first, with the reason. */
  skipped: { dir: string; reason: string }[];
}

const stepOf = (name: string): number | null => {
  const m = /^step-(\d+)$/.exec(name);
  return m === null ? null : Number(m[1]);
};

/**
 * The checkpoint a stage resumes from: the one `latest` names when it verifies, else the newest earlier one that
 * does: each skipped one is reported and renamed to `<name>.corrupt-<time>` (kept for inspection, never reused),
 * and `latest` is moved to the one chosen. Null when the stage has no `latest`. Throws when `latest` exists but no checkpoint verifies.
 */
export function findResumePoint(stageDir: string, expect: CheckpointExpectation): ResumePoint | null {
  const latestFile = join(stageDir, 'latest');
  if (!existsSync(latestFile)) return null;
  const ckDir = join(stageDir, 'checkpoints');
  const named = readFileSync(latestFile, 'utf8').trim();
  const namedStep = /^checkpoints\/step-\d+$/.test(named) ? stepOf(named.slice('checkpoints/'.length)) : null;
  const others = existsSync(ckDir)
    ? readdirSync(ckDir)
        .filter((n) => stepOf(n) !== null && (namedStep === null || (stepOf(n) as number) < namedStep))
        .sort()
        .reverse()
        .map((n) => join(ckDir, n))
    : [];
  const candidates = namedStep !== null ? [join(stageDir, named), ...others] : others;
  const skipped: ResumePoint['skipped'] = [];
  if (namedStep === null) skipped.push({ dir: latestFile, reason: `'latest' holds '${named.slice(0, 80)}', not checkpoints/step-N` });
  for (const dir of candidates) {
    try {
      const v = verifyCheckpoint(dir, expect);
      if (skipped.length > 0) {
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
        for (const s of skipped) if (s.dir !== latestFile && existsSync(s.dir)) renameSync(s.dir, `${s.dir}.corrupt-${stamp}`);
        writeFileAtomic(stageDir, 'latest', `checkpoints/${dir.split('/').pop() as string}\n`);
      }
      return { ...v, skipped };
    } catch (e) {
      if (!isBitDistillError(e)) throw e;
      skipped.push({ dir, reason: e.message });
    }
  }
  throw new FormatError(
    latestFile,
    `no checkpoint of this stage is intact (${skipped
      .map((s) => `${s.dir}: ${s.reason}`)
      .join('; ')
      .slice(0, 600)})`,
    {
      hint: `start the stage over with --resume none (or delete ${stageDir})`,
    },
  );
}

/** The process `pid` is running (or exists under another user). */
function alive(pid: number): boolean {
  if (pid === process.pid) return false; // nothing of this stage is being written yet when this runs
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temporary folders and files (`.tmp-step-000120-PID`, `.old-final-PID`, `.latest.tmp-PID`) that a
 * killed process left in a stage folder; those of processes still running are kept. Returns what was removed.
 */
export function removeStaleTemporaries(stageDir: string): string[] {
  const removed: string[] = [];
  for (const dir of [stageDir, join(stageDir, 'checkpoints')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const m = /^\.(?:tmp|old)-.+-(\d+)$/.exec(name) ?? /^\..+\.tmp-(\d+)$/.exec(name);
      if (m === null || alive(Number(m[1]))) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(join(dir, name));
    }
  }
  return removed;
}
