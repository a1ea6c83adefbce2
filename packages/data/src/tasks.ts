/**
 * The task registry: the nine GLUE tasks framed generatively (PAPER.md section 6). The causal LM reads a prompt
 * rendered from `template` and generates one label word (a verbalizer) followed by EOS; there is no classifier
 * head. Templates and label words are ours (the paper leaves them open), so each carries a version that is
 * written into checkpoints: a model trained with sst2@v1 must be evaluated with sst2@v1. TASKS.md lists every
 * template and label word; a test keeps it in step with this file.
 *
 * STS-B is regression (a similarity score in [0, 5]). A generative model emits one of the words "0".."5": the
 * training answer is the gold score rounded to the nearest bucket (halves round up, 2.5 -> "3"). At evaluation,
 * label scoring takes the expectation of the bucket values under the model's probabilities of each bucket word's
 * whole answer (prompt.ts), and generation reads the first number in the generated text; an answer with no
 * number counts as the middle of the range. Pearson/Spearman are computed against the unrounded gold scores.
 */
import { ArgumentError, ConfigError } from '@bitdistill/core';
import type { ConfigIssue } from '@bitdistill/core';

export type MetricName = 'accuracy' | 'f1' | 'matthews' | 'pearson' | 'spearman';
export const METRIC_NAMES: readonly MetricName[] = ['accuracy', 'f1', 'matthews', 'pearson', 'spearman'];

export type TaskKind = 'classification' | 'regression';

/** How a GLUE TSV file names its columns, where it differs from the HF dataset. */
export interface TsvLayout {
  /** TSV column name for an HF column (fields and the label column), e.g. MNLI `premise` -> `sentence1`. */
  readonly rename?: Readonly<Record<string, string>>;
  /** Column names by position for files without a header line (CoLA train/dev). */
  readonly headerless?: readonly string[];
}

/** One dev split: its HF split name and its GLUE TSV file name. */
export interface DevSplit {
  readonly hf: string;
  readonly tsv: string;
  /** Suffix of this split's metrics when a task has several dev splits (MNLI: `accuracy_m`, `accuracy_mm`). */
  readonly short?: string;
}

export interface TaskSpec {
  /** Registry key, e.g. `sst2`. */
  readonly name: string;
  readonly kind: TaskKind;
  /** HF column names of the text inputs, in prompt order. */
  readonly fields: readonly string[];
  /** HF column holding the label (`label` for every GLUE task). */
  readonly labelColumn: string;
  /** Class names in HF order: index = label id. Empty for regression. */
  readonly labelNames: readonly string[];
  /** The word the model generates for each class (same order as labelNames); regression: the score buckets. */
  readonly labelWords: readonly string[];
  /** Regression: the score range [lo, hi]; an answer without a number counts as its middle. */
  readonly range?: readonly [number, number];
  /** Prompt text with `{field}` placeholders; the answer follows it after one space. */
  readonly template: string;
  /** Bumped whenever template or labelWords change. */
  readonly templateVersion: string;
  /** Metrics to report; the first is the one used to pick the best checkpoint. */
  readonly metrics: readonly MetricName[];
  /** GLUE TSV column layout (GLUE tasks only; custom tasks read TSV with their HF column names). */
  readonly tsv?: TsvLayout;
  /** GLUE folder name (`SST-2`) for tasks from the GLUE distribution. */
  readonly glueDir?: string;
  /** Dev splits; MNLI has two (matched, mismatched). */
  readonly devSplits: readonly DevSplit[];
}

const DEV: readonly DevSplit[] = [{ hf: 'validation', tsv: 'dev.tsv' }];

const YES_NO_TAIL = 'Answer yes or no.\nAnswer:';

