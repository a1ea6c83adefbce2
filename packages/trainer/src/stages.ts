/**
 * The BitDistill stages (pretrain, then the paper's four: PAPER.md sections 3-5), each a plain function that builds its model(s), writes
 * its loss out term by term, and hands the steps to runStage:
 *
 *   pretrain            full-precision next-token LM on the corpus (a base model from scratch)   L = CE
 *   teacher             full-precision SFT on the task                        L = CE
 *   bitnet-sft          ternary student, no SubLN, no continual pre-training  L = CE
 *   continual-pretrain  ternary student with SubLN, next-token LM on corpus   L = CE
 *   distill             student from continual-pretrain, frozen teacher       L = CE + lambdaLogit*LD + gammaAttn*AD
 *
 * The models stop at their final normed hidden rows (Decoder.forward output 'hidden'); CE and logit KD apply
 * the vocabulary head in row chunks (losses' fusedHeadLoss, optim.lossChunkRows), so no [B*T, V] logits exist:
 * at Qwen3's 151,936-token vocabulary one such tensor is 622 MB at 8 x 128 tokens. The frozen teacher runs off
 * the gradient tape (losses' untaped): only its final hidden rows and the distilled layer's Q/K/V outlive its
 * forward.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, BitDistillError, ConfigError, FormatError, NotFoundError, type Logger } from '@bitdistill/core';
import type { TrainConfig, StageName } from '@bitdistill/config';
import { devFiles, encodeExample, readExamples, taskRecord, taskTokenizerProblems, type Example, type TaskSpec, type Tokenizer } from '@bitdistill/data';
import { loadModel, type Decoder } from '@bitdistill/model';
import { applyLowBitGemm, applyMetis, latentWeightStats, prepareStudent, restoreStudent, type MetisTraining } from '@bitdistill/quant';
import { ternaryStatsF32 } from '@bitdistill/kernels-cpu/engine';
import { attentionRelationKd, fusedHeadLoss, untaped, type QKV, type Relation } from '@bitdistill/losses';
import { taskForModel } from '@bitdistill/eval';
import { evaluateLabelScoring } from './evaluate.ts';
import { runStage, type LoopHooks, type LoopSettings, type LossTerms, type StageResult, type StageSpec } from './loop.ts';
import { LmStream, SftStream, type SftMicroBatch } from './streams.ts';

export interface StageContext {
  config: TrainConfig;
  resolvedYaml: string;
  runDir: string;
  logger: Logger;
  hooks: LoopHooks;
}

export function stageDir(ctx: StageContext, stage: StageName): string {
  return join(ctx.runDir, stage);
}

function finalOf(ctx: StageContext, stage: StageName): string {
  return join(stageDir(ctx, stage), 'final');
}

/** Loop settings for a stage: the global optim block with the stage's overrides applied. */
function loopSettings(ctx: StageContext, stage: StageName, totalSteps: number): LoopSettings {
  const c = ctx.config;
  const o = { ...c.optim, ...(c.stageOptim[stage] ?? {}) };
  return {
    optim: o,
    totalSteps,
    logEvery: c.log.every,
    checkpointEvery: c.checkpoint.every,
    keepLast: c.checkpoint.keepLast,
    evalEvery: stage === 'continual-pretrain' ? 0 : c.eval.every,
    averaging: c.averaging,
    seed: c.seed,
  };
}

/** optim.lossChunkRows of a stage (stageOptim wins): rows per chunk of the fused head + loss; null = auto. */
function lossChunkRows(ctx: StageContext, stage: StageName): number | null {
  const o = { ...ctx.config.optim, ...(ctx.config.stageOptim[stage] ?? {}) };
  return o.lossChunkRows ?? null;
}

interface TaskData {
  task: TaskSpec;
  train: Example[];
  /** One example list per dev file (MNLI: matched, mismatched). */
  dev: Example[][];
}

/**
 * The task a config names: a registry task (sst2, mnli, ...), optionally with some keys changed (template,
 * labelWords, ...), or a wholly custom task defined by those keys - through eval's one task resolution
 * (taskForModel with the template from the config).
 */
