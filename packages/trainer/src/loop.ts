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
import { bf16GradAvailable, setGradPrecision, type GradPrecision } from '@bitdistill/kernels-cpu/engine';
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
  /** The backward products' precision (optim.gradPrecision): BitLinear, dense linears, the head; fp32 when absent. */
  gradPrecision?: GradPrecision;
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
  /** Called before each optimizer step with the number of steps done (Metis refreshes its spectral split here). */
  beforeStep?: (step: number) => void;
  /**
   * Rewrites the summed gradients of a step before clipping and AdamW (Metis's spectral learning-rate rule); it
   * owns the record it is given and disposes what it replaces.
   */
  transformGrads?: (grads: Record<string, tf.Tensor>) => Record<string, tf.Tensor>;
  /** Extra numbers for the periodic train record (e.g. latent-weight statistics of a student); null = none. */
  extraMetrics?: () => Promise<Record<string, unknown> | null>;
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

/**
 * What the steps of one stage share: the pieces built once at the start, the trainer state that checkpoints
 * save, and the counters the loop moves (the tokens-per-second window, the steps of this process).
 */
interface StageRun<B extends MicroBatch> {
  readonly spec: StageSpec<B>;
  readonly settings: LoopSettings;
  readonly hooks: LoopHooks;
  readonly log: Logger;
  readonly metricsFile: string;
  /** The trainable parameters by HF name, and the same variables as a list for tf.variableGrads. */
  readonly trainable: Map<string, tf.Variable>;
  readonly vars: tf.Variable[];
  readonly optimizer: AdamW;
  /** EMA shadow weights by parameter name (filled at the first step, or restored from a checkpoint). */
  readonly ema: Map<string, tf.Variable>;
  readonly rng: Rng;
  readonly warmupSteps: number;
  /** Replaced by the checkpoint's on resume; mutated in place by every step. */
  state: TrainerState;
  /** Clock (seconds) at which the stage would have started had it never stopped; set by resume(). */
  t0: number;
  /** Start (seconds) and token count of the current tokens-per-second window. */
  windowStart: number;
  windowTokens: number;
  /** Optimizer steps taken by this process, and when it started taking them (seconds; for the ETA). */
  stepsThisProcess: number;
  processStart: number;
}

/** The summed gradients of one optimizer step and its loss / terms summed over the micro-batches. */
interface Accumulated {
  summed: Record<string, tf.Tensor>;
  termSums: Record<string, number>;
  lossSum: number;
}

/** Runs one stage to totalSteps: resume, then accumulate + afterStep per optimizer step until done or stopped, then finish. */
export async function runStage<B extends MicroBatch>(spec: StageSpec<B>, settings: LoopSettings, hooks: LoopHooks = {}): Promise<StageResult> {
  const run = newRun(spec, settings, hooks);
  useGradPrecision(settings.optim.gradPrecision ?? 'fp32', spec.stage, run.log);
  // An allocation that fails despite the memory check (another process took the RAM, an estimate too low)
  // surfaces as a typed error naming the stage and step; checkpoints are written atomically, so the last one
  // is intact and `--resume auto` continues from it. A stage that fails releases its optimizer moments and EMA
  // weights, so that a process going on (a test, a caller that catches) does not keep them.
  try {
    resume(run);
    while (run.state.step < settings.totalSteps) {
      // Yield to the event loop once per step: tfjs work resolves as microtasks, and signal handlers
      // (SIGINT/SIGTERM -> shouldStop) only run when the macrotask queue gets a turn.
      await new Promise((resolve) => setImmediate(resolve));
      if (hooks.shouldStop?.() === true) {
        await checkpoint(run);
        throw new Interrupted(spec.stage, run.state.step);
      }
      spec.beforeStep?.(run.state.step);
      await afterStep(run, await accumulate(run));
    }
    return await finish(run);
  } catch (e) {
    release(run);
    throw outOfMemory(e, spec.stage, run.state.step + 1, spec.stageDir) ?? e;
  } finally {
    setGradPrecision('fp32'); // process-wide in the kernels: the next stage (or caller) starts from the default
  }
}

