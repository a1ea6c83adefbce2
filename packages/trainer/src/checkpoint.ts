/**
 * Checkpoints (DESIGN.md "Files on disk"): one Hugging Face style folder per checkpoint, written to a temporary
 * folder, fsynced, then renamed into place; a `latest` file names the newest complete one and is itself
 * replaced atomically. A crash (or a full disk) at any moment leaves the previous checkpoint intact and
 * `latest` pointing at it.
 *
 *   <stageDir>/checkpoints/step-000120/{model.safetensors, config.json, tokenizer files,
 *       optimizer.safetensors, trainer_state.json, config.resolved.yaml}
 *   <stageDir>/latest        "checkpoints/step-000120"
 *   <stageDir>/final/        the stage's output model (same layout, no optimizer)
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BitDistillError, FormatError, type RngState } from '@bitdistill/core';
import { loadSafetensorsDir, readSafetensors, writeSafetensors, type TensorEntry } from '@bitdistill/format';
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
    if (optimizer !== null) files.push(['optimizer.safetensors', () => writeSafetensorsSynced(join(tmp, 'optimizer.safetensors'), optimizer, { format: 'bitdistill-optimizer' })]);
    const state = c.state;
    if (state !== null) files.push(['trainer_state.json', () => writeSynced(join(tmp, 'trainer_state.json'), `${JSON.stringify(state, null, 2)}\n`)]);
    for (const [name, write] of files) {
      write();
      hook?.(name);
    }
    copyTokenizerFiles(c.tokenizerFrom, tmp);
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
  const all = readdirSync(dir).filter((n) => /^step-\d+$/.test(n)).sort();
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
    throw new FormatError(p, `points at '${rel}', which is not a complete checkpoint`, { hint: `delete ${p} to start the stage over, or point it at a folder under checkpoints/` });
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

export function readTrainerState(dir: string): TrainerState {
  const p = join(dir, 'trainer_state.json');
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as TrainerState;
  } catch (e) {
    throw new FormatError(p, `cannot read trainer state: ${(e as Error).message}`, { cause: e });
  }
}

export function readOptimizerTensors(dir: string): Map<string, TensorEntry> {
  const p = join(dir, 'optimizer.safetensors');
  // Straight from the file, tensor by tensor: readFileSync stops at 2 GiB (Qwen3-0.6B's moments are 4.8 GB).
  return readSafetensors(p).tensors;
}

/** Load a checkpoint's weights into an existing model (names and shapes must match). */
export function loadWeightsInto(model: Decoder, dir: string): void {
  const { tensors } = loadSafetensorsDir(dir);
  for (const [name, v] of model.params) {
    const t = tensors.get(name);
    if (t === undefined) throw new FormatError(join(dir, 'model.safetensors'), `missing tensor '${name}'`);
    if (t.dtype !== 'F32') throw new FormatError(join(dir, 'model.safetensors'), `tensor '${name}' is ${t.dtype}, expected F32 in a checkpoint`);
    tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, [...t.shape])));
  }
}
