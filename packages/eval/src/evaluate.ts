/**
 * GLUE evaluation (PAPER.md section 6). A Predictor turns examples into label-word indices, either by
 * `label` scoring (the label words' first tokens after the prompt: fast, one forward per example) or by
 * `generate` (greedy decoding + exact match of the label text: the paper's protocol). The metric comes from
 * the task registry. This package never loads tfjs: the tfjs predictor is supplied by the caller.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError, FormatError, NotFoundError } from '@bitdistill/core';
import {
  answerTokenIds,
  computeMetrics,
  defineTask,
  encodeExample,
  getTask,
  labelWordIds,
  matchLabelWord,
  predictionValue,
  type Example,
  type TaskSpec,
  type Tokenizer,
} from '@bitdistill/data';
import type { TernaryRuntime } from '@bitdistill/runtime';

export type EvalMode = 'label' | 'generate';

export interface Predictor {
  /** 'kernels' or 'tfjs'. */
  readonly runtime: string;
  readonly tokenizer: Tokenizer;
  /** Label-word index per example (-1: the generation matched no label word); `tokens` counts tokens processed. */
  predict(task: TaskSpec, examples: readonly Example[], mode: EvalMode, maxLen: number): Promise<{ words: number[]; tokens: number }>;
}

export interface EvalReport {
  task: string;
  split: string;
  metric: string;
  value: number;
  metrics: Record<string, number>;
  examples: number;
  runtime: string;
  mode: EvalMode;
  tokensPerSecond: number;
  seconds: number;
  model: string;
  templateVersion: string;
}

/** The kernels runtime as a Predictor. */
export function kernelsPredictor(rt: TernaryRuntime): Predictor {
  return {
    runtime: rt.info.embeddings === 'fp32' ? 'kernels' : `kernels (${rt.info.embeddings} embeddings)`,
    tokenizer: rt.tokenizer,
    predict: async (task, examples, mode, maxLen) => {
      const tok = rt.tokenizer;
      const wordIds = mode === 'label' ? labelWordIds(tok, task) : [];
      const maxNew = mode === 'generate' ? Math.max(...answerTokenIds(tok, task).map((a) => a.length)) + 1 : 0;
      const words: number[] = [];
      let tokens = 0;
      for (const ex of examples) {
        const p = encodeExample(tok, task, ex).promptIds;
        const prompt = p.length > maxLen ? p.slice(p.length - maxLen) : p;
        tokens += prompt.length;
        if (mode === 'label') {
          const logits = rt.forward(prompt);
          let best = 0;
          for (let k = 1; k < wordIds.length; k++) if ((logits[wordIds[k] as number] as number) > (logits[wordIds[best] as number] as number)) best = k;
          words.push(best);
        } else {
          const g = rt.generate(prompt, maxNew, tok.eosId);
          tokens += g.ids.length;
          words.push(matchLabelWord(task, tok.decode(g.ids)));
        }
        if (words.length % 64 === 0) await new Promise((r) => setImmediate(r));
      }
      return { words, tokens };
    },
  };
}

/**
 * The task as the model was trained on it: the registry task, with the template, label words and template
 * version recorded in the model's config.json `bitdistill` block when that block names the same task.
 */
export function taskForModel(name: string, modelBlock: Record<string, unknown> | null): TaskSpec {
  const base = getTask(name);
  if (modelBlock === null || modelBlock['task'] !== base.name) return base;
  const template = modelBlock['template'];
  const labelWords = modelBlock['labelWords'];
  const templateVersion = modelBlock['templateVersion'];
  if (typeof template !== 'string' && !Array.isArray(labelWords)) return base;
  const merged = defineTask(
    {
      name: base.name,
      kind: base.kind,
      fields: base.fields,
      labelColumn: base.labelColumn,
      labels: base.labelNames,
      labelWords: Array.isArray(labelWords) ? labelWords : base.labelWords,
      template: typeof template === 'string' ? template : base.template,
      templateVersion: typeof templateVersion === 'string' ? templateVersion : base.templateVersion,
      metrics: base.metrics,
    },
    { file: 'config.json', path: 'bitdistill' },
  );
  return { ...base, ...merged, ...(base.tsv !== undefined ? { tsv: base.tsv } : {}) };
}

/** The shipped GLUE file for a task and split (datasets/glue/<Dir>/<split>.tsv), or an error saying what to pass. */
export function defaultDataFile(task: TaskSpec, split: string, root = 'datasets/glue'): string {
  if (task.glueDir === undefined) throw new ArgumentError(`task '${task.name}' has no default data file`, { hint: 'pass --data FILE' });
  const file = split === 'dev' ? (task.devSplits[0]?.tsv ?? 'dev.tsv') : split.endsWith('.tsv') ? split : `${split}.tsv`;
  const path = join(root, task.glueDir, file);
  if (!existsSync(path)) throw new NotFoundError(path, `no ${split} data for ${task.name} at ${path}`, { hint: 'pass --data FILE (TSV, JSONL, parquet or Arrow with the HF column names)' });
  return path;
}

export async function runEval(predictor: Predictor, task: TaskSpec, examples: readonly Example[], o: { mode: EvalMode; maxLen: number; split: string; model: string }): Promise<EvalReport> {
  const t0 = performance.now();
  const { words, tokens } = await predictor.predict(task, examples, o.mode, o.maxLen);
  const seconds = (performance.now() - t0) / 1000;
  const preds = words.map((w) => (w < 0 ? -1 : predictionValue(task, w)));
  const metrics = computeMetrics(task, preds, examples.map((e) => e.label)) as Record<string, number>;
  const metric = task.metrics[0] ?? 'accuracy';
  return {
    task: task.name,
    split: o.split,
    metric,
    value: metrics[metric] ?? 0,
    metrics,
    examples: examples.length,
    runtime: predictor.runtime,
    mode: o.mode,
    tokensPerSecond: tokens / Math.max(seconds, 1e-9),
    seconds,
    model: o.model,
    templateVersion: task.templateVersion,
  };
}

export function reportMarkdown(r: EvalReport): string {
  const rows = Object.entries(r.metrics).map(([k, v]) => `| ${k} | ${(v * 100).toFixed(2)} |`);
  return [
    `# Evaluation: ${r.task} (${r.split})`,
    '',
    `model \`${r.model}\`, runtime ${r.runtime}, mode ${r.mode}, template ${r.templateVersion}, ${r.examples} examples, ` +
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
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new FormatError(p, `not valid JSON: ${(e as Error).message}`, { hint: 'the model\'s config.json is corrupt; evaluate an intact checkpoint (checkpoints/step-N)', cause: e });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new FormatError(p, 'expected a JSON object', { hint: 'config.json holds the Hugging Face model keys as one object' });
  const b = (raw as Record<string, unknown>)['bitdistill'];
  return b !== null && typeof b === 'object' && !Array.isArray(b) ? (b as Record<string, unknown>) : null;
}
