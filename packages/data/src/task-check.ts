/**
 * The checks a task config must pass before anything trains (issue 20): the task itself (defineTask), its data
 * files (present, readable in their format, the task's columns in the header, at least one labelled row) and the
 * tokenizer (the label words tokenize apart, and in generate mode read back as themselves). Every problem is
 * collected with its config path, so `bitdistill validate` and `train` report them all at once, before a step.
 * Only the header and the first row of each file are read.
 */
import { ConfigError, type ConfigIssue } from '@bitdistill/core';
import { taskTokenizerProblems, type TokenizerLike } from './prompt.ts';
import { readExamples, type DatasetFormat } from './readers.ts';
import { taskFromConfig, type TaskSpec } from './tasks.ts';

/** The data half of a config's task block (the rest are task keys for taskFromConfig). */
export interface TaskDataConfig {
  readonly name: string;
  readonly train: string;
  readonly dev: string | readonly string[];
  readonly format?: DatasetFormat | undefined;
  readonly [key: string]: unknown;
}

/** A config's dev files, always as a list (MNLI: matched, mismatched). */
export function devFiles(t: Pick<TaskDataConfig, 'dev'>): string[] {
  return typeof t.dev === 'string' ? [t.dev] : [...t.dev];
}

/** The metric-name suffix of dev file i when a task has several (MNLI: m, mm; else dev1, dev2...). */
export function devSuffix(task: TaskSpec, i: number, count: number): string {
  if (count <= 1) return '';
  return `_${task.devSplits[i]?.short ?? `dev${i + 1}`}`;
}

function errorText(e: unknown): string {
  if (e instanceof ConfigError) return e.issues.map((i) => `${i.path}: ${i.message}`).join('; ');
  const err = e as { message?: unknown; hint?: unknown };
  const message = typeof err.message === 'string' ? err.message : String(e);
  return typeof err.hint === 'string' ? `${message} (hint: ${err.hint})` : message;
}

/**
 * Every problem of a task config, with its path (`task.dev[1]`, `task.labelWords`...). `tokenizer` null skips
 * the tokenizer check (validate without the model's files). `task` is null when the definition itself is wrong.
 */
export async function checkTaskConfig(
  t: TaskDataConfig,
  tokenizer: TokenizerLike | null,
  mode: 'label' | 'generate',
  file = 'config',
): Promise<{ task: TaskSpec | null; issues: ConfigIssue[] }> {
  const issues: ConfigIssue[] = [];
  let task: TaskSpec | null = null;
  try {
    task = taskFromConfig(t, { file, path: 'task' });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    issues.push(...e.issues);
  }
  if (task === null) return { task, issues };
  const dev = devFiles(t);
  const files: [string, string][] = [
    ['task.train', t.train],
    ...dev.map((f, i): [string, string] => [typeof t.dev === 'string' ? 'task.dev' : `task.dev[${i}]`, f]),
  ];
  for (const [path, f] of files) {
    try {
      const rows = await readExamples(f, task, { limit: 1, ...(t.format !== undefined ? { format: t.format } : {}) });
      if (rows.length === 0) issues.push({ path, message: `${f} holds no examples (a header alone?)` });
    } catch (e) {
      issues.push({ path, message: errorText(e) });
    }
  }
  if (tokenizer !== null) {
    for (const p of taskTokenizerProblems(tokenizer, task, mode)) issues.push({ path: 'task.labelWords', message: p });
  }
  return { task, issues };
}
