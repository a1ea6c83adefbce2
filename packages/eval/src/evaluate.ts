/**
 * GLUE evaluation (PAPER.md section 6). A Predictor turns examples into metric values (class indices, or
 * regression scores), either by `label` scoring (data's labelScoring: the label words' first tokens after the
 * prompt, or each word's whole answer when the words share a first token) or by `generate` (greedy decoding,
 * the text read back as a label word or a number: the paper's protocol). The task, its template and label words
 * come from the model evaluated (its config.json `bitdistill.taskSpec`), so a model is scored on what it was
 * trained to answer. This package owns the Predictor interface, task resolution, runEval and the reports; the
 * predictors live with what they run: the kernels runtime's in @bitdistill/runtime (kernelsPredictor), the tfjs
 * model's in @bitdistill/trainer (tfjsPredictor). It never loads tfjs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, BitDistillError, NotFoundError } from '@bitdistill/core';
import { readJsonObjectFile } from '@bitdistill/format';
import { computeMetrics, devSuffix, getTask, taskFromConfig, type Example, type TaskSpec, type Tokenizer } from '@bitdistill/data';

export type EvalMode = 'label' | 'generate';

export interface Predictor {
  /** 'kernels' or 'tfjs'. */
  readonly runtime: string;
  readonly tokenizer: Tokenizer;
  /**
   * The metric value per example: a class index (-1: the generation matched no label word) or a regression
   * score (NaN: no number generated); `tokens` counts tokens processed.
   */
  predict(task: TaskSpec, examples: readonly Example[], mode: EvalMode, maxLen: number): Promise<{ preds: number[]; tokens: number }>;
}

export interface EvalReport {
  task: string;
  split: string;
  /** The headline metric (the task's first, on the first data file). */
  metric: string;
  value: number;
  /** Every metric of the task (`_m` / `_mm` suffixes with several data files). */
  metrics: Record<string, number>;
  examples: number;
  runtime: string;
  mode: EvalMode;
  tokensPerSecond: number;
  seconds: number;
  model: string;
  templateVersion: string;
  /** Where the task's template and label words came from: the model's record, a config, or the built-in task. */
  templateFrom: TemplateSource;
}

export type TemplateSource = 'model' | 'config' | 'builtin';

export interface TaskChoice {
  /** `--task`: must be the model's task unless `templateFrom` is 'builtin'. */
  name?: string | undefined;
  /** Where the template and label words come from (default: the model's record when it has one). */
  templateFrom?: TemplateSource | undefined;
  /** A config's task block (`eval --config`): its data, and its task with `templateFrom: 'config'`. */
  config?: Readonly<Record<string, unknown>> | undefined;
}

function sameTask(a: string, b: string): boolean {
  const norm = (n: string): string => {
    try {
      return getTask(n).name;
    } catch {
      return n;
    }
  };
  return norm(a) === norm(b);
}

/**
 * The task as the model was trained on it, from its config.json `bitdistill` block: `taskSpec` (the whole task,
 * custom ones included), or for models written before it, the registry task named by `task` with the recorded
 * template, label words and version. A `--task` that names another task is an E_USAGE error: scoring a model on
 * another task's template measures nothing; `templateFrom: 'builtin'` says it is meant (the registry's template).
 */
export function taskForModel(name: string | undefined, modelBlock: Record<string, unknown> | null, choice: Omit<TaskChoice, 'name'> = {}): TaskSpec {
  const from = choice.templateFrom;
  if (from === 'builtin') {
    const n = name ?? (typeof choice.config?.['name'] === 'string' ? choice.config['name'] : undefined);
    if (n === undefined)
      throw new BitDistillError('E_USAGE', '--template-from builtin needs --task NAME', { hint: 'name the GLUE task whose built-in template to use' });
    return getTask(n);
  }
  if (from === 'config') {
    if (choice.config === undefined)
      throw new BitDistillError('E_USAGE', '--template-from config needs --config FILE', { hint: 'pass the training config that defines the task' });
    const t = taskFromConfig(choice.config, { file: 'config', path: 'task' });
    if (name !== undefined && !sameTask(name, t.name)) throw mismatch(name, t.name, 'the config defines');
    return t;
  }
  const recorded = modelTask(modelBlock);
  if (recorded === null) {
    if (from === 'model')
      throw new BitDistillError('E_USAGE', '--template-from model: the model records no task', {
        hint: 'evaluate a checkpoint or export written by `bitdistill train`, or pass --template-from builtin',
      });
    if (choice.config !== undefined) return taskFromConfig(choice.config, { file: 'config', path: 'task' });
    if (name === undefined)
      throw new BitDistillError('E_USAGE', 'the model records no task: pass --task NAME (or --config FILE)', {
        hint: 'models written by `bitdistill train` carry their task; a base model does not',
      });
    return getTask(name);
  }
  if (name !== undefined && !sameTask(name, recorded.name)) throw mismatch(name, recorded.name, 'the model was trained for');
  const configName = choice.config?.['name'];
  if (typeof configName === 'string' && !sameTask(configName, recorded.name)) throw mismatch(configName, recorded.name, 'the model was trained for');
  return recorded;
}