export function resolveTask(t: TrainConfig['task']): TaskSpec {
  return taskForModel(undefined, null, { templateFrom: 'config', config: t });
}

async function loadTaskData(ctx: StageContext): Promise<TaskData> {
  const t = ctx.config.task;
  const task = resolveTask(t);
  const fmt = t.format !== undefined ? { format: t.format } : {};
  const train = await readExamples(t.train, task, { ...fmt, ...(t.trainLimit === null ? {} : { limit: t.trainLimit }) });
  if (train.length === 0) throw new BitDistillError('E_DATA', `${t.train}: no training examples`, { hint: 'check task.train and task.trainLimit' });
  const dev: Example[][] = [];
  for (const f of devFiles(t)) {
    const rows = await readExamples(f, task, { ...fmt, ...(t.devLimit === null ? {} : { limit: t.devLimit }) });
    if (rows.length === 0)
      throw new BitDistillError('E_DATA', `${f}: no dev examples (a header alone?)`, {
        hint: 'task.dev must name a file with labelled rows: each stage ends with its evaluation',
      });
    dev.push(rows);
  }
  return { task, train, dev };
}

function sftTotalSteps(ctx: StageContext, stage: StageName, stream: SftStream): number {
  const o = { ...ctx.config.optim, ...(ctx.config.stageOptim[stage] ?? {}) };
  if (o.maxSteps !== null) return o.maxSteps;
  return Math.max(1, Math.floor((stream.batchesPerEpoch() * o.epochs) / o.gradAccum));
}

function batchTensors(b: SftMicroBatch) {
  return {
    ids: tf.tensor2d(b.inputIds, [b.B, b.T], 'int32'),
    labels: tf.tensor2d(b.labels, [b.B, b.T], 'int32'),
    answerMask: tf.tensor2d(b.answerMask, [b.B, b.T]),
    valid: tf.tensor2d(b.valid, [b.B, b.T]),
  };
}

/**
 * The answer positions of a micro-batch as flat rows b * T + t with their labels: the answer-only CE needs the
 * vocabulary projection at these rows only (Decoder.forward logitRows). Null when the batch has none.
 */
function answerRows(b: SftMicroBatch): { rows: tf.Tensor1D; labels: tf.Tensor2D; mask: tf.Tensor2D } | null {
  const rows: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < b.answerMask.length; i++) {
    if ((b.answerMask[i] as number) !== 0) {
      rows.push(i);
      labels.push(b.labels[i] as number);
    }
  }
  if (rows.length === 0) return null;
  return { rows: tf.tensor1d(rows, 'int32'), labels: tf.tensor2d(labels, [1, rows.length], 'int32'), mask: tf.ones([1, rows.length]) as tf.Tensor2D };
}

/**
 * Answer-only CE of a model on a micro-batch: the head is applied at the answer rows only, in chunks. A batch
 * without answer rows gives 0 (all rows, zero mask), still connected to the parameters as the loop requires.
 */
export function answerCe(model: Decoder, b: SftMicroBatch, chunkRows: number | null = null): tf.Scalar {
  const t = batchTensors(b);
  const a = answerRows(b);
  const { hidden } = model.forward(t.ids, { output: 'hidden', ...(a !== null ? { logitRows: a.rows } : {}) });
  const ce = a === null ? { labels: t.labels, mask: t.answerMask } : { labels: a.labels, mask: a.mask };
  return fusedHeadLoss(hidden, model.headWeight(), { ce, chunkRows }).loss;
}

/** The settings of the distill stage's loss, resolved (layers, relation heads) from the config. */
export interface DistillLossSettings {
  logit: boolean;
  attention: boolean;
  /** 'all': logit KD at every valid position ([code]); 'answer': at the answer positions only. */
  logitPositions: 'all' | 'answer';
  lambdaLogit: number;
  gammaAttn: number;
  temperature: number;
  relation: Relation;
  relationHeads: number;
  studentLayer: number;
  teacherLayer: number;
  /** Rows per chunk of the fused head + loss; null = auto. */
  chunkRows: number | null;
}