/** The nine GLUE tasks. Label names and their order follow the HF `nyu-mll/glue` dataset features. */
export const GLUE_TASKS = {
  cola: {
    name: 'cola',
    kind: 'classification',
    fields: ['sentence'],
    labelColumn: 'label',
    labelNames: ['unacceptable', 'acceptable'],
    labelWords: ['no', 'yes'],
    template: `Sentence: {sentence}\nIs this sentence grammatically acceptable? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['matthews', 'accuracy'],
    // GLUE CoLA train/dev have no header: source, label, original (star) judgement, sentence.
    tsv: { headerless: ['source', 'label', 'original_label', 'sentence'] },
    glueDir: 'CoLA',
    devSplits: DEV,
  },
  sst2: {
    name: 'sst2',
    kind: 'classification',
    fields: ['sentence'],
    labelColumn: 'label',
    labelNames: ['negative', 'positive'],
    labelWords: ['negative', 'positive'],
    template: 'Review: {sentence}\nIs the sentiment of this review positive or negative?\nAnswer:',
    templateVersion: 'v1',
    metrics: ['accuracy'],
    glueDir: 'SST-2',
    devSplits: DEV,
  },
  mrpc: {
    name: 'mrpc',
    kind: 'classification',
    fields: ['sentence1', 'sentence2'],
    labelColumn: 'label',
    labelNames: ['not_equivalent', 'equivalent'],
    labelWords: ['no', 'yes'],
    template: `Sentence 1: {sentence1}\nSentence 2: {sentence2}\nDo the two sentences mean the same thing? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['f1', 'accuracy'],
    tsv: { rename: { sentence1: '#1 String', sentence2: '#2 String', label: 'Quality' } },
    glueDir: 'MRPC',
    devSplits: DEV,
  },
  stsb: {
    name: 'stsb',
    kind: 'regression',
    fields: ['sentence1', 'sentence2'],
    labelColumn: 'label',
    labelNames: [],
    labelWords: ['0', '1', '2', '3', '4', '5'],
    range: [0, 5],
    template: 'Sentence 1: {sentence1}\nSentence 2: {sentence2}\n' + 'How similar are the two sentences, from 0 (unrelated) to 5 (same meaning)?\nAnswer:',
    templateVersion: 'v1',
    metrics: ['pearson', 'spearman'],
    tsv: { rename: { label: 'score' } },
    glueDir: 'STS-B',
    devSplits: DEV,
  },
  qqp: {
    name: 'qqp',
    kind: 'classification',
    fields: ['question1', 'question2'],
    labelColumn: 'label',
    labelNames: ['not_duplicate', 'duplicate'],
    labelWords: ['no', 'yes'],
    template: `Question 1: {question1}\nQuestion 2: {question2}\nDo the two questions ask the same thing? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['f1', 'accuracy'],
    tsv: { rename: { label: 'is_duplicate' } },
    glueDir: 'QQP',
    devSplits: DEV,
  },
  mnli: {
    name: 'mnli',
    kind: 'classification',
    fields: ['premise', 'hypothesis'],
    labelColumn: 'label',
    labelNames: ['entailment', 'neutral', 'contradiction'],
    labelWords: ['yes', 'maybe', 'no'],
    template: 'Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis? ' + 'Answer yes, maybe or no.\nAnswer:',
    templateVersion: 'v1',
    metrics: ['accuracy'],
    tsv: { rename: { premise: 'sentence1', hypothesis: 'sentence2', label: 'gold_label' } },
    glueDir: 'MNLI',
    devSplits: [
      { hf: 'validation_matched', tsv: 'dev_matched.tsv', short: 'm' },
      { hf: 'validation_mismatched', tsv: 'dev_mismatched.tsv', short: 'mm' },
    ],
  },
  qnli: {
    name: 'qnli',
    kind: 'classification',
    fields: ['question', 'sentence'],
    labelColumn: 'label',
    labelNames: ['entailment', 'not_entailment'],
    labelWords: ['yes', 'no'],
    template: `Question: {question}\nSentence: {sentence}\nDoes the sentence answer the question? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['accuracy'],
    glueDir: 'QNLI',
    devSplits: DEV,
  },
  rte: {
    name: 'rte',
    kind: 'classification',
    fields: ['sentence1', 'sentence2'],
    labelColumn: 'label',
    labelNames: ['entailment', 'not_entailment'],
    labelWords: ['yes', 'no'],
    template: `Premise: {sentence1}\nHypothesis: {sentence2}\nDoes the premise entail the hypothesis? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['accuracy'],
    glueDir: 'RTE',
    devSplits: DEV,
  },
  wnli: {
    name: 'wnli',
    kind: 'classification',
    fields: ['sentence1', 'sentence2'],
    labelColumn: 'label',
    // HF order for WNLI is the reverse of RTE's: 0 = not_entailment.
    labelNames: ['not_entailment', 'entailment'],
    labelWords: ['no', 'yes'],
    template: `Premise: {sentence1}\nHypothesis: {sentence2}\nDoes the premise entail the hypothesis? ${YES_NO_TAIL}`,
    templateVersion: 'v1',
    metrics: ['accuracy'],
    glueDir: 'WNLI',
    devSplits: DEV,
  },
} as const satisfies Record<string, TaskSpec>;

export type GlueTaskName = keyof typeof GLUE_TASKS;
export const GLUE_TASK_NAMES = Object.keys(GLUE_TASKS) as GlueTaskName[];

/** A GLUE task by name (case-insensitive; `sst-2`, `sts-b` also accepted). */
export function getTask(name: string): TaskSpec {
  const key = name.toLowerCase().replace(/-/g, '');
  if (key in GLUE_TASKS) return GLUE_TASKS[key as GlueTaskName];
  throw new ArgumentError(`unknown task '${name}'`, {
    hint: `built-in tasks: ${GLUE_TASK_NAMES.join(', ')}; or define one in the config (fields, template, labelWords, metric)`,
  });
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The field names used by a template, in order of first appearance. */
export function templatePlaceholders(template: string): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    const name = m[1] as string;
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/**
 * The prompt for one example: the template with each `{field}` replaced by the field's text, trimmed (GLUE
 * SST-2 sentences end in a space). The answer is not included; it follows after one space.
 */
export function renderPrompt(task: TaskSpec, fields: Readonly<Record<string, string>>): string {
  return task.template.replace(PLACEHOLDER, (whole, name: string) => {
    const value = fields[name];
    if (value === undefined) {
      throw new ArgumentError(`task ${task.name}: the example has no field '${name}' used by the template`, {
        hint: `the example's fields are: ${Object.keys(fields).join(', ') || '(none)'}`,
      });
    }
    return value.trim();
  });
}