function mismatch(asked: string, actual: string, what: string): BitDistillError {
  return new BitDistillError('E_USAGE', `--task ${asked}, but ${what} '${actual}'`, {
    hint: `drop --task to evaluate ${actual} as trained, or add --template-from builtin to score the model with ${asked}'s built-in template on purpose`,
  });
}

/** The task recorded in a model's `bitdistill` block, or null when it records none. */
export function modelTask(block: Record<string, unknown> | null): TaskSpec | null {
  if (block === null) return null;
  const spec = block['taskSpec'];
  if (spec !== null && typeof spec === 'object' && !Array.isArray(spec))
    return taskFromConfig(spec as Record<string, unknown>, { file: 'config.json', path: 'bitdistill.taskSpec' });
  const name = block['task'];
  if (typeof name !== 'string') return null;
  const t: Record<string, unknown> = { name };
  for (const k of ['template', 'labelWords', 'templateVersion']) if (block[k] !== undefined) t[k] = block[k];
  return taskFromConfig(t, { file: 'config.json', path: 'bitdistill' });
}

/** The shipped GLUE file for a task and split (datasets/glue/<Dir>/<split>.tsv), or an error saying what to pass. */
export function defaultDataFile(task: TaskSpec, split: string, root = 'datasets/glue'): string {
  return defaultDataFiles(task, split, root)[0] as string;
}

/** The shipped GLUE files for a task and split: `dev` is every dev split (MNLI: matched, mismatched). */
export function defaultDataFiles(task: TaskSpec, split: string, root = 'datasets/glue'): string[] {
  if (task.glueDir === undefined)
    throw new ArgumentError(`task '${task.name}' has no default data file`, { hint: 'pass --data FILE, or --config FILE to read its task.dev' });
  const names = split === 'dev' ? task.devSplits.map((d) => d.tsv) : [split.endsWith('.tsv') ? split : `${split}.tsv`];
  return names.map((file) => {
    const path = join(root, task.glueDir as string, file);
    if (!existsSync(path))
      throw new NotFoundError(path, `no ${split} data for ${task.name} at ${path}`, {
        hint: 'pass --data FILE (TSV, JSONL, parquet or Arrow with the HF column names)',
      });
    return path;
  });
}

/** Evaluates each example set (one per data file) and reports every metric; the headline is the first. */
export async function runEval(
  predictor: Predictor,
  task: TaskSpec,
  sets: readonly (readonly Example[])[],
  o: { mode: EvalMode; maxLen: number; split: string; model: string; templateFrom?: TemplateSource },
): Promise<EvalReport> {
  const t0 = performance.now();
  const metrics: Record<string, number> = {};
  let tokens = 0;
  let examples = 0;
  for (const [i, set] of sets.entries()) {
    const r = await predictor.predict(task, set, o.mode, o.maxLen);
    tokens += r.tokens;
    examples += set.length;
    const m = computeMetrics(
      task,
      r.preds,
      set.map((e) => e.label),
    );
    for (const [k, v] of Object.entries(m)) metrics[`${k}${devSuffix(task, i, sets.length)}`] = v;
  }
  const seconds = (performance.now() - t0) / 1000;
  const metric = Object.keys(metrics)[0] ?? 'accuracy';
  return {
    task: task.name,
    split: o.split,
    metric,
    value: metrics[metric] ?? 0,
    metrics,
    examples,
    runtime: predictor.runtime,
    mode: o.mode,
    tokensPerSecond: tokens / Math.max(seconds, 1e-9),
    seconds,
    model: o.model,
    templateVersion: task.templateVersion,
    templateFrom: o.templateFrom ?? 'model',
  };
}

export function reportMarkdown(r: EvalReport): string {
  const rows = Object.entries(r.metrics).map(([k, v]) => `| ${k} | ${(v * 100).toFixed(2)} |`);
  return [
    `# Evaluation: ${r.task} (${r.split})`,
    '',
    `model \`${r.model}\`, runtime ${r.runtime}, mode ${r.mode}, template ${r.templateVersion} (from ${r.templateFrom}), ${r.examples} examples, ` +
      `${r.seconds.toFixed(1)} s (${Math.round(r.tokensPerSecond)} tokens/s)`,
    '',
    '| metric | value (%) |',
    '|---|---:|',
    ...rows,
    '',
  ].join('\n');
}

/** The `bitdistill` block of DIR/config.json (null when there is none); a config.json that is not a JSON object is a FormatError. */
export function readModelBlock(dir: string): Record<string, unknown> | null {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) return null;
  const raw = readJsonObjectFile(p, "the model's config.json is corrupt; evaluate an intact checkpoint (checkpoints/step-N)");
  const b = (raw as Record<string, unknown>)['bitdistill'];
  return b !== null && typeof b === 'object' && !Array.isArray(b) ? (b as Record<string, unknown>) : null;
}