/**
 * L = CE + lambdaLogit * LD + gammaAttn * AD on one micro-batch (PAPER.md section 5), terms by name.
 *
 * The teacher's forward runs off the gradient tape: its activations are freed as it goes, and only its final
 * hidden rows and the distilled layer's Q/K/V (no gradient either way) reach the losses. CE (answer rows) and
 * logit KD (every valid row, or the answer rows) share one chunked pass over the student's head (fusedHeadLoss);
 * with logitPositions 'answer' only the answer rows are projected at all.
 */
export function distillLoss(student: Decoder, teacher: Decoder, b: SftMicroBatch, s: DistillLossSettings): LossTerms {
  const t = batchTensors(b);
  const allRows = s.logit && s.logitPositions === 'all';
  const rows = allRows ? null : answerRows(b); // null with allRows, or when the batch has no answer row
  const rowOpt = rows !== null ? { logitRows: rows.rows } : {};
  const st = student.forward(t.ids, { output: 'hidden', captureLayers: s.attention ? [s.studentLayer] : [], ...rowOpt });
  // Neither KD term on (distill.logit and distill.attention false: plain CE on the distill stage's data): no teacher
  // forward at all.
  const [teacherHidden, ...tq] =
    s.logit || s.attention
      ? untaped(() => {
          const o = teacher.forward(t.ids, { output: 'hidden', captureLayers: s.attention ? [s.teacherLayer] : [], ...rowOpt });
          const c = o.captured.get(s.teacherLayer);
          return [o.hidden, ...(s.attention && c !== undefined ? [c.q, c.k, c.v] : [])];
        })
      : [];
  const labels = rows !== null ? rows.labels : t.labels;
  const ceMask = rows !== null ? rows.mask : t.answerMask;
  // Without answer rows in 'answer' mode both masks are zero: CE and LD are 0 for this batch.
  const kdMask = rows !== null ? rows.mask : allRows ? t.valid : t.answerMask;
  const head = fusedHeadLoss(st.hidden, student.headWeight(), {
    chunkRows: s.chunkRows,
    ce: { labels, mask: ceMask },
    ...(s.logit
      ? {
          kd: {
            teacherHidden: teacherHidden as tf.Tensor,
            teacherWeight: teacher.headWeight(),
            mask: kdMask,
            temperature: s.temperature,
            weight: s.lambdaLogit,
          },
        }
      : {}),
  });
  const terms: Record<string, tf.Scalar> = { ce: head.ce as tf.Scalar };
  let total: tf.Scalar = head.loss;
  if (s.logit) terms['logitKd'] = head.logitKd as tf.Scalar;
  if (s.attention) {
    const sq = st.captured.get(s.studentLayer);
    if (tq.length !== 3 || sq === undefined) throw new ArgumentError('distill: Q/K/V capture failed');
    const [q, k, v] = tq as [tf.Tensor, tf.Tensor, tf.Tensor];
    const teacherQkv: QKV = { q, k, v };
    const ad = attentionRelationKd(teacherQkv, sq, { relationHeads: s.relationHeads, relation: s.relation });
    terms['attnKd'] = ad;
    total = tf.add(total, tf.mul(ad, s.gammaAttn));
  }
  return { total, terms };
}

/** Shared body of the three task stages: SFT stream, dev evaluation, runStage. */
/** trainTaskStage, then the stage's model released (its weights are on disk in final/ by then). */
async function runTaskStage(...args: Parameters<typeof trainTaskStage>): Promise<StageResult> {
  try {
    return await trainTaskStage(...args);
  } finally {
    args[2].dispose();
  }
}