/** Index into labelWords of the answer for a label: the class itself, or the rounded STS-B score. */
export function answerIndex(task: TaskSpec, label: number): number {
  if (task.kind === 'regression') {
    const buckets = task.labelWords.map(Number);
    // Nearest bucket; halves go up (2.5 -> 3), ties between buckets resolved towards the larger.
    let best = 0;
    for (let i = 1; i < buckets.length; i++) {
      if (Math.abs(label - (buckets[i] as number)) <= Math.abs(label - (buckets[best] as number))) best = i;
    }
    return best;
  }
  if (!Number.isInteger(label) || label < 0 || label >= task.labelWords.length) {
    throw new ArgumentError(`task ${task.name}: label ${label} is not a class index 0..${task.labelWords.length - 1}`);
  }
  return label;
}

/** The number a label word stands for in the metrics: the class index, or the regression bucket's value. */
export function predictionValue(task: TaskSpec, wordIndex: number): number {
  if (task.kind === 'regression') return Number(task.labelWords[wordIndex]);
  return wordIndex;
}

/** A regression task's score range: `range`, else the span of its buckets. */
export function scoreRange(task: TaskSpec): readonly [number, number] {
  if (task.range !== undefined) return task.range;
  let lo = Infinity;
  let hi = -Infinity;
  for (const w of task.labelWords) {
    lo = Math.min(lo, Number(w));
    hi = Math.max(hi, Number(w));
  }
  return [lo, hi];
}

/**
 * Reads a generated answer back as a label word index, or -1 if it is none: exact match of the trimmed text
 * (case-sensitive, as the model was trained), falling back to its first whitespace-separated word when the
 * generation ran on past the word without EOS.
 */
export function matchLabelWord(task: TaskSpec, generated: string): number {
  const text = generated.trim();
  const exact = task.labelWords.indexOf(text);
  if (exact >= 0) return exact;
  const first = text.split(/\s+/)[0] ?? '';
  return task.labelWords.indexOf(first);
}