/**
 * Sets the kernels' backward-product precision for this stage (the fused BitLinear backward, the dense linears'
 * and the head's dx / dW); bf16 where the CPU cannot (no AVX512_BF16, or a backend other than the native CPU
 * engine) warns and stays fp32 rather than failing the run.
 */
function useGradPrecision(p: GradPrecision, stage: string, log: Logger): void {
  if (p === 'fp32') {
    setGradPrecision('fp32');
    return;
  }
  const backend = tf.getBackend();
  if (backend === 'webgpu' || backend === 'tensorflow') {
    log.warn({ stage, backend }, `optim.gradPrecision: bf16 applies to the CPU engine's backward products; the ${backend} backend keeps its own precision`);
    return;
  }
  if (!bf16GradAvailable() || !setGradPrecision('bf16')) {
    log.warn(
      { stage },
      'optim.gradPrecision: bf16 needs AVX512_BF16 (Zen 4, Sapphire Rapids and later) and the native kernels; this CPU runs the backward products in fp32',
    );
    return;
  }
  log.info({ stage }, 'backward products in bf16 (optim.gradPrecision; AVX512_BF16): BitLinear, dense linears, the head');
}

/** Disposes the optimizer's moments and the EMA weights (once; finish() and a failed stage both call it). */
function release<B extends MicroBatch>(run: StageRun<B>): void {
  run.optimizer.dispose();
  for (const v of run.ema.values()) v.dispose();
  run.ema.clear();
}