async function trainTaskStage(
  ctx: StageContext,
  stage: StageName,
  model: Decoder,
  tokenizer: Tokenizer,
  tokenizerFrom: string,
  data: TaskData,
  loss: (b: SftMicroBatch) => { total: tf.Scalar; terms: Record<string, tf.Scalar> },
  termWeights?: Record<string, number>,
  metis: MetisTraining | null = null,
): Promise<StageResult> {
  const c = ctx.config;
  const o = { ...c.optim, ...(c.stageOptim[stage] ?? {}) };
  model.recompute = o.recompute; // activation recomputation per decoder block (Decoder.recompute)
  // The tokenizer must tell the label words apart (and read them back in generate mode) before a step is taken,
  // not at the stage's closing evaluation.
  const problems = taskTokenizerProblems(tokenizer, data.task, c.eval.mode);
  if (problems.length > 0)
    throw new ConfigError(
      'config',
      problems.map((message) => ({ path: 'task.labelWords', message })),
    );
  const encoded = data.train.map((ex) => encodeExample(tokenizer, data.task, ex));
  const pad = tokenizer.padId ?? tokenizer.eosId ?? 0;
  const stream = new SftStream(encoded, o.batchSize, c.model.maxSeqLen, pad, c.seed);
  const dev = c.eval.limit === null ? data.dev : data.dev.map((d) => d.slice(0, c.eval.limit ?? d.length));
  return runStage(
    {
      stage,
      stageDir: stageDir(ctx, stage),
      model,
      nextBatch: () => stream.next(),
      getCursor: () => stream.getCursor(),
      setCursor: (cur) => stream.setCursor(cur),
      epoch: () => stream.epoch,
      loss,
      evaluate: () =>
        evaluateLabelScoring(model, tokenizer, data.task, dev, { batchSize: Math.max(8, o.batchSize), maxLen: c.model.maxSeqLen, mode: c.eval.mode }),
      extraMetrics: () => latentRecord(model, metis),
      ...(termWeights !== undefined ? { termWeights } : {}),
      ...metisHooks(metis),
      resolvedYaml: ctx.resolvedYaml,
      tokenizerFrom,
      // taskSpec: the whole task as trained, so `eval` rebuilds it from the model alone (custom tasks included).
      bitdistill: {
        task: data.task.name,
        templateVersion: data.task.templateVersion,
        template: data.task.template,
        labelWords: data.task.labelWords,
        taskSpec: taskRecord(data.task),
        maxSeqLen: c.model.maxSeqLen,
      },
    },
    loopSettings(ctx, stage, sftTotalSteps(ctx, stage, stream)),
    ctx.hooks,
  );
}

/**
 * Low-bit float GEMMs (config lowbitGemm) on a full-precision stage that lists them; with lowbitGemm.metis.enabled
 * the Metis projections instead, whose owner the stage returns (its split refresh, gradient rule and loss term).
 */
function useLowBitGemm(ctx: StageContext, stage: 'pretrain' | 'teacher', model: Decoder): MetisTraining | null {
  const g = ctx.config.lowbitGemm;
  if (!g.stages.includes(stage) || (g.forward === 'none' && g.backward === 'none')) return null;
  if (g.metis.enabled) {
    const metis = applyMetis(model, g, g.metis, ctx.config.seed);
    ctx.logger.info(
      { stage, forward: g.forward, backward: g.backward, ...g.metis },
      `${stage}: Metis low-bit GEMMs (forward ${g.forward}, backward ${g.backward}, rankFraction ${g.metis.rankFraction}, refresh every ${g.metis.refreshEvery} steps)`,
    );
    return metis;
  }
  const n = applyLowBitGemm(model, g);
  ctx.logger.info(
    { stage, forward: g.forward, backward: g.backward, projections: n },
    `${stage}: low-bit GEMMs (forward ${g.forward}, backward ${g.backward})`,
  );
  return null;
}

/** Adds Metis's dual-range regularizer to a stage's loss when its weight is > 0: total + weight * dualRange, logged as `dualRange`. */
function withDualRange(metis: MetisTraining | null, loss: LossTerms): LossTerms {
  const w = metis?.settings.dualRange.weight ?? 0;
  if (metis === null || w === 0) return loss;
  const dr = metis.dualRangeLoss();
  return { total: tf.add(loss.total, tf.mul(dr, w)), terms: { ...loss.terms, dualRange: dr } };
}

/** The loop hooks of a Metis stage: refresh the split before a step, apply the spectral learning-rate rule to its gradients. */
function metisHooks(metis: MetisTraining | null): Pick<StageSpec<SftMicroBatch>, 'beforeStep' | 'transformGrads'> {
  if (metis === null) return {};
  return { beforeStep: (step) => void metis.refresh(step), transformGrads: (grads) => metis.transformGrads(grads) };
}