const NUMBER = /[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?/;

/**
 * The metric value of a generated answer: a class index (-1 for no label word) or, for regression, the first
 * number in the text clamped to the score range (NaN for no number: computeMetrics counts it as the middle).
 */
export function readAnswer(task: TaskSpec, generated: string): number {
  if (task.kind !== 'regression') return matchLabelWord(task, generated);
  const m = NUMBER.exec(generated);
  if (m === null) return NaN;
  const [lo, hi] = scoreRange(task);
  const v = Number(m[0]);
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : NaN;
}

/**
 * A task defined in a config, validated with every problem reported at once (ConfigError). Accepted keys:
 * `name`, `fields` (HF-style column names), `template`, `labelWords`, `labels` (label names as they appear in
 * the data; default = labelWords), `metric` or `metrics`, `kind` (`classification` | `regression`, default
 * classification), `labelColumn` (default `label`), `templateVersion` (default `v1`), and for regression
 * `range: [lo, hi]` (labelWords, the score buckets, default to the integers lo..hi).
 */
export function defineTask(spec: unknown, where: { file?: string; path?: string } = {}): TaskSpec {
  const file = where.file ?? '<task>';
  const at = (key: string): string => (where.path ? `${where.path}.${key}` : key);
  const issues: ConfigIssue[] = [];
  const bad = (key: string, message: string): void => {
    issues.push({ path: at(key), message });
  };
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw new ConfigError(file, [{ path: where.path ?? '', message: 'a task must be a mapping' }]);
  }
  const o = spec as Record<string, unknown>;
  const known = ['name', 'kind', 'fields', 'labelColumn', 'labels', 'labelWords', 'template', 'templateVersion', 'metric', 'metrics', 'range'];
  for (const k of Object.keys(o)) if (!known.includes(k)) bad(k, `unknown key (known: ${known.join(', ')})`);

  const str = (key: string, fallback?: string): string => {
    const v = o[key];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || v.length === 0) {
      bad(key, v === undefined ? 'required' : 'must be a non-empty string');
      return '';
    }
    return v;
  };
  const strList = (key: string, required: boolean): string[] | undefined => {
    const v = o[key];
    if (v === undefined) {
      if (required) bad(key, 'required');
      return undefined;
    }
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string' && x.length > 0)) {
      bad(key, 'must be a non-empty list of non-empty strings');
      return undefined;
    }
    const list = v as string[];
    const dup = list.find((x, i) => list.indexOf(x) !== i);
    if (dup !== undefined) bad(key, `'${dup}' appears twice`);
    return list;
  };

  const name = str('name');
  const kindRaw = str('kind', 'classification');
  const kind: TaskKind = kindRaw === 'regression' ? 'regression' : 'classification';
  if (kindRaw !== 'classification' && kindRaw !== 'regression') bad('kind', `must be classification or regression, not '${kindRaw}'`);
  const fields = strList('fields', true) ?? [];
  const labelColumn = str('labelColumn', 'label');
  const template = str('template');
  const templateVersion = str('templateVersion', 'v1');
  let range: [number, number] | undefined;
  if (o['range'] !== undefined) {
    const r = o['range'];
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => typeof x === 'number' && Number.isFinite(x)) || (r[0] as number) >= (r[1] as number)) {
      bad('range', 'must be [lo, hi], two numbers with lo < hi');
    } else range = [r[0] as number, r[1] as number];
    if (kind !== 'regression') bad('range', 'only a regression task has a score range');
  }
  // A regression task with an integer range may leave its buckets to the range: the integers lo..hi.
  const defaultBuckets =
    kind === 'regression' &&
    o['labelWords'] === undefined &&
    range !== undefined &&
    Number.isInteger(range[0]) &&
    Number.isInteger(range[1]) &&
    range[1] - range[0] <= 100
      ? Array.from({ length: range[1] - range[0] + 1 }, (_, i) => String(range[0] + i))
      : undefined;
  const labelWords = defaultBuckets ?? strList('labelWords', true) ?? [];
  const labels = strList('labels', false);

  if (template) {
    const used = templatePlaceholders(template);
    for (const p of used) if (!fields.includes(p)) bad('template', `placeholder {${p}} is not one of fields (${fields.join(', ')})`);
    for (const f of fields) if (!used.includes(f)) bad('fields', `field '${f}' is not used in the template`);
    if (used.length === 0) bad('template', 'has no {field} placeholder');
  }
  if (fields.includes(labelColumn)) bad('labelColumn', `'${labelColumn}' is also listed in fields`);
  for (const [i, w] of labelWords.entries()) {
    if (w !== w.trim() || /\s/.test(w)) bad(`labelWords[${i}]`, `'${w}' must be one word without spaces (the prompt adds the space)`);
  }
  if (kind === 'regression') {
    if (labels !== undefined) bad('labels', 'a regression task has no label names; labelWords are the score buckets');
    for (const [i, w] of labelWords.entries()) {
      const v = Number(w);
      if (!Number.isFinite(v)) bad(`labelWords[${i}]`, `'${w}' must be a number for a regression task`);
      else if (range !== undefined && (v < range[0] || v > range[1])) bad(`labelWords[${i}]`, `${w} is outside range [${range[0]}, ${range[1]}]`);
    }
    if (labelWords.length < 2) bad('labelWords', 'a regression task needs at least two score buckets (or an integer range)');
  } else {
    if (labelWords.length < 2) bad('labelWords', 'a classification task needs at least two label words');
    if (labels !== undefined && labels.length !== labelWords.length) {
      bad('labels', `has ${labels.length} names but labelWords has ${labelWords.length}`);
    }
  }

  let metrics: MetricName[] = [];
  if (o['metric'] !== undefined && o['metrics'] !== undefined) bad('metric', 'give either metric or metrics, not both');
  const metricRaw = o['metrics'] ?? o['metric'];
  const metricKey = o['metrics'] !== undefined ? 'metrics' : 'metric';
  const rawList = Array.isArray(metricRaw) ? metricRaw : metricRaw === undefined ? [] : [metricRaw];
  if (rawList.length === 0) bad(metricKey, `required: one or more of ${METRIC_NAMES.join(', ')}`);
  for (const m of rawList) {
    if (typeof m === 'string' && (METRIC_NAMES as readonly string[]).includes(m)) metrics.push(m as MetricName);
    else bad(metricKey, `'${String(m)}' is not a metric (${METRIC_NAMES.join(', ')})`);
  }
  metrics = [...new Set(metrics)];
  const regressionMetrics: MetricName[] = ['pearson', 'spearman'];
  for (const m of metrics) {
    if ((kind === 'regression') !== regressionMetrics.includes(m)) {
      bad(metricKey, `${m} does not apply to a ${kind} task`);
    }
    if (m === 'f1' && labelWords.length !== 2) bad(metricKey, 'f1 is binary (positive class = label 1): needs exactly two labels');
  }

  if (issues.length > 0) throw new ConfigError(file, issues);
  return {
    name,
    kind,
    fields,
    labelColumn,
    labelNames: kind === 'regression' ? [] : (labels ?? labelWords),
    labelWords,
    template,
    templateVersion,
    metrics,
    ...(kind === 'regression' ? { range: range ?? bucketSpan(labelWords) } : {}),
    devSplits: DEV,
  };
}

