/**
 * `bitdistill train`: run the stages a config lists, in order, into runs/<name>/<stage>/; a stage whose
 * final/ exists is skipped, a stage with checkpoints resumes from the latest; at the end a summary table of
 * each stage's dev metrics go to runs/<name>/summary.md and summary.json.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, ConfigError, type Logger } from '@bitdistill/core';
import { readJsonObjectFile } from '@bitdistill/format';
import { checkTaskConfig, loadTokenizer } from '@bitdistill/data';
import type { StageName, TrainConfig } from '@bitdistill/config';
import type { EvalResult, LoopHooks } from './loop.ts';
import { readTrainerState } from './checkpoint.ts';
import { STAGE_FUNCTIONS, type StageContext } from './stages.ts';
import { startStagePeak } from './peak-rss.ts';

export interface TrainOptions {
  /** Run only this stage. */
  stage?: StageName;
  /** 'auto' resumes from the latest checkpoint, 'none' starts the stage(s) over, a path resumes from that checkpoint folder. */
  resume: 'auto' | 'none' | (string & {});
  logger: Logger;
  hooks?: LoopHooks;
  /** The config's file name, for messages. */
  configFile?: string;
}

export interface StageSummary {
  stage: StageName;
  status: 'trained' | 'skipped (final exists)';
  metric: string | null;
  value: number | null;
  /** Every dev metric of the task (headline included); null when the stage has no evaluation. */
  metrics: Record<string, number> | null;
  examples: number | null;
  steps: number | null;
  seconds: number | null;
  /** Peak RSS of the stage in this process (MiB); null when it was skipped. */
  peakRssMiB: number | null;
}

const LABELS: Record<StageName, string> = {
  pretrain: 'pretraining (full precision, LM)',
  teacher: 'FP-SFT (teacher)',
  'bitnet-sft': 'BitNet-SFT',
  'continual-pretrain': 'continual pre-training (LM only)',
  distill: 'BitDistill',
};

/** A JSON object from a finished stage's final/ folder; a damaged file is a FormatError that says how to redo the stage. */
function readFinalJson(file: string, stageDir: string): Record<string, unknown> {
  return readJsonObjectFile(
    file,
    `the stage looks finished but its output is damaged: delete ${join(stageDir, 'final')} and run again to redo the stage from its last checkpoint`,
  );
}

function finalSummary(dir: string): { eval: EvalResult | null; steps: number | null; seconds: number | null } {
  const cfgPath = join(dir, 'final', 'config.json');
  const statePath = join(dir, 'final', 'trainer_state.json');
  let ev: EvalResult | null = null;
  if (existsSync(cfgPath)) {
    const bd = readFinalJson(cfgPath, dir)['bitdistill'] as { finalEval?: EvalResult | null } | undefined;
    ev = bd !== null && typeof bd === 'object' ? (bd.finalEval ?? null) : null;
  }
  let steps: number | null = null;
  let seconds: number | null = null;
  if (existsSync(statePath)) {
    const st = readFinalJson(statePath, dir);
    steps = typeof st['step'] === 'number' ? st['step'] : null;
    seconds = typeof st['elapsedSeconds'] === 'number' ? st['elapsedSeconds'] : null;
  }
  return { eval: ev, steps, seconds };
}

function metricsOf(ev: EvalResult | null): Record<string, number> | null {
  if (ev === null) return null;
  return ev.metrics ?? { [ev.metric]: ev.value };
}

const TASK_STAGES: readonly StageName[] = ['teacher', 'bitnet-sft', 'distill'];

/**
 * Before any stage: the task, its data files (columns, at least one row each) and the tokenizer's fit with the
 * label words, every problem at once (a ConfigError naming the config keys), so nothing trains for a stage
 * whose end (its evaluation) could not run.
 */
export async function preflightTask(config: TrainConfig, file = 'config'): Promise<void> {
  const tokenizer = loadTokenizer(config.model.path);
  const { issues } = await checkTaskConfig(config.task, tokenizer, config.eval.mode, file);
  if (issues.length > 0) throw new ConfigError(file, issues);
}