/** The regularizer's weight for warnTermWeights, when it is on. */
function dualRangeWeights(metis: MetisTraining | null): Record<string, number> | undefined {
  const w = metis?.settings.dualRange.weight ?? 0;
  return w > 0 ? { dualRange: w } : undefined;
}

/** Full-precision SFT of the base model on the task: the FP16-SFT row, and the distillation teacher. */
export async function teacherStage(ctx: StageContext): Promise<StageResult> {
  const data = await loadTaskData(ctx);
  const { model, tokenizer, source } = loadModel(ctx.config.model.path, { logger: ctx.logger });
  const metis = useLowBitGemm(ctx, 'teacher', model);
  mkdirSync(stageDir(ctx, 'teacher'), { recursive: true });
  const chunkRows = lossChunkRows(ctx, 'teacher');
  try {
    return await runTaskStage(
      ctx,
      'teacher',
      model,
      tokenizer,
      source,
      data,
      (b) => {
        const ce = answerCe(model, b, chunkRows);
        return withDualRange(metis, { total: ce, terms: { ce } });
      },
      dualRangeWeights(metis),
      metis,
    );
  } finally {
    metis?.dispose();
  }
}

/** The paper's baseline: quantize the base model (no SubLN, no continual pre-training) and fine-tune with CE. */
export async function bitnetSftStage(ctx: StageContext): Promise<StageResult> {
  const data = await loadTaskData(ctx);
  const { model, tokenizer, source } = loadModel(ctx.config.model.path, { logger: ctx.logger });
  prepareStudent(model, { subln: 'none', weightQuant: ctx.config.student.weightQuant, quantizeActivations: ctx.config.student.quantizeActivations });
  mkdirSync(stageDir(ctx, 'bitnet-sft'), { recursive: true });
  const chunkRows = lossChunkRows(ctx, 'bitnet-sft');
  return runTaskStage(ctx, 'bitnet-sft', model, tokenizer, source, data, (b) => {
    const ce = answerCe(model, b, chunkRows);
    return { total: ce, terms: { ce } };
  });
}

/**
 * Next-token LM on the corpus. `continual-pretrain` (stage 2, PAPER.md section 4): the ternary student with
 * SubLN. `pretrain`: the full-precision model as it is (e.g. a fresh `bitdistill init` model), to build a base.
 */
async function lmStage(ctx: StageContext, stage: 'pretrain' | 'continual-pretrain'): Promise<StageResult> {
  const c = ctx.config;
  const { model, tokenizer, source } = loadModel(c.model.path, { logger: ctx.logger });
  if (stage === 'continual-pretrain') {
    prepareStudent(model, {
      subln: c.student.subln,
      sublnEps: c.student.sublnEps,
      weightQuant: c.student.weightQuant,
      quantizeActivations: c.student.quantizeActivations,
    });
  }
  const metis = stage === 'pretrain' ? useLowBitGemm(ctx, stage, model) : null;
  const o = { ...c.optim, ...(c.stageOptim[stage] ?? {}) };
  model.recompute = o.recompute; // activation recomputation per decoder block (Decoder.recompute)
  const stream = new LmStream(c.corpus.paths, tokenizer, c.corpus.seqLen, o.batchSize);
  const tokensPerStep = o.batchSize * c.corpus.seqLen * o.gradAccum;
  const totalSteps = o.maxSteps ?? (c.corpus.maxTokens !== null ? Math.max(1, Math.floor(c.corpus.maxTokens / tokensPerStep)) : null);
  if (totalSteps === null) {
    throw new ArgumentError(`${stage} needs a budget: set corpus.maxTokens or stageOptim.${stage}.maxSteps`);
  }
  const chunkRows = lossChunkRows(ctx, stage);
  mkdirSync(stageDir(ctx, stage), { recursive: true });
  const termWeights = dualRangeWeights(metis);
  try {
    return await runStage(
      {
        stage,
        stageDir: stageDir(ctx, stage),
        model,
        nextBatch: () => stream.next(),
        getCursor: () => stream.getCursor(),
        setCursor: (cur) => stream.setCursor(cur),
        epoch: () => stream.epoch,
        loss: (b) => {
          const t = batchTensors(b);
          const { hidden } = model.forward(t.ids, { output: 'hidden' });
          // mask = all ones: plain LM loss
          const ce = fusedHeadLoss(hidden, model.headWeight(), { ce: { labels: t.labels, mask: t.answerMask }, chunkRows }).loss;
          return withDualRange(metis, { total: ce, terms: { ce } });
        },
        extraMetrics: () => latentRecord(model, metis), // null for the full-precision pretrain model without Metis
        ...(termWeights !== undefined ? { termWeights } : {}),
        ...metisHooks(metis),
        resolvedYaml: ctx.resolvedYaml,
        tokenizerFrom: source,
        bitdistill: { corpus: c.corpus.paths },
      },
      loopSettings(ctx, stage, totalSteps),
      ctx.hooks,
    );
  } finally {
    metis?.dispose();
    // The stage's weights are in final/ now: without this each finished stage kept its model alive in the
    // process (the Qwen3-0.6B pipeline's continual-pretrain peaked at 21.0 GiB after teacher and bitnet-sft,
    // 16.3 GiB in a fresh process).
    model.dispose();
  }
}

