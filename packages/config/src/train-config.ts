/**
 * The `bitdistill train` config: schema, defaults, cross-field checks. Defaults follow the official code where
 * it and the paper differ (PAPER.md: "the code is the default"); tags as in PAPER.md ([code], [paper], [open]).
 * Names of the distillation knobs are the paper's, verbatim (STYLE.md rule 6).
 *
 * Paths (model.path, task.train, task.dev, corpus.paths, outputDir, distill.teacherPath) are kept exactly as
 * written: a relative path is resolved later against the working directory of the process, not against the
 * config file's folder (so `bitdistill train --config configs/x.yaml` run from the repo root finds `models/...`).
 *
 * The whole schema with its defaults (the output of `bitdistill validate` on a minimal config):
 *
 *   name: sst2-tiny                 # required; names the run folder <outputDir>/<name>/<stage>/
 *   seed: 0
 *   backend: auto                   # auto | tensorflow | wasm | cpu  (--backend on the command line wins)
 *   outputDir: runs
 *   note: null                      # small print under the run's summary.md (what to expect, where the reports are)
 *   model: {path: REQUIRED, maxSeqLen: 512}               # HF folder (or llama2.c); [paper] max length 512
 *   task:
 *     name: REQUIRED                # registry name (sst2, mnli, ...) or a custom task's name
 *     train: REQUIRED               # TSV / JSONL file
 *     dev: REQUIRED                 # a file, or a list (MNLI: matched, mismatched; metrics accuracy_m, accuracy_mm)
 *     format: (from the extension)  # tsv | jsonl | parquet | arrow, for files under another extension (.txt is tsv)
 *     trainLimit: null              # first N training examples; null = all
 *     devLimit: null
 *     # optional custom definition, checked in full by @bitdistill/data (defineTask): kind, fields,
 *     # labelColumn, labels, labelWords, template, templateVersion, metrics, range (regression)
 *   corpus: {paths: [], seqLen: 512, maxTokens: null}     # continual-pretrain text; [open] budget
 *   stages: [teacher, bitnet-sft, continual-pretrain, distill]   # run in this order; no repeats; `pretrain`
 *                                   # (full-precision LM on the corpus, to build a base model) may come first
 *   student: {subln: allnorm, sublnEps: 1.0e-8, weightQuant: absmean, quantizeActivations: true}   # [code] allnorm, 1e-8
 *   optim: {lr: 5.0e-5, weightDecay: 0.1, beta1: 0.9, beta2: 0.999, eps: 1.0e-8, warmupRatio: 0.05,
 *           schedule: linear, decayRatio: 0.2, gradClip: 1, batchSize: 32, gradAccum: 1, epochs: 3, maxSteps: null,
 *           lossChunkRows: null,
 *           recompute: false, gradPrecision: fp32}   # bf16: backward products on AVX512_BF16
 *   stageOptim: {}                  # per stage, any subset of optim: {continual-pretrain: {lr: 1e-4, maxSteps: 500}}
 *   distill: {lambdaLogit: 10, gammaAttn: 100000, temperature: 5, relationHeads: 32, distillLayer: null,
 *             relation: cosine, logit: true, attention: true, logitPositions: all, teacherPath: null, studentFrom: continual-pretrain,
 *             studentPath: null}
 *   lowbitGemm: {forward: none, backward: none, stages: [pretrain, teacher],    # low-bit float training GEMMs
 *                metis: {enabled: false, rankFraction: 0.01, refreshEvery: 100, powerIterations: 2,
 *                        spectralLr: {enabled: false, dominantScale: 0.5, tailScale: 1},
 *                        dualRange: {weight: 0, rangeSigmas: 3}}}
 *   averaging: {kind: none, emaDecay: 0.999, lawaK: 5}
 *   checkpoint: {every: 100, keepLast: 2}
 *   eval: {every: 0, limit: null, mode: label}
 *   log: {every: 10}
 */
import YAML from 'yaml';
import { SUBLN_MODES, WEIGHT_QUANT_MODES } from '@bitdistill/arch';
import { ConfigError } from '@bitdistill/core';
import { bool, enumOf, int, list, num, obj, partialShape, record, str, validate, Schema, type DeepPartial, type Infer, type ObjectOf } from './schema.ts';