export function summaryMarkdown(name: string, rows: readonly StageSummary[], note: string | null = null): string {
  const lines = [
    `# ${name}: summary`,
    '',
    '| stage | method | dev metric | value | all dev metrics | examples | steps | seconds | peak RSS MiB |',
    '|---|---|---|---:|---|---:|---:|---:|---:|',
    ...rows
      .map((r) =>
        [
          r.stage,
          LABELS[r.stage],
          r.metric ?? '-',
          r.value === null ? '-' : (r.value * 100).toFixed(2),
          r.metrics === null
            ? '-'
            : Object.entries(r.metrics)
                .map(([k, v]) => `${k} ${(v * 100).toFixed(2)}`)
                .join(', '),
          r.examples ?? '-',
          r.steps ?? '-',
          r.seconds === null ? '-' : r.seconds.toFixed(1),
          r.peakRssMiB ?? '-',
        ].join(' | '),
      )
      .map((l) => `| ${l} |`),
    '',
    // The config's note (what to expect at this scale, where the reports are), as small print.
    ...(note === null ? [] : [`<sub>${note.trim().replace(/\s*\n\s*/g, ' ')}</sub>`, '']),
  ];
  return lines.join('\n');
}

export async function runTraining(config: TrainConfig, resolvedYaml: string, o: TrainOptions): Promise<StageSummary[]> {
  const runDir = join(config.outputDir, config.name);
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'config.resolved.yaml'), resolvedYaml);
  if (o.stage !== undefined && !config.stages.includes(o.stage)) {
    throw new ArgumentError(`--stage ${o.stage} is not among the config's stages (${config.stages.join(', ')})`);
  }
  let stages: StageName[] = o.stage !== undefined ? [o.stage] : [...config.stages];
  let resumeFrom: { stage: StageName; dir: string } | null = null;
  if (o.resume !== 'auto' && o.resume !== 'none') {
    // A checkpoint folder: its trainer_state.json names the stage; that stage resumes from it, later ones follow.
    const st = readTrainerState(o.resume);
    const stage = st.stage as StageName;
    if (!config.stages.includes(stage))
      throw new ArgumentError(`--resume ${o.resume}: its stage '${st.stage}' is not among the config's stages (${config.stages.join(', ')})`);
    if (o.stage !== undefined && o.stage !== stage)
      throw new ArgumentError(`--resume ${o.resume} is a checkpoint of stage '${stage}', not of --stage ${o.stage}`);
    resumeFrom = { stage, dir: o.resume };
    stages = o.stage !== undefined ? [stage] : config.stages.slice(config.stages.indexOf(stage));
  }
  if (stages.some((s) => TASK_STAGES.includes(s))) await preflightTask(config, o.configFile);
  const ctx: StageContext = { config, resolvedYaml, runDir, logger: o.logger, hooks: { ...o.hooks, logger: o.logger, resume: o.resume !== 'none' } };
  const rows: StageSummary[] = [];
  for (const stage of config.stages) {
    const dir = join(runDir, stage);
    if (!stages.includes(stage)) continue;
    if (o.resume === 'none') rmSync(dir, { recursive: true, force: true });
    if (existsSync(join(dir, 'final', 'config.json')) && resumeFrom?.stage !== stage) {
      o.logger.info({ stage, final: join(dir, 'final') }, 'stage already finished: skipping');
      const f = finalSummary(dir);
      rows.push({
        stage,
        status: 'skipped (final exists)',
        metric: f.eval?.metric ?? null,
        value: f.eval?.value ?? null,
        metrics: metricsOf(f.eval),
        examples: f.eval?.examples ?? null,
        steps: f.steps,
        seconds: f.seconds,
        peakRssMiB: null,
      });
      continue;
    }
    o.logger.info({ stage, dir }, `stage ${stage}: start`);
    // Each stage's peak RSS is its own: the high-water mark is reset here (Linux), read when the stage ends.
    startStagePeak();
    const stageCtx = resumeFrom?.stage === stage ? { ...ctx, hooks: { ...ctx.hooks, resumeFrom: resumeFrom.dir } } : ctx;
    const res = await STAGE_FUNCTIONS[stage](stageCtx);
    rows.push({
      stage,
      status: 'trained',
      metric: res.eval?.metric ?? null,
      value: res.eval?.value ?? null,
      metrics: metricsOf(res.eval),
      examples: res.eval?.examples ?? null,
      steps: res.state.step,
      seconds: res.state.elapsedSeconds,
      peakRssMiB: res.memory.peakRssMiB,
    });
    o.logger.info(
      { stage, final: res.finalDir, [res.eval?.metric ?? 'metric']: res.eval?.value ?? null, peakRssMiB: res.memory.peakRssMiB },
      `stage ${stage}: done`,
    );
  }
  if (o.stage === undefined) {
    writeFileSync(join(runDir, 'summary.md'), summaryMarkdown(config.name, rows, config.note));
    writeFileSync(join(runDir, 'summary.json'), `${JSON.stringify({ name: config.name, task: config.task.name, stages: rows }, null, 2)}\n`);
  }
  return rows;
}