/** Latent-weight statistics as flat metrics keys (latent.relErr, latent.relErr.q_proj, ...), and Metis's (metis.rank, ...). */
async function latentRecord(model: Decoder, metis: MetisTraining | null = null): Promise<Record<string, number> | null> {
  const st = await latentWeightStats(model, ternaryStatsF32);
  if (st === null) return metis?.metrics() ?? null;
  const out: Record<string, number> = { 'latent.relErr': st.relErr, 'latent.nearBoundary': st.nearBoundary, 'latent.zeroFrac': st.zeroFrac };
  for (const [k, v] of Object.entries(st.relErrByType)) out[`latent.relErr.${k}`] = v;
  return out;
}

/** Full-precision next-token pretraining of model.path on the corpus (building a base model). */
export function pretrainStage(ctx: StageContext): Promise<StageResult> {
  return lmStage(ctx, 'pretrain');
}

/** Stage 2: ternary student with SubLN, next-token cross-entropy on the corpus (PAPER.md section 4). */
export function continualPretrainStage(ctx: StageContext): Promise<StageResult> {
  return lmStage(ctx, 'continual-pretrain');
}

/** A late layer when distillLayer is null (the official code: layer 22 of 28); negative counts from the end. */
export function resolveDistillLayer(setting: number | null, numLayers: number): number {
  const l = setting === null ? Math.min(numLayers - 1, Math.floor((numLayers * 22) / 28)) : setting < 0 ? numLayers + setting : setting;
  if (!Number.isInteger(l) || l < 0 || l >= numLayers) {
    throw new ArgumentError(`distill.distillLayer=${String(setting)} is outside the model's ${numLayers} layers`, {
      hint: `use 0..${numLayers - 1}, or -1 for the last`,
    });
  }
  return l;
}

/** The largest count <= wanted that divides every Q/K/V width (H*d and Hkv*d) of teacher and student. */
export function resolveRelationHeads(wanted: number, widths: readonly number[]): number {
  for (let r = wanted; r >= 1; r--) if (widths.every((w) => w % r === 0)) return r;
  return 1;
}