/** The stages of the pipeline, in the order they depend on each other (DESIGN.md "What the user runs"). */
export const STAGE_NAMES = ['pretrain', 'teacher', 'bitnet-sft', 'continual-pretrain', 'distill'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
/** The BitDistill pipeline, the default `stages` (pretrain is opt-in: it builds a base model). */
export const PIPELINE_STAGES: readonly StageName[] = ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'];

/** The tfjs backends `--backend` / `backend:` accept (@bitdistill/backend initialises them). */
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
/** Operand formats of low-bit float training GEMMs (@bitdistill/quant lowBitLinear). */
export const GEMM_FORMATS = ['none', 'fp8-e4m3', 'fp8-e5m2', 'fp4-e2m1', 'nvfp4'] as const;
export type GemmFormat = (typeof GEMM_FORMATS)[number];
/** The learning-rate schedules (@bitdistill/trainer computes them). */
export const SCHEDULES = ['linear', 'cosine', 'wsd', 'constant'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];
// Mirrors of lists owned by @bitdistill/data, which sits beside this package (its readers would load with config
// otherwise); test/config-mirrors.test.ts checks they are equal.
export const METRICS = ['accuracy', 'f1', 'matthews', 'pearson', 'spearman'] as const; // @bitdistill/data METRIC_NAMES
export const DATASET_FORMATS = ['tsv', 'jsonl', 'parquet', 'arrow'] as const; // @bitdistill/data DATASET_FORMATS

/** [code] AdamW (0.9, 0.999, 1e-8), clip 1.0, warmup 0.05, linear decay, wd 0.1, LR 5e-5 (YAML), 2-3 epochs; [paper] batch 32. */
const optimShape = {
  lr: num({ exclusiveMin: 0 }).default(5e-5),
  weightDecay: num({ min: 0 }).default(0.1),
  beta1: num({ min: 0, exclusiveMax: 1 }).default(0.9),
  beta2: num({ min: 0, exclusiveMax: 1 }).default(0.999),
  eps: num({ exclusiveMin: 0 }).default(1e-8),
  warmupRatio: num({ min: 0, exclusiveMax: 1 }).default(0.05),
  schedule: enumOf(SCHEDULES).default('linear'),
  /** wsd only: the fraction of steps spent decaying at the end (PAPER.md section 9). */
  decayRatio: num({ exclusiveMin: 0, max: 1 }).default(0.2),
  /** Max global gradient norm; 0 disables clipping. */
  gradClip: num({ min: 0 }).default(1.0),
  /** Examples per micro-batch; one optimizer step sees batchSize * gradAccum examples. */
  batchSize: int({ min: 1 }).default(32),
  gradAccum: int({ min: 1 }).default(1),
  epochs: num({ exclusiveMin: 0 }).default(3),
  /** Caps the optimizer steps (wins over epochs and corpus.maxTokens); null = no cap. */
  maxSteps: int({ min: 1 }).nullable().default(null),
  /**
   * Rows per chunk of the fused vocabulary head + loss (losses' fusedHeadLoss): one [rows, vocab] fp32 block
   * at a time instead of [batch * seq, vocab] logits. null = auto: 64 MiB blocks (110 rows at V = 151,936).
   */
  lossChunkRows: int({ min: 1 }).nullable().default(null),
  /**
   * Activation recomputation: keep only each decoder block's input for backward and recompute one block's
   * activations at a time (less memory, ~1/3 more compute). The memory estimate models it (memory.ts).
   */
  recompute: bool().default(false),
  /**
   * Precision of the backward products on the CPU engine: fp32, or bf16 (the official code trains in bf16,
   * PAPER.md section 7) - the student's BitLinear backward with the gradient operand rounded to bfloat16 (the
   * ternary and int8 codes are exact), the dense linears' (teacher stage, full-precision models) and the
   * vocabulary head's dx / dW with both operands rounded; sums in fp32, forward passes and attention unchanged.
   * Needs AVX512_BF16 (Zen 4, Sapphire Rapids), else a warning and fp32.
   */
  gradPrecision: enumOf(['fp32', 'bf16'] as const).default('fp32'),
};

/** Hugging Face TrainingArguments names, only to suggest ours ("did you mean 'optim.lr'?"). */
const OPTIM_ALIASES = {
  learning_rate: 'lr',
  adam_beta1: 'beta1',
  adam_beta2: 'beta2',
  adam_epsilon: 'eps',
  max_grad_norm: 'gradClip',
  bf16: 'gradPrecision',
  lr_scheduler_type: 'schedule',
  per_device_train_batch_size: 'batchSize',
  gradient_accumulation_steps: 'gradAccum',
  num_train_epochs: 'epochs',
};

/** A string, or a non-empty list of distinct strings. */
function strOrList(): Schema<string | string[]> {
  const one = str();
  const many = list(str(), { minLength: 1, unique: true });
  return Schema.of<string | string[]>({
    expected: 'a non-empty string or a list of them',
    check: (v, path, issues) => (Array.isArray(v) ? many.check(v, path, issues) : one.check(v, path, issues)),
  });
}

/** A non-empty list of distinct strings / enum values. */
function listOfStrings() {
  return list(str(), { minLength: 1, unique: true });
}
function listOfEnum<const V extends readonly string[]>(values: V) {
  return list(enumOf(values), { minLength: 1, unique: true });
}

const trainShape = {
  name: str({ pattern: { re: /^[A-Za-z0-9][A-Za-z0-9._-]*$/, description: 'letters, digits, . _ - (it names the run folder)' } }),
  /** Seeds the data order and every random init (an unsigned 32-bit integer, as core's Rng). */
  seed: int({ min: 0, max: 2 ** 32 - 1 }).default(0),
  backend: enumOf(BACKEND_CHOICES).default('auto'),
  outputDir: str().default('runs'),
  /** Printed as small print under the run's summary.md and the CLI's summary: what to expect from this run, where to read more. */
  note: str().nullable().default(null),
  model: obj({
    path: str(),
    maxSeqLen: int({ min: 2 }).default(512),
  }),
  task: obj(
    {
      name: str(),
      train: str(),
      /** One file, or several evaluated apart (MNLI: [dev_matched.tsv, dev_mismatched.tsv] -> accuracy_m, accuracy_mm). */
      dev: strOrList(),
      /** The data files' format when their extension does not say it (tsv, jsonl, parquet, arrow). */
      format: enumOf(DATASET_FORMATS).optional(),
      trainLimit: int({ min: 1 }).nullable().default(null),
      devLimit: int({ min: 1 }).nullable().default(null),
      // A custom task (or a change to a registry task): only types are checked here; @bitdistill/data's
      // defineTask checks how the pieces fit (placeholders vs fields, metric vs kind) when the task is built.
      kind: enumOf(['classification', 'regression']).optional(),
      /** Regression: the score range [lo, hi] (unanswered items score its middle; buckets default to lo..hi). */
      range: list(num(), { minLength: 2 }).optional(),
      fields: listOfStrings().optional(),
      labelColumn: str().optional(),
      labels: listOfStrings().optional(),
      labelWords: listOfStrings().optional(),
      template: str().optional(),
      templateVersion: str().optional(),
      metrics: listOfEnum(METRICS).optional(),
    },
    { aliases: { metric: 'metrics', verbalizers: 'labelWords', prompt: 'template' } },
  ),
  corpus: obj({
    paths: list(str(), { unique: true }).default([]),
    seqLen: int({ min: 2 }).default(512),
    /** Token budget of continual-pretrain (PAPER.md section 4: 10B in the paper); null = set by maxSteps. */
    maxTokens: int({ min: 1 }).nullable().default(null),
  }),
  stages: listOfEnum(STAGE_NAMES).default([...PIPELINE_STAGES]),
  student: obj({
    subln: enumOf(SUBLN_MODES).default('allnorm'),
    /** SubLN RMSNorm epsilon: 1e-8 as the official code; llama.cpp and transformers apply rms_norm_eps there. */
    sublnEps: num({ exclusiveMin: 0, max: 1 }).default(1e-8),
    weightQuant: enumOf(WEIGHT_QUANT_MODES).default('absmean'),
    quantizeActivations: bool().default(true),
  }),
  optim: obj(optimShape, { aliases: OPTIM_ALIASES }),
  /** Per-stage optim overrides, keyed by stage name; each names only the keys it changes. */
  stageOptim: record(obj(partialShape(optimShape), { aliases: OPTIM_ALIASES }), { keys: STAGE_NAMES }),
  /** L = L_CE + lambdaLogit * L_LD + gammaAttn * L_AD (PAPER.md section 5); classification values. */
  distill: obj(
    {
      lambdaLogit: num({ min: 0 }).default(10),
      gammaAttn: num({ min: 0 }).default(1e5),
      temperature: num({ exclusiveMin: 0 }).default(5),
      relationHeads: int({ min: 1 }).default(32),
      /** Negative counts from the end (-1 = last); null = the code's late layer (22 of 28, scaled to depth). */
      distillLayer: int().nullable().default(null),
      /** [code] cosine; [paper] scaled = softmax(A A^T / sqrt(D)). */
      relation: enumOf(['cosine', 'scaled']).default('cosine'),
      logit: bool().default(true),
      attention: bool().default(true),
      /** [code] all: logit KD at every non-pad position; answer: at the answer tokens only (much cheaper with a large vocabulary). */
      logitPositions: enumOf(['all', 'answer']).default('all'),
      /** A fine-tuned teacher checkpoint; null = this run's teacher stage output. */
      teacherPath: str().nullable().default(null),
      /** `base` skips Stage 2 (the SubLN+distill ablation of Table 5). */
      studentFrom: enumOf(['continual-pretrain', 'base']).default('continual-pretrain'),
      /** A continual-pretrain output (or any student checkpoint) to start from; wins over studentFrom. */
      studentPath: str().nullable().default(null),
    },
    { aliases: { tau: 'temperature', layer: 'distillLayer' } },
  ),
  /**
   * Low-bit float training GEMMs (issue 22): the projections' matmuls of the listed full-precision stages read
   * fake-quantized operands - x and W in `forward`'s format, the output gradient in `backward`'s.
   */
  lowbitGemm: obj({
    forward: enumOf(GEMM_FORMATS).default('none'),
    backward: enumOf(GEMM_FORMATS).default('none'),
    stages: listOfEnum(['pretrain', 'teacher'] as const).default(['pretrain', 'teacher']),
    /**
     * Metis (Cao et al. 2025; docs/lowbit-training.md): each projection weight split by a randomized SVD into k
     * dominant directions kept in fp32 and a residual that goes through the low-bit GEMM. Here, not under a
     * `quant` section: it modifies these GEMMs and applies to the same stages.
     */
    metis: obj({
      enabled: bool().default(false),
      /** k = max(1, round(rankFraction * min(out, in))) per projection; 0 = no split (the plain low-bit GEMM). */
      rankFraction: num({ min: 0, max: 1 }).default(0.01),
      /** Recompute the split from the master weights every N optimizer steps. */
      refreshEvery: int({ min: 1 }).default(100),
      powerIterations: int({ min: 0, max: 10 }).default(2),
      /** G' = dominantScale P + tailScale (G - P), P = U U^T G V V^T, before clipping and AdamW. */
      spectralLr: obj({
        enabled: bool().default(false),
        dominantScale: num({ exclusiveMin: 0, exclusiveMax: 1 }).default(0.5),
        tailScale: num({ min: 1 }).default(1),
      }),
      /** L += weight * dualRange (0 = off); the format's max sits at rangeSigmas RMS of each residual. */
      dualRange: obj({
        weight: num({ min: 0 }).default(0),
        rangeSigmas: num({ exclusiveMin: 0 }).default(3),
      }),
    }),
  }),
  /** Weight averaging at the end of each stage (PAPER.md section 9): EMA, or LAWA over the last lawaK checkpoints. */
  averaging: obj({
    kind: enumOf(['none', 'ema', 'lawa']).default('none'),
    emaDecay: num({ exclusiveMin: 0, exclusiveMax: 1 }).default(0.999),
    lawaK: int({ min: 1 }).default(5),
  }),
  checkpoint: obj({
    every: int({ min: 1 }).default(100),
    keepLast: int({ min: 1 }).default(2),
  }),
  eval: obj({
    /** Every N optimizer steps; 0 = only at the end of the stage. */
    every: int({ min: 0 }).default(0),
    /** First N dev examples; null = all. */
    limit: int({ min: 1 }).nullable().default(null),
    /** label: score the label words' first tokens; generate: greedy decoding + exact match (PAPER.md section 6). */
    mode: enumOf(['label', 'generate']).default('label'),
  }),
  log: obj({ every: int({ min: 1 }).default(10) }),
};

type Shaped = ObjectOf<typeof trainShape>;

/** Checks that need several fields; a field that failed its own check is undefined here and is not judged. */
function crossChecks(c: DeepPartial<Shaped>, report: (path: string, message: string) => void): void {
  const stages = c.stages;
  const has = (s: StageName): boolean => stages?.includes(s) ?? false;
  const before = (a: StageName, b: StageName): boolean => (stages?.indexOf(a) ?? 0) < (stages?.indexOf(b) ?? 0);
  if (stages !== undefined && has('distill')) {
    const needsTeacher = c.distill?.logit !== false || c.distill?.attention !== false;
    if (c.distill?.teacherPath === null && needsTeacher) {
      if (!has('teacher')) report('stages', "'distill' needs a teacher: add 'teacher' before it, or set distill.teacherPath to a fine-tuned checkpoint");
      else if (!before('teacher', 'distill')) report('stages', "'teacher' must come before 'distill' (the teacher is trained first)");
    }
    if (c.distill?.studentFrom === 'continual-pretrain' && (c.distill?.studentPath ?? null) === null) {
      if (!has('continual-pretrain')) {
        report('stages', "'distill' starts from the continual-pretrain student: add 'continual-pretrain' before it, or set distill.studentFrom: base");
      } else if (!before('continual-pretrain', 'distill')) {
        report('stages', "'continual-pretrain' must come before 'distill' (its output is the student)");
      }
    }
  }
  for (const lm of ['pretrain', 'continual-pretrain'] as const) {
    if (!has(lm)) continue;
    if (c.corpus?.paths?.length === 0) report('corpus.paths', `'${lm}' is in stages but corpus.paths is empty: list the text files to pre-train on`);
    const own = c.stageOptim?.[lm];
    const maxSteps = own !== undefined && 'maxSteps' in own ? own.maxSteps : c.optim?.maxSteps;
    if (c.corpus?.maxTokens === null && maxSteps === null) {
      report('corpus.maxTokens', `${lm} needs a budget: set corpus.maxTokens, or optim.maxSteps / stageOptim.${lm}.maxSteps`);
    }
  }
  if (has('pretrain') && stages !== undefined && stages[0] !== 'pretrain') report('stages', "'pretrain' builds the base model: it must come first");
  const g = c.lowbitGemm;
  if (g?.metis?.enabled === true) {
    if (g.forward === 'none')
      report('lowbitGemm.metis.enabled', "Metis splits the low-bit forward GEMM's weight: set lowbitGemm.forward to fp8-e4m3, fp8-e5m2, fp4-e2m1 or nvfp4");
    if (g.metis.spectralLr?.enabled === true && g.metis.rankFraction === 0)
      report('lowbitGemm.metis.spectralLr.enabled', 'the spectral learning rate scales the dominant directions: set lowbitGemm.metis.rankFraction > 0');
  }
  // wsd decays over the last decayRatio of the steps: that must not reach back into the warmup.
  const blocks: [string, DeepPartial<Shaped['optim']> | undefined][] = [['optim', c.optim]];
  for (const s of STAGE_NAMES) {
    const own = c.stageOptim?.[s];
    const touches = own !== undefined && ('schedule' in own || 'warmupRatio' in own || 'decayRatio' in own);
    if (touches) blocks.push([`stageOptim.${s}`, { ...c.optim, ...own }]);
  }
  for (const [path, o] of blocks) {
    if (o?.schedule === 'wsd' && o.warmupRatio !== undefined && o.decayRatio !== undefined && o.warmupRatio + o.decayRatio > 1) {
      report(`${path}.decayRatio`, `warmupRatio (${o.warmupRatio}) + decayRatio (${o.decayRatio}) must be <= 1 for the wsd schedule`);
    }
  }
}

export const trainConfigSchema = obj(trainShape, {
  aliases: { output_dir: 'outputDir', stage: 'stages', optimizer: 'optim', stage_optim: 'stageOptim' },
  refine: crossChecks,
});

export type TrainConfig = Infer<typeof trainConfigSchema>;
export type ModelConfig = TrainConfig['model'];
export type TaskConfig = TrainConfig['task'];
export type CorpusConfig = TrainConfig['corpus'];
export type StudentConfig = TrainConfig['student'];
export type OptimConfig = TrainConfig['optim'];
export type DistillConfig = TrainConfig['distill'];
export type AveragingConfig = TrainConfig['averaging'];

/** Validates a parsed document; throws one ConfigError listing every problem. `file` labels the messages. */
export function validateConfig(doc: unknown, file = '<config>'): TrainConfig {
  const r = validate(trainConfigSchema, doc);
  if (!r.ok) throw new ConfigError(file, r.issues);
  return r.value;
}

/** The config as YAML (keys in schema order, lists of scalars on one line); loads back to the same config. */
export function formatConfig(config: TrainConfig): string {
  const doc = new YAML.Document(config);
  YAML.visit(doc, {
    Seq(_, node) {
      if (node.items.every((i) => YAML.isScalar(i))) node.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}
