/**
 * The training loop shared by every stage: gradient accumulation, clipping, AdamW with a schedule, optional
 * EMA, periodic logging / evaluation / checkpoints, exact resume, and a clean stop on SIGINT/SIGTERM.
 * What is trained and how the loss is made is the stage's business (stages.ts); this file only runs steps.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BitDistillError, FormatError, Rng, isBitDistillError, silentLogger, type Logger } from '@bitdistill/core';
import type { TensorEntry } from '@bitdistill/format';
import type { Decoder } from '@bitdistill/model';
import { AdamW } from './adamw.ts';
import { clipScale } from './clip.ts';
import { learningRate, type ScheduleKind } from './schedule.ts';
import { readStagePeak, type StagePeak } from './peak-rss.ts';
import {
  latestCheckpoint,
  listCheckpoints,
  loadWeightsInto,
  readOptimizerTensors,
  findResumePoint,
  verifyCheckpoint,
  removeStaleTemporaries,
  MANIFEST_FILE,
  type CheckpointExpectation,
  type VerifiedCheckpoint,
  saveCheckpoint,
  writeCheckpointDir,
  type TrainerState,
  type WriteHook,
} from './checkpoint.ts';

/** A V8 / tfjs allocation failure as a typed E_MEMORY error, or null for any other error. */
function outOfMemory(e: unknown, stage: string, step: number, stageDir: string): BitDistillError | null {
  if (!(e instanceof Error) || !/allocation failed|Invalid typed array length|Array buffer|out of memory|Aborted\(\)/i.test(e.message)) return null;
  const msg = e.message;
  return new BitDistillError('E_MEMORY', `${stage}: out of memory at step ${step} (${msg})`, {
    cause: e,
    hint: `the last checkpoint (${latestCheckpoint(stageDir) ?? 'none yet'}) is intact; lower optim.batchSize (raise optim.gradAccum to keep the batch), model.maxSeqLen / corpus.seqLen, or set optim.recompute: true, then resume with --resume auto`,
  });
}

export interface OptimSettings {
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  warmupRatio: number;
  schedule: ScheduleKind;
  decayRatio: number;
  gradClip: number;
  gradAccum: number;
}

export interface LoopSettings {
  optim: OptimSettings;
  totalSteps: number;
  logEvery: number;
  checkpointEvery: number;
  keepLast: number;
  /** Evaluate every N optimizer steps (0: only at the end). */
  evalEvery: number;
  averaging: { kind: 'none' | 'ema' | 'lawa'; emaDecay: number; lawaK: number };
  seed: number;
}

/** One micro-batch, as the stage's loss function wants it; `tokens` counts the tokens it holds. */
export interface MicroBatch {
  tokens: number;
}

export interface LossTerms {
  /** The summed loss that is differentiated. */
  total: tf.Scalar;
  /** Every term by its paper name (ce, logitKd, attnKd, ...), before weighting. */
  terms: Record<string, tf.Scalar>;
}

export interface EvalResult {
  /** The headline metric (the task's first, on the first dev set): it picks the best checkpoint. */
  metric: string;
  value: number;
  examples: number;
  /** Every metric of the task by name (headline included; `_m` / `_mm` suffixes with several dev sets). */
  metrics?: Record<string, number>;
}

export interface StageSpec<B extends MicroBatch> {
  stage: string;
  stageDir: string;
  model: Decoder;
  nextBatch: () => B | Promise<B>;
  getCursor: () => unknown;
  setCursor: (cursor: unknown) => void;
  /** Current epoch of the data stream (for logs). */
  epoch: () => number;
  loss: (batch: B) => LossTerms;
  evaluate?: () => Promise<EvalResult>;
  /** Weights of the loss terms in the total (e.g. {logitKd: 10, attnKd: 1e5}); used to warn when one term drowns the CE. */
  termWeights?: Record<string, number>;
  /** Extra numbers for the periodic train record (e.g. latent-weight statistics of a student); null = none. */
  extraMetrics?: () => Record<string, unknown> | null;
  /** What to write next to every checkpoint. */
  resolvedYaml: string;
  tokenizerFrom: string;
  bitdistill: Record<string, unknown>;
}

