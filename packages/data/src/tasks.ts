/**
 * The task registry: the nine GLUE tasks framed generatively (PAPER.md section 6). The causal LM reads a prompt
 * rendered from `template` and generates one label word (a verbalizer) followed by EOS; there is no classifier
 * head. Templates and label words are ours (the paper leaves them open), so each carries a version that is
 * written into checkpoints: a model trained with sst2@v1 must be evaluated with sst2@v1. TASKS.md lists every
 * template and label word; a test keeps it in step with this file.
 *
 * STS-B is regression (a similarity score in [0, 5]). A generative model emits one of the words "0".."5": the
 * training answer is the gold score rounded to the nearest integer (halves round up, 2.5 -> "3"); at evaluation
 * the emitted word is read back as a number and Pearson/Spearman are computed against the unrounded gold scores.
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
    template:
      'Sentence 1: {sentence1}\nSentence 2: {sentence2}\n' +
      'How similar are the two sentences, from 0 (unrelated) to 5 (same meaning)?\nAnswer:',
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
    template:
      'Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the hypothesis? ' +
      'Answer yes, maybe or no.\nAnswer:',
    templateVersion: 'v1',
    metrics: ['accuracy'],
    tsv: { rename: { premise: 'sentence1', hypothesis: 'sentence2', label: 'gold_label' } },
    glueDir: 'MNLI',
    devSplits: [
      { hf: 'validation_matched', tsv: 'dev_matched.tsv' },
      { hf: 'validation_mismatched', tsv: 'dev_mismatched.tsv' },
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

/** The number a label word stands for in the metrics: the class index, or the STS-B score. */
export function predictionValue(task: TaskSpec, wordIndex: number): number {
  if (task.kind === 'regression') return Number(task.labelWords[wordIndex]);
  return wordIndex;
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

/**
 * A task defined in a config, validated with every problem reported at once (ConfigError). Accepted keys:
 * `name`, `fields` (HF-style column names), `template`, `labelWords`, `labels` (label names as they appear in
 * the data; default = labelWords), `metric` or `metrics`, `kind` (`classification` | `regression`, default
 * classification), `labelColumn` (default `label`), `templateVersion` (default `v1`).
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
  const known = [
    'name',
    'kind',
    'fields',
    'labelColumn',
    'labels',
    'labelWords',
    'template',
    'templateVersion',
    'metric',
    'metrics',
  ];
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
  const labelWords = strList('labelWords', true) ?? [];
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
      if (!Number.isFinite(Number(w))) bad(`labelWords[${i}]`, `'${w}' must be a number for a regression task`);
    }
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
    devSplits: DEV,
  };
}