/** Stage 3: distillation fine-tuning of the continual-pretrain student from the frozen teacher. */
export async function distillStage(ctx: StageContext): Promise<StageResult> {
  const c = ctx.config;
  const d = c.distill;
  const data = await loadTaskData(ctx);
  // Student: the continual-pretrain output (this run's, or studentPath), or the base model with fresh SubLN
  // when that stage is ablated.
  const from = d.studentPath ?? (d.studentFrom === 'continual-pretrain' ? finalOf(ctx, 'continual-pretrain') : c.model.path);
  if (d.studentPath === null && d.studentFrom === 'continual-pretrain' && !existsSync(from)) {
    throw new NotFoundError(from, `distill starts from the continual-pretrain output, which does not exist yet (${from})`, {
      hint: 'run the continual-pretrain stage first, or set distill.studentFrom: base to skip it (ablation)',
    });
  }
  if (!existsSync(from)) throw new NotFoundError(from, `distill.studentPath: no model at ${from}`, { hint: 'point it at a continual-pretrain final/ folder' });
  const { model, tokenizer, source } = loadModel(from, { logger: ctx.logger });
  if (!restoreStudent(model))
    prepareStudent(model, {
      subln: c.student.subln,
      sublnEps: c.student.sublnEps,
      weightQuant: c.student.weightQuant,
      quantizeActivations: c.student.quantizeActivations,
    });
  if (!d.logit && !d.attention) {
    // Both distillation terms ablated: CE on the answer tokens only, no teacher (Table 5's SubLN(+CPT) rows).
    ctx.logger.info({ studentFrom: from }, 'distill with logit and attention terms off: CE only, no teacher');
    mkdirSync(stageDir(ctx, 'distill'), { recursive: true });
    const chunkRows = lossChunkRows(ctx, 'distill');
    return runTaskStage(ctx, 'distill', model, tokenizer, source, data, (b) => {
      const ce = answerCe(model, b, chunkRows);
      return { total: ce, terms: { ce } };
    });
  }
  const teacherPath = d.teacherPath ?? finalOf(ctx, 'teacher');
  if (!existsSync(teacherPath)) {
    throw new NotFoundError(teacherPath, `distill needs the fine-tuned teacher at ${teacherPath}`, {
      hint: 'run the teacher stage first, or set distill.teacherPath',
    });
  }
  const teacher = loadModel(teacherPath, { trainable: false, logger: ctx.logger });
  if (teacher.model.config.vocabSize !== model.config.vocabSize || teacher.tokenizer.vocabSize !== tokenizer.vocabSize) {
    throw new FormatError(teacherPath, `teacher vocabulary (${teacher.model.config.vocabSize}) differs from the student's (${model.config.vocabSize})`, {
      hint: 'logit distillation needs the same tokenizer: fine-tune the teacher from the same base model',
    });
  }
  const layer = resolveDistillLayer(d.distillLayer, model.config.numLayers);
  const tLayer = resolveDistillLayer(
    d.distillLayer === null
      ? null
      : d.distillLayer < 0
        ? d.distillLayer
        : Math.round((d.distillLayer * teacher.model.config.numLayers) / model.config.numLayers),
    teacher.model.config.numLayers,
  );
  const widths = [model.config, teacher.model.config].flatMap((cfg) => [cfg.numHeads * cfg.headDim, cfg.numKvHeads * cfg.headDim]);
  const relationHeads = resolveRelationHeads(d.relationHeads, widths);
  if (relationHeads !== d.relationHeads)
    ctx.logger.info({ wanted: d.relationHeads, used: relationHeads, widths }, 'relationHeads capped to a count that divides the Q/K/V widths');
  ctx.logger.info(
    { studentLayer: layer, teacherLayer: tLayer, relationHeads, lambdaLogit: d.lambdaLogit, gammaAttn: d.gammaAttn, temperature: d.temperature },
    'distillation setup',
  );
  mkdirSync(stageDir(ctx, 'distill'), { recursive: true });
  try {
    const settings: DistillLossSettings = {
      logit: d.logit,
      attention: d.attention,
      logitPositions: d.logitPositions,
      lambdaLogit: d.lambdaLogit,
      gammaAttn: d.gammaAttn,
      temperature: d.temperature,
      relation: d.relation,
      relationHeads,
      studentLayer: layer,
      teacherLayer: tLayer,
      chunkRows: lossChunkRows(ctx, 'distill'),
    };
    return await runTaskStage(ctx, 'distill', model, tokenizer, source, data, (b) => distillLoss(model, teacher.model, b, settings), {
      ...(d.logit ? { logitKd: d.lambdaLogit } : {}),
      ...(d.attention ? { attnKd: d.gammaAttn } : {}),
    });
  } finally {
    teacher.model.dispose();
  }
}

export const STAGE_FUNCTIONS: Record<StageName, (ctx: StageContext) => Promise<StageResult>> = {
  pretrain: pretrainStage,
  teacher: teacherStage,
  'bitnet-sft': bitnetSftStage,
  'continual-pretrain': continualPretrainStage,
  distill: distillStage,
};