export interface LoopHooks {
  logger?: Logger;
  /** Called after every optimizer step (progress bar). */
  onStep?: (p: { step: number; totalSteps: number; loss: number; lr: number; tokensPerSecond: number; etaSeconds: number }) => void;
  /** Called with every metrics record as it is written (periodic log lines when there is no progress bar). */
  onRecord?: (record: Record<string, unknown>) => void;
  /** Polled between steps; true saves a checkpoint and stops with an Interrupted error. */
  shouldStop?: () => boolean;
  /** Resume from the latest checkpoint if one exists (default true). */
  resume?: boolean;
  /** Resume from this checkpoint folder instead of the latest one. */
  resumeFrom?: string;
  /** Test hook for checkpoint writes. */
  writeHook?: WriteHook;
}

export class Interrupted extends BitDistillError {
  constructor(stage: string, step: number) {
    super('E_INTERRUPTED', `${stage}: interrupted at step ${step}; a checkpoint was saved`, { hint: 'run the same command again to resume (--resume auto)' });
    this.name = 'Interrupted';
  }
}

export interface StageResult {
  finalDir: string;
  state: TrainerState;
  eval: EvalResult | null;
  /** Peak RSS of the stage (its own when run.ts reset the high-water mark at its start), read after final/ is written. */
  memory: StagePeak;
}

/**
 * The records of a metrics.jsonl, and how many lines were not whole JSON objects (a kill -9 mid-append leaves a
 * torn last line): those are dropped, not a reason to refuse the resume.
 */
function readMetrics(file: string): { records: Record<string, unknown>[]; dropped: number } {
  if (!existsSync(file)) return { records: [], dropped: 0 };
  const records: Record<string, unknown>[] = [];
  let dropped = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const r: unknown = JSON.parse(line);
      if (r !== null && typeof r === 'object' && !Array.isArray(r)) records.push(r as Record<string, unknown>);
      else dropped++;
    } catch {
      dropped++;
    }
  }
  return { records, dropped };
}