function bucketSpan(words: readonly string[]): [number, number] {
  const values = words.map(Number);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return [lo, hi];
}

/** The keys of a task that defineTask reads: what a config or a model's `bitdistill.taskSpec` records. */
export type TaskRecord = Record<string, unknown>;

/** A task as plain JSON (written into checkpoints and exports as `bitdistill.taskSpec`); defineTask reads it back. */
export function taskRecord(task: TaskSpec): TaskRecord {
  return {
    name: task.name,
    kind: task.kind,
    fields: [...task.fields],
    labelColumn: task.labelColumn,
    ...(task.kind === 'classification' ? { labels: [...task.labelNames] } : { range: [...scoreRange(task)] }),
    labelWords: [...task.labelWords],
    template: task.template,
    templateVersion: task.templateVersion,
    metrics: [...task.metrics],
  };
}

/**
 * A task from a config's task block or a model's recorded taskSpec: a registry task (sst2, mnli, ...), optionally
 * with some keys changed (template, labelWords, ...), or a wholly custom task defined by those keys (defineTask
 * checks it, every problem at once, with `path` in front of each key). A registry task keeps its GLUE TSV layout,
 * folder and dev splits whatever keys change.
 */
export function taskFromConfig(t: Readonly<Record<string, unknown>>, where: { file?: string; path?: string } = {}): TaskSpec {
  const custom: Record<string, unknown> = {};
  for (const k of ['kind', 'fields', 'labelColumn', 'labels', 'labelWords', 'template', 'templateVersion', 'metric', 'metrics', 'range']) {
    if (t[k] !== undefined) custom[k] = t[k];
  }
  const name = t['name'];
  let registry: TaskSpec | null = null;
  if (typeof name === 'string') {
    try {
      registry = getTask(name);
    } catch {
      registry = null;
    }
  }
  if (registry === null) return defineTask({ name, ...custom }, where);
  if (Object.keys(custom).length === 0) return registry;
  // The registry's keys, then the changes; a kind change drops what does not apply to the new kind.
  const kind = custom['kind'] ?? registry.kind;
  const base: Record<string, unknown> = { ...taskRecord(registry), name: registry.name };
  if (kind !== registry.kind) {
    delete base['labels'];
    delete base['range'];
    delete base['metrics'];
    if (custom['labelWords'] === undefined) delete base['labelWords'];
  }
  if (custom['metric'] !== undefined) delete base['metrics'];
  // New label words for a regression registry task change the buckets, not the range.
  const merged = defineTask({ ...base, ...custom }, where);
  const layout = {
    devSplits: registry.devSplits,
    ...(registry.tsv !== undefined ? { tsv: registry.tsv } : {}),
    ...(registry.glueDir !== undefined ? { glueDir: registry.glueDir } : {}),
  };
  return { ...merged, ...layout };
}