/** Creates the stage folder, the optimizer and RNG, and a fresh state at step 0 (resume() may replace it). */
function newRun<B extends MicroBatch>(spec: StageSpec<B>, settings: LoopSettings, hooks: LoopHooks): StageRun<B> {
  const log = hooks.logger ?? silentLogger;
  const o = settings.optim;
  mkdirSync(spec.stageDir, { recursive: true });
  const metricsFile = join(spec.stageDir, 'metrics.jsonl');
  const trainable = new Map([...spec.model.params].filter(([, v]) => v.trainable));
  const vars = [...trainable.values()];
  const optimizer = new AdamW({ beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay });
  const ema = new Map<string, tf.Variable>();
  const rng = new Rng(settings.seed);
  const warmupSteps = Math.round(o.warmupRatio * settings.totalSteps);
  const state: TrainerState = {
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
  return {
    spec,
    settings,
    hooks,
    log,
    metricsFile,
    trainable,
    vars,
    optimizer,
    ema,
    rng,
    warmupSteps,
    state,
    t0: 0,
    windowStart: 0,
    windowTokens: 0,
    stepsThisProcess: 0,
    processStart: 0,
  };
}

/** Restores weights, moments, EMA, data cursor and RNG from the resume checkpoint, rewrites metrics.jsonl to match, and starts the clock. */
function resume<B extends MicroBatch>(run: StageRun<B>): void {
  const { spec, log, metricsFile } = run;
  const { model } = spec;
  const resumePoint = resumePointOf(run);
  const latest = resumePoint?.dir ?? null;
  if (resumePoint !== null && latest !== null) {
    const state = resumePoint.state;
    run.state = state;
    loadWeightsInto(model, latest);
    const opt = readOptimizerTensors(latest);
    const moments = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [k, t] of opt) {
      if (k.startsWith('ema.')) run.ema.set(k.slice(4), tf.variable(tf.tensor(t.data as Float32Array, [...t.shape]), false));
      else moments.set(k, { shape: t.shape, data: t.data as Float32Array });
    }
    run.optimizer.load(state.step, moments);
    try {
      spec.setCursor(state.dataCursor);
    } catch (e) {
      const file = join(latest, 'trainer_state.json');
      if (isBitDistillError(e) && e.message.startsWith(file)) throw e;
      throw new FormatError(file, `'dataCursor' does not fit this stage's data: ${(e as Error).message}`, {
        cause: e,
        hint: 'resume with the config the checkpoint was written with, or start the stage over (--resume none)',
      });
    }
    run.rng.setState(state.rng);
    // Metrics logged after the checkpoint are about to be redone: drop them.
    const { records, dropped } = readMetrics(metricsFile);
    if (dropped > 0)
      log.warn(
        { stage: spec.stage, file: metricsFile, dropped },
        `${metricsFile}: dropped ${dropped} line(s) that were not whole JSON records (a write cut short)`,
      );
    const kept = records.filter((r) => typeof r['step'] === 'number' && (r['step'] as number) <= state.step);
    writeFileSync(metricsFile, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    log.info({ stage: spec.stage, checkpoint: latest, step: state.step }, 'resuming from checkpoint');
  } else if (existsSync(metricsFile)) {
    writeFileSync(metricsFile, '');
  }

  run.t0 = performance.now() / 1000 - run.state.elapsedSeconds;
  run.windowStart = performance.now() / 1000;
  run.processStart = performance.now() / 1000;
}

/** Removes temporaries of killed writers and picks the verified checkpoint to resume from (--resume PATH, the newest intact one, or none). */
function resumePointOf<B extends MicroBatch>(run: StageRun<B>): VerifiedCheckpoint | null {
  const { spec, hooks, log } = run;
  const { model, stageDir } = spec;
  for (const f of removeStaleTemporaries(stageDir))
    log.warn({ stage: spec.stage, removed: f }, `removed ${f}, left by a process that was killed while writing`);
  const expect: CheckpointExpectation = {
    stage: spec.stage,
    params: new Map([...model.params].map(([k, v]) => [k, v.shape])),
    trainable: new Set(run.trainable.keys()),
  };
  let resumePoint: VerifiedCheckpoint | null = null;
  if (hooks.resumeFrom !== undefined) {
    resumePoint = verifyCheckpoint(hooks.resumeFrom, expect);
  } else if (hooks.resume !== false) {
    const rp = findResumePoint(stageDir, expect);
    for (const s of rp?.skipped ?? []) log.warn({ stage: spec.stage, checkpoint: s.dir, reason: s.reason }, `skipping checkpoint ${s.dir}: ${s.reason}`);
    resumePoint = rp;
  }
  if (resumePoint !== null && !resumePoint.checksums)
    log.warn(
      { stage: spec.stage, checkpoint: resumePoint.dir },
      `${resumePoint.dir} has no ${MANIFEST_FILE} (written by an older version): its structure is checked, its bytes are not`,
    );
  return resumePoint;
}

/** One optimizer step's gradients: forward/backward over gradAccum micro-batches, summed one parameter at a time; stops on a non-finite loss. */
async function accumulate<B extends MicroBatch>(run: StageRun<B>): Promise<Accumulated> {
  const { spec, state } = run;
  let gradSum: Record<string, tf.Tensor> | null = null;
  const termSums: Record<string, number> = {};
  let lossSum = 0;
  for (let a = 0; a < run.settings.optim.gradAccum; a++) {
    const batch = await spec.nextBatch();
    run.windowTokens += batch.tokens;
    state.tokensSeen += batch.tokens;
    const { grads, totalValue, termValues } = await forwardBackward(run, batch);
    if (!Number.isFinite(totalValue)) {
      tf.dispose(Object.values(grads));
      if (gradSum !== null) tf.dispose(Object.values(gradSum));
      const bad = Object.entries(termValues)
        .filter(([, v]) => !Number.isFinite(v))
        .map(([k, v]) => `${k}=${v}`);
      throw new BitDistillError(
        'E_NUMERIC',
        `${spec.stage}: the loss became ${totalValue} at step ${state.step + 1} (${bad.length > 0 ? bad.join(', ') : 'the weighted sum overflowed'})`,
        {
          hint: `the last good checkpoint is kept (${latestCheckpoint(spec.stageDir) ?? 'none yet'}); lower optim.lr or the loss weights, then resume`,
        },
      );
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
  return { summed: gradSum as Record<string, tf.Tensor>, termSums, lossSum };
}

/** Forward and backward on one micro-batch: its gradients by parameter name, its loss and its terms read back as numbers. */
async function forwardBackward<B extends MicroBatch>(
  run: StageRun<B>,
  batch: B,
): Promise<{ grads: Record<string, tf.Tensor>; totalValue: number; termValues: Record<string, number> }> {
  const kept: Record<string, tf.Scalar> = {};
  const { value, grads: byVarName } = tf.variableGrads(() => {
    const { total, terms } = run.spec.loss(batch);
    for (const [k, t] of Object.entries(terms)) kept[k] = tf.keep(t);
    return total;
  }, run.vars);
  // tfjs keys gradients by its own variable names; the rest of the loop uses the HF parameter names.
  const grads: Record<string, tf.Tensor> = {};
  for (const [name, v] of run.trainable) {
    const g = byVarName[v.name];
    if (g !== undefined) grads[name] = g;
  }
  const totalValue = (await value.data())[0] as number;
  const termValues: Record<string, number> = {};
  for (const [k, t] of Object.entries(kept)) termValues[k] = (await t.data())[0] as number;
  // A term may be the very tensor returned as the total: dispose only after reading them all.
  tf.dispose([value, ...Object.values(kept)]);
  return { grads, totalValue, termValues };
}

/** Everything after the gradients: NaN guard, clip, AdamW step, EMA, first-step weight warning, progress/log, eval and best tracking, checkpoint. */
async function afterStep<B extends MicroBatch>(run: StageRun<B>, acc: Accumulated): Promise<void> {
  const { spec, settings, state } = run;
  const { norm, lr } = await optimizerStep(run, acc);
  state.step += 1;
  run.stepsThisProcess += 1;
  state.epoch = spec.epoch();
  state.elapsedSeconds = performance.now() / 1000 - run.t0;

  const loss = acc.lossSum / settings.optim.gradAccum;
  if (run.stepsThisProcess === 1) warnTermWeights(run, acc.termSums);
  await report(run, loss, lr, norm, acc.termSums);
  const isLast = state.step === settings.totalSteps;
  if (settings.evalEvery > 0 && state.step % settings.evalEvery === 0 && !isLast) {
    const res = await evaluate(run);
    if (res !== null && (state.bestMetric === null || res.value > state.bestMetric)) {
      state.bestMetric = res.value;
      state.bestStep = state.step;
      await checkpoint(run);
      return;
    }
  }
  if (state.step % settings.checkpointEvery === 0 && !isLast) await checkpoint(run);
}

/** Applies the stage's gradient transform, averages and clips the summed gradients into one scale, stops on a non-finite norm, applies AdamW and updates the EMA; disposes the gradients. */
async function optimizerStep<B extends MicroBatch>(run: StageRun<B>, acc: Accumulated): Promise<{ norm: number; lr: number }> {
  const { spec, settings, state } = run;
  const o = settings.optim;
  const { lossSum } = acc;
  const summed = spec.transformGrads?.(acc.summed) ?? acc.summed;
  // Averaging over micro-batches and clipping become one scale the optimizer applies as it reads each
  // gradient: no averaged or clipped copy of every gradient.
  const { norm, scale } = await clipScale(summed, o.gradClip, o.gradAccum);
  if (!Number.isFinite(norm)) {
    // A finite loss with a non-finite gradient (an overflow in the backward pass): stop before the update.
    tf.dispose(Object.values(summed));
    throw new BitDistillError('E_NUMERIC', `${spec.stage}: the gradient norm became ${norm} at step ${state.step + 1} (loss ${lossSum / o.gradAccum})`, {
      hint: `the last good checkpoint is kept (${latestCheckpoint(spec.stageDir) ?? 'none yet'}); lower optim.lr or the loss weights, then resume`,
    });
  }
  const lr = learningRate(
    { kind: o.schedule, peakLr: o.lr, totalSteps: settings.totalSteps, warmupSteps: run.warmupSteps, decayRatio: o.decayRatio },
    state.step,
  );
  run.optimizer.apply(run.trainable, summed, lr, scale);
  tf.dispose(Object.values(summed));
  if (settings.averaging.kind === 'ema') {
    const decay = settings.averaging.emaDecay;
    tf.tidy(() => {
      for (const [name, p] of run.trainable) {
        const s = run.ema.get(name);
        if (s === undefined) run.ema.set(name, tf.variable(p.clone(), false));
        else s.assign(tf.add(tf.mul(s, decay), tf.mul(p, 1 - decay)));
      }
    });
  }
  return { norm, lr };
}

/** At the first step of a process: warns when a weighted loss term is more than 20x the CE. */
function warnTermWeights<B extends MicroBatch>(run: StageRun<B>, termSums: Record<string, number>): void {
  const { spec } = run;
  const gradAccum = run.settings.optim.gradAccum;
  if (spec.termWeights === undefined || termSums['ce'] === undefined) return;
  // The paper's loss weights were set for Qwen3 at 0.6B-4B; on other widths and lengths a distillation term
  // can be orders of magnitude larger than the CE it should support (docs/results/small-scale.md).
  const ce = Math.abs(termSums['ce'] / gradAccum);
  for (const [k, w] of Object.entries(spec.termWeights)) {
    const v = termSums[k];
    if (v === undefined) continue;
    const weighted = Math.abs((w * v) / gradAccum);
    if (weighted > 20 * ce) {
      run.log.warn(
        { stage: spec.stage, term: k, weight: w, weighted: Number(weighted.toPrecision(3)), ce: Number(ce.toPrecision(3)) },
        `${k} x ${w} is ${Math.round(weighted / Math.max(ce, 1e-12))}x the CE term at the first step: the task loss will barely move; consider a smaller weight`,
      );
    }
  }
}

/** Progress callback every step; a train record (metrics.jsonl, onRecord, debug log) every logEvery steps and at the last. */
async function report<B extends MicroBatch>(run: StageRun<B>, loss: number, lr: number, norm: number, termSums: Record<string, number>): Promise<void> {
  const { spec, settings, state } = run;
  const now = performance.now() / 1000;
  const tps = run.windowTokens / Math.max(1e-9, now - run.windowStart);
  const eta = ((settings.totalSteps - state.step) * (now - run.processStart)) / run.stepsThisProcess;
  run.hooks.onStep?.({ step: state.step, totalSteps: settings.totalSteps, loss, lr, tokensPerSecond: tps, etaSeconds: Math.min(eta, 1e7) });
  if (state.step % settings.logEvery === 0 || state.step === settings.totalSteps) {
    const terms = Object.fromEntries(Object.entries(termSums).map(([k, v]) => [k, v / settings.optim.gradAccum]));
    const rec = {
      type: 'train',
      step: state.step,
      epoch: state.epoch,
      loss,
      ...terms,
      lr,
      gradNorm: norm,
      tokensPerSecond: Math.round(tps),
      elapsed: Number(state.elapsedSeconds.toFixed(2)),
      ...((await spec.extraMetrics?.()) ?? {}),
    };
    record(run, rec);
    run.log.debug(rec, `${spec.stage} step ${state.step}/${settings.totalSteps}`);
    run.windowStart = now;
    run.windowTokens = 0;
  }
}

/** End of stage: EMA or LAWA final weights, final evaluation, final/, the peak-RSS record, and disposal of optimizer and EMA. */
async function finish<B extends MicroBatch>(run: StageRun<B>): Promise<StageResult> {
  const { spec, settings, state, log } = run;
  const { model, stageDir } = spec;
  if (settings.averaging.kind === 'ema' && run.ema.size > 0) {
    for (const [name, s] of run.ema) tf.tidy(() => (run.trainable.get(name) as tf.Variable).assign(s));
    log.info({ stage: spec.stage }, 'final weights: EMA of the training trajectory');
  } else if (settings.averaging.kind === 'lawa') {
    await checkpoint(run);
    const last = listCheckpoints(stageDir).slice(-settings.averaging.lawaK);
    await averageCheckpointsInto(model, last);
    log.info({ stage: spec.stage, checkpoints: last.length }, 'final weights: LAWA average of the last checkpoints');
  }
  const lastEval = await evaluate(run);
  if (lastEval !== null && (state.bestMetric === null || lastEval.value > state.bestMetric)) {
    state.bestMetric = lastEval.value;
    state.bestStep = state.step;
  }
  const finalDir = join(stageDir, 'final');
  state.dataCursor = spec.getCursor();
  state.rng = run.rng.getState();
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
  record(run, { type: 'memory', steps: state.step, backend: tf.getBackend(), ...memory });
  log.info({ stage: spec.stage, ...memory }, `${spec.stage}: peak RSS ${memory.peakRssMiB} MiB${memory.scope === 'stage' ? '' : ' (process peak)'}`);
  release(run);
  return { finalDir, state, eval: lastEval, memory };
}

/** The optimizer's moments and the EMA weights (as `ema.<name>`) as checkpoint tensors. */
async function optimizerTensors<B extends MicroBatch>(run: StageRun<B>): Promise<Map<string, TensorEntry>> {
  const st = await run.optimizer.state();
  const out = new Map<string, TensorEntry>();
  for (const [k, t] of st.tensors) out.set(k, { dtype: 'F32', shape: t.shape, data: t.data });
  for (const [k, v] of run.ema) out.set(`ema.${k}`, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  return out;
}

/** Writes a checkpoint of the current step (refusing one that holds NaN or infinity) and prunes old ones; returns its folder. */
async function checkpoint<B extends MicroBatch>(run: StageRun<B>): Promise<string> {
  const { spec, settings, state } = run;
  const { model, stageDir } = spec;
  // Never write (and never move `latest` to) a checkpoint that holds a non-finite number: an update can
  // overflow the weights or the moments while the loss that produced it was still finite.
  const optTensors = await optimizerTensors(run);
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
  state.rng = run.rng.getState();
  const keep = state.bestStep !== null ? [`step-${String(state.bestStep).padStart(6, '0')}`] : [];
  const keepLast = settings.averaging.kind === 'lawa' ? Math.max(settings.keepLast, settings.averaging.lawaK) : settings.keepLast;
  return saveCheckpoint(
    stageDir,
    { model, optimizer: optTensors, state, resolvedYaml: spec.resolvedYaml, tokenizerFrom: spec.tokenizerFrom, bitdistill: spec.bitdistill },
    keepLast,
    keep,
    run.hooks.writeHook,
  );
}

/** Appends a record to metrics.jsonl and hands it (with the stage name) to onRecord. */
function record<B extends MicroBatch>(run: StageRun<B>, r: Record<string, unknown>): void {
  appendFileSync(run.metricsFile, `${JSON.stringify(r)}\n`);
  run.hooks.onRecord?.({ stage: run.spec.stage, ...r });
}

/** Runs the stage's evaluation (null without one), recording and logging every metric. */
async function evaluate<B extends MicroBatch>(run: StageRun<B>): Promise<EvalResult | null> {
  const { spec, state } = run;
  if (spec.evaluate === undefined) return null;
  const res = await spec.evaluate();
  const all = res.metrics ?? { [res.metric]: res.value };
  record(run, { type: 'eval', step: state.step, epoch: spec.epoch(), metric: res.metric, value: res.value, examples: res.examples, metrics: all });
  run.log.info({ stage: spec.stage, step: state.step, ...Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Number(v.toFixed(4))])) }, 'eval');
  return res;
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