export async function runStage<B extends MicroBatch>(spec: StageSpec<B>, settings: LoopSettings, hooks: LoopHooks = {}): Promise<StageResult> {
  const log = hooks.logger ?? silentLogger;
  const { model, stageDir } = spec;
  const o = settings.optim;
  mkdirSync(stageDir, { recursive: true });
  const metricsFile = join(stageDir, 'metrics.jsonl');
  const trainable = new Map([...model.params].filter(([, v]) => v.trainable));
  const vars = [...trainable.values()];
  const optimizer = new AdamW({ beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay });
  const ema = new Map<string, tf.Variable>();
  const rng = new Rng(settings.seed);
  const warmupSteps = Math.round(o.warmupRatio * settings.totalSteps);

  let state: TrainerState = {
    stage: spec.stage,
    step: 0,
    totalSteps: settings.totalSteps,
    epoch: 0,
    dataCursor: spec.getCursor(),
    rng: rng.getState(),
    bestMetric: null,
    bestStep: null,
    tokensSeen: 0,
    elapsedSeconds: 0,
  };

  for (const f of removeStaleTemporaries(stageDir)) log.warn({ stage: spec.stage, removed: f }, `removed ${f}, left by a process that was killed while writing`);
  const expect: CheckpointExpectation = {
    stage: spec.stage,
    params: new Map([...model.params].map(([k, v]) => [k, v.shape])),
    trainable: new Set(trainable.keys()),
  };
  let resumePoint: VerifiedCheckpoint | null = null;
  if (hooks.resumeFrom !== undefined) {
    resumePoint = verifyCheckpoint(hooks.resumeFrom, expect);
  } else if (hooks.resume !== false) {
    const rp = findResumePoint(stageDir, expect);
    for (const s of rp?.skipped ?? []) log.warn({ stage: spec.stage, checkpoint: s.dir, reason: s.reason }, `skipping checkpoint ${s.dir}: ${s.reason}`);
    resumePoint = rp;
  }
  if (resumePoint !== null && !resumePoint.checksums) log.warn({ stage: spec.stage, checkpoint: resumePoint.dir }, `${resumePoint.dir} has no ${MANIFEST_FILE} (written by an older version): its structure is checked, its bytes are not`);
  const latest = resumePoint?.dir ?? null;
  if (resumePoint !== null && latest !== null) {
    state = resumePoint.state;
    loadWeightsInto(model, latest);
    const opt = readOptimizerTensors(latest);
    const moments = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [k, t] of opt) {
      if (k.startsWith('ema.')) ema.set(k.slice(4), tf.variable(tf.tensor(t.data as Float32Array, [...t.shape]), false));
      else moments.set(k, { shape: t.shape, data: t.data as Float32Array });
    }
    optimizer.load(state.step, moments);
    try {
      spec.setCursor(state.dataCursor);
    } catch (e) {
      const file = join(latest, 'trainer_state.json');
      if (isBitDistillError(e) && e.message.startsWith(file)) throw e;
      throw new FormatError(file, `'dataCursor' does not fit this stage's data: ${(e as Error).message}`, { cause: e, hint: 'resume with the config the checkpoint was written with, or start the stage over (--resume none)' });
    }
    rng.setState(state.rng);
    // Metrics logged after the checkpoint are about to be redone: drop them.
    const { records, dropped } = readMetrics(metricsFile);
    if (dropped > 0) log.warn({ stage: spec.stage, file: metricsFile, dropped }, `${metricsFile}: dropped ${dropped} line(s) that were not whole JSON records (a write cut short)`);
    const kept = records.filter((r) => typeof r['step'] === 'number' && (r['step'] as number) <= state.step);
    writeFileSync(metricsFile, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    log.info({ stage: spec.stage, checkpoint: latest, step: state.step }, 'resuming from checkpoint');
  } else if (existsSync(metricsFile)) {
    writeFileSync(metricsFile, '');
  }

  const optimizerTensors = async (): Promise<Map<string, TensorEntry>> => {
    const st = await optimizer.state();
    const out = new Map<string, TensorEntry>();
    for (const [k, t] of st.tensors) out.set(k, { dtype: 'F32', shape: t.shape, data: t.data });
    for (const [k, v] of ema) out.set(`ema.${k}`, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
    return out;
  };
  const checkpoint = async (): Promise<string> => {
    // Never write (and never move `latest` to) a checkpoint that holds a non-finite number: an update can
    // overflow the weights or the moments while the loss that produced it was still finite.
    const optTensors = await optimizerTensors();
    const bad: string[] = [];
    for (const [name, p] of model.params) if (firstNonFinite((await p.data()) as Float32Array) >= 0) bad.push(name);
    const badOpt = [...optTensors].filter(([, t]) => t.data instanceof Float32Array && firstNonFinite(t.data) >= 0).map(([k]) => k);
    if (bad.length + badOpt.length > 0) {
      throw new BitDistillError(
        'E_NUMERIC',
        `${spec.stage}: after step ${state.step}, ${bad.length} parameter(s) and ${badOpt.length} optimizer tensor(s) hold NaN or infinity (e.g. ${[...bad, ...badOpt].slice(0, 3).join(', ')}); no checkpoint written`,
        { hint: `the last good checkpoint is kept (${latestCheckpoint(stageDir) ?? 'none yet'}); lower optim.lr, set optim.gradClip > 0, then resume` },
      );
    }
    state.dataCursor = spec.getCursor();
    state.rng = rng.getState();
    const keep = state.bestStep !== null ? [`step-${String(state.bestStep).padStart(6, '0')}`] : [];
    const keepLast = settings.averaging.kind === 'lawa' ? Math.max(settings.keepLast, settings.averaging.lawaK) : settings.keepLast;
    return saveCheckpoint(
      stageDir,
      { model, optimizer: optTensors, state, resolvedYaml: spec.resolvedYaml, tokenizerFrom: spec.tokenizerFrom, bitdistill: spec.bitdistill },
      keepLast,
      keep,
      hooks.writeHook,
    );
  };
  const record = (r: Record<string, unknown>) => {
    appendFileSync(metricsFile, `${JSON.stringify(r)}\n`);
    hooks.onRecord?.({ stage: spec.stage, ...r });
  };
  const evaluate = async (): Promise<EvalResult | null> => {
    if (spec.evaluate === undefined) return null;
    const res = await spec.evaluate();
    const all = res.metrics ?? { [res.metric]: res.value };
    record({ type: 'eval', step: state.step, epoch: spec.epoch(), metric: res.metric, value: res.value, examples: res.examples, metrics: all });
    log.info({ stage: spec.stage, step: state.step, ...Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Number(v.toFixed(4))])) }, 'eval');
    return res;
  };

  const t0 = performance.now() / 1000 - state.elapsedSeconds;
  let windowStart = performance.now() / 1000;
  let windowTokens = 0;
  let stepsThisProcess = 0;
  const processStart = performance.now() / 1000;
  let lastEval: EvalResult | null = null;

  // An allocation that fails despite the memory check (another process took the RAM, an estimate too low)
  // surfaces as a typed error naming the stage and step; checkpoints are written atomically, so the last one
  // is intact and `--resume auto` continues from it.
  try {
  while (state.step < settings.totalSteps) {
    // Yield to the event loop once per step: tfjs work resolves as microtasks, and signal handlers
    // (SIGINT/SIGTERM -> shouldStop) only run when the macrotask queue gets a turn.
    await new Promise((resolve) => setImmediate(resolve));
    if (hooks.shouldStop?.() === true) {
      await checkpoint();
      throw new Interrupted(spec.stage, state.step);
    }

    // --- one optimizer step: accumulate gradients over gradAccum micro-batches ---
    let gradSum: Record<string, tf.Tensor> | null = null;
    const termSums: Record<string, number> = {};
    let lossSum = 0;
    for (let a = 0; a < o.gradAccum; a++) {
      const batch = await spec.nextBatch();
      windowTokens += batch.tokens;
      state.tokensSeen += batch.tokens;
      const kept: Record<string, tf.Scalar> = {};
      const { value, grads: byVarName } = tf.variableGrads(() => {
        const { total, terms } = spec.loss(batch);
        for (const [k, t] of Object.entries(terms)) kept[k] = tf.keep(t);
        return total;
      }, vars);
      // tfjs keys gradients by its own variable names; the rest of the loop uses the HF parameter names.
      const grads: Record<string, tf.Tensor> = {};
      for (const [name, v] of trainable) {
        const g = byVarName[v.name];
        if (g !== undefined) grads[name] = g;
      }
      const totalValue = (await value.data())[0] as number;
      const termValues: Record<string, number> = {};
      for (const [k, t] of Object.entries(kept)) termValues[k] = (await t.data())[0] as number;
      // A term may be the very tensor returned as the total: dispose only after reading them all.
      tf.dispose([value, ...Object.values(kept)]);
      if (!Number.isFinite(totalValue)) {
        tf.dispose(Object.values(grads));
        if (gradSum !== null) tf.dispose(Object.values(gradSum));
        const bad = Object.entries(termValues).filter(([, v]) => !Number.isFinite(v)).map(([k, v]) => `${k}=${v}`);
        throw new BitDistillError('E_NUMERIC', `${spec.stage}: the loss became ${totalValue} at step ${state.step + 1} (${bad.length > 0 ? bad.join(', ') : 'the weighted sum overflowed'})`, {
          hint: `the last good checkpoint is kept (${latestCheckpoint(stageDir) ?? 'none yet'}); lower optim.lr or the loss weights, then resume`,
        });
      }
      lossSum += totalValue;
      for (const [k, v] of Object.entries(termValues)) termSums[k] = (termSums[k] ?? 0) + v;
      if (gradSum === null) gradSum = grads;
      else {
        // One parameter at a time, so no more than one parameter's extra copy is alive (0.6B: 2.4 GB a copy).
        for (const k of Object.keys(gradSum)) {
          const prev = gradSum[k] as tf.Tensor;
          gradSum[k] = tf.add(prev, grads[k] as tf.Tensor);
          tf.dispose([prev, grads[k] as tf.Tensor]);
        }
      }
    }
    const summed = gradSum as Record<string, tf.Tensor>;
    // Averaging over micro-batches and clipping become one scale the optimizer applies as it reads each
    // gradient: no averaged or clipped copy of every gradient.
    const { norm, scale } = clipScale(summed, o.gradClip, o.gradAccum);
    if (!Number.isFinite(norm)) {
      // A finite loss with a non-finite gradient (an overflow in the backward pass): stop before the update.
      tf.dispose(Object.values(summed));
      throw new BitDistillError('E_NUMERIC', `${spec.stage}: the gradient norm became ${norm} at step ${state.step + 1} (loss ${lossSum / o.gradAccum})`, {
        hint: `the last good checkpoint is kept (${latestCheckpoint(stageDir) ?? 'none yet'}); lower optim.lr or the loss weights, then resume`,
      });
    }
    const lr = learningRate({ kind: o.schedule, peakLr: o.lr, totalSteps: settings.totalSteps, warmupSteps, decayRatio: o.decayRatio }, state.step);
    optimizer.apply(trainable, summed, lr, scale);
    tf.dispose(Object.values(summed));
    if (settings.averaging.kind === 'ema') {
      tf.tidy(() => {
        for (const [name, p] of trainable) {
          const s = ema.get(name);
          if (s === undefined) ema.set(name, tf.variable(p.clone(), false));
          else s.assign(tf.add(tf.mul(s, settings.averaging.emaDecay), tf.mul(p, 1 - settings.averaging.emaDecay)));
        }
      });
    }
    state.step += 1;
    stepsThisProcess += 1;
    state.epoch = spec.epoch();
    state.elapsedSeconds = performance.now() / 1000 - t0;

    const loss = lossSum / o.gradAccum;
    if (stepsThisProcess === 1 && spec.termWeights !== undefined && termSums['ce'] !== undefined) {
      // The paper's loss weights were set for Qwen3 at 0.6B-4B; on other widths and lengths a distillation term
      // can be orders of magnitude larger than the CE it should support (docs/results/small-scale.md).
      const ce = Math.abs(termSums['ce'] / o.gradAccum);
      for (const [k, w] of Object.entries(spec.termWeights)) {
        const v = termSums[k];
        if (v === undefined) continue;
        const weighted = Math.abs((w * v) / o.gradAccum);
        if (weighted > 20 * ce) {
          log.warn({ stage: spec.stage, term: k, weight: w, weighted: Number(weighted.toPrecision(3)), ce: Number(ce.toPrecision(3)) }, `${k} x ${w} is ${Math.round(weighted / Math.max(ce, 1e-12))}x the CE term at the first step: the task loss will barely move; consider a smaller weight`);
        }
      }
    }
    const now = performance.now() / 1000;
    const tps = windowTokens / Math.max(1e-9, now - windowStart);
    const eta = ((settings.totalSteps - state.step) * (now - processStart)) / stepsThisProcess;
    hooks.onStep?.({ step: state.step, totalSteps: settings.totalSteps, loss, lr, tokensPerSecond: tps, etaSeconds: Math.min(eta, 1e7) });
    if (state.step % settings.logEvery === 0 || state.step === settings.totalSteps) {
      const terms = Object.fromEntries(Object.entries(termSums).map(([k, v]) => [k, v / o.gradAccum]));
      const rec = { type: 'train', step: state.step, epoch: state.epoch, loss, ...terms, lr, gradNorm: norm, tokensPerSecond: Math.round(tps), elapsed: Number(state.elapsedSeconds.toFixed(2)), ...(spec.extraMetrics?.() ?? {}) };
      record(rec);
      log.debug(rec, `${spec.stage} step ${state.step}/${settings.totalSteps}`);
      windowStart = now;
      windowTokens = 0;
    }
    const isLast = state.step === settings.totalSteps;
    if (settings.evalEvery > 0 && state.step % settings.evalEvery === 0 && !isLast) {
      lastEval = await evaluate();
      if (lastEval !== null && (state.bestMetric === null || lastEval.value > state.bestMetric)) {
        state.bestMetric = lastEval.value;
        state.bestStep = state.step;
        await checkpoint();
        continue;
      }
    }
    if (state.step % settings.checkpointEvery === 0 && !isLast) await checkpoint();
  }
  } catch (e) {
    throw outOfMemory(e, spec.stage, state.step + 1, stageDir) ?? e;
  }

  // --- end of stage: weight averaging, final evaluation, final/ ---
  if (settings.averaging.kind === 'ema' && ema.size > 0) {
    for (const [name, s] of ema) tf.tidy(() => (trainable.get(name) as tf.Variable).assign(s));
    log.info({ stage: spec.stage }, 'final weights: EMA of the training trajectory');
  } else if (settings.averaging.kind === 'lawa') {
    await checkpoint();
    const last = listCheckpoints(stageDir).slice(-settings.averaging.lawaK);
    await averageCheckpointsInto(model, last);
    log.info({ stage: spec.stage, checkpoints: last.length }, 'final weights: LAWA average of the last checkpoints');
  }
  lastEval = await evaluate();
  if (lastEval !== null && (state.bestMetric === null || lastEval.value > state.bestMetric)) {
    state.bestMetric = lastEval.value;
    state.bestStep = state.step;
  }
  const finalDir = join(stageDir, 'final');
  state.dataCursor = spec.getCursor();
  state.rng = rng.getState();
  await writeCheckpointDir(finalDir, {
    model,
    optimizer: null,
    state,
    resolvedYaml: spec.resolvedYaml,
    tokenizerFrom: spec.tokenizerFrom,
    bitdistill: { ...spec.bitdistill, stage: spec.stage, finalEval: lastEval },
  });
  // Peak RSS, read after the last checkpoint write (its serialised copies count): a metrics record without a
  // `step` key (it is not a training step; a resume drops it with the records it redoes).
  const memory = readStagePeak();
  record({ type: 'memory', steps: state.step, backend: tf.getBackend(), ...memory });
  log.info({ stage: spec.stage, ...memory }, `${spec.stage}: peak RSS ${memory.peakRssMiB} MiB${memory.scope === 'stage' ? '' : ' (process peak)'}`);
  optimizer.dispose();
  for (const v of ema.values()) v.dispose();
  return { finalDir, state, eval: lastEval, memory };
}

/** LAWA: set the model's weights to the mean of the given checkpoints' weights. */
export async function averageCheckpointsInto(model: Decoder, dirs: readonly string[]): Promise<void> {
  if (dirs.length === 0) return;
  const sums = new Map<string, tf.Tensor>();
  for (const d of dirs) {
    loadWeightsInto(model, d);
    for (const [name, p] of model.params) {
      const prev = sums.get(name);
      sums.set(name, prev === undefined ? p.clone() : tf.tidy(() => tf.add(prev, p)));
      prev?.dispose();
    }
  }
  for (const [name, s] of sums) {
    tf.tidy(() => model.param(name).assign(tf.div(s, dirs.length)));
    s.dispose();
  }
}

/** Index of the first NaN or infinity in a, or -1. */
function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) return i;
  return -1;
}
