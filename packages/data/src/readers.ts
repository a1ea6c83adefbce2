/**
 * Dataset readers, selected by file extension, all returning `{ fields, label }` rows keyed by the HF column
 * names of the task:
 *   .tsv               GLUE TSV. Split on tabs only: GLUE does not quote like CSV (MRPC and QQP text holds bare
 *                      quotes). Header names per task (TsvLayout), or HF names; CoLA train/dev have no header.
 *   .jsonl / .ndjson   one JSON object per line with HF column names (`datasets` `to_json`).
 *   .parquet           HF hub shards, read with hyparquet (+ hyparquet-compressors for snappy/zstd/...) after the
 *                      checks of parquet.ts.
 *   .arrow             Arrow IPC streams as the `datasets` cache writes them (or IPC files), checked by
 *                      arrow-ipc.ts before apache-arrow decodes them.
 * Labels may be class indices (HF: int64, so BigInt from parquet/arrow) or names (GLUE TSV: `entailment`);
 * both become the class index. STS-B labels are the float score.
 */
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { createInterface } from 'node:readline';
import { BitDistillError, FormatError, NotFoundError, UnsupportedError } from '@bitdistill/core';
import { openArrow } from './arrow-ipc.ts';
import { openParquet } from './parquet.ts';
import type { TaskSpec } from './tasks.ts';

/** One labelled example: text fields by HF column name; class index (or STS-B score). */
export interface Example {
  fields: Record<string, string>;
  label: number;
}

export interface ReadOptions {
  /** Read at most this many examples (from the start of the file). */
  limit?: number;
}

export const DATASET_EXTENSIONS = ['.tsv', '.jsonl', '.ndjson', '.parquet', '.arrow'] as const;

export async function readExamples(file: string, task: TaskSpec, options: ReadOptions = {}): Promise<Example[]> {
  checkFile(file, DATASET_EXTENSIONS, 'dataset');
  const limit = options.limit ?? Infinity;
  switch (extname(file).toLowerCase()) {
    case '.tsv':
      return readTsv(file, task, limit);
    case '.jsonl':
    case '.ndjson':
      return readJsonl(file, task, limit);
    case '.parquet':
      return readParquet(file, task, limit);
    case '.arrow':
      return readArrow(file, task, limit);
    default:
      throw new UnsupportedError(`${file}: cannot read '${extname(file) || '(no extension)'}' files`, {
        hint: `dataset files must end in ${DATASET_EXTENSIONS.join(', ')}`,
      });
  }
}

/** NotFoundError (with the readable files next to it as a hint) unless `file` is an existing regular file. */
export function checkFile(file: string, extensions: readonly string[], what: string): void {
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch {
    const dir = dirname(file);
    let nearby: string[] = [];
    try {
      nearby = readdirSync(dir).filter((n) => extensions.includes(extname(n).toLowerCase()));
    } catch {
      // the folder is missing too; the hint below says so
    }
    throw new NotFoundError(file, `${what} file not found: ${file}`, {
      hint:
        nearby.length > 0
          ? `${dir} holds: ${nearby.sort().join(', ')}`
          : `check the path in the config (relative paths start from the working directory, ${process.cwd()})`,
    });
  }
  if (!isFile) {
    throw new NotFoundError(file, `${what} path is not a file: ${file}`, { hint: 'give the path of one data file' });
  }
}

function dataError(file: string, where: string, message: string, hint?: string): BitDistillError {
  return new BitDistillError('E_DATA', `${file}:${where}: ${message}`, hint === undefined ? {} : { hint });
}

/** The task's columns as HF names: text fields, then the label. */
function hfColumns(task: TaskSpec): string[] {
  return [...task.fields, task.labelColumn];
}

function missingColumns(
  file: string,
  task: TaskSpec,
  found: readonly string[],
  expected: readonly string[],
  where?: string,
): BitDistillError {
  const missing = expected.filter((c) => !found.includes(c));
  return new BitDistillError(
    'E_DATA',
    `${file}${where === undefined ? '' : `:${where}`}: ` +
      `missing column${missing.length === 1 ? '' : 's'} ${missing.join(', ')} for task ${task.name} ` +
      `(expected ${expected.join(', ')}; found ${found.join(', ') || 'none'})`,
    { hint: `is this a ${task.name} file? test splits have no labels; a custom task names its columns in fields/labelColumn` },
  );
}

/**
 * A raw label value -> class index (or score). Accepted: an index in range (number, BigInt or digit string),
 * or a label name. `where` is `line 12` / `row 3` for the message.
 */
export function normaliseLabel(task: TaskSpec, raw: unknown, file: string, where: string): number {
  if (task.kind === 'regression') {
    const v = typeof raw === 'bigint' ? Number(raw) : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    throw dataError(file, where, `label ${JSON.stringify(String(raw))} is not a number (task ${task.name} is a regression)`);
  }
  const n = task.labelNames.length;
  let index: number | undefined;
  if (typeof raw === 'bigint') index = Number(raw);
  else if (typeof raw === 'number') index = raw;
  else if (typeof raw === 'string') {
    const byName = task.labelNames.indexOf(raw.trim());
    if (byName >= 0) return byName;
    if (/^-?\d+$/.test(raw.trim())) index = Number(raw.trim());
  }
  if (index !== undefined && Number.isInteger(index) && index >= 0 && index < n) return index;
  const allowed = `${task.labelNames.join(', ')} (or 0..${n - 1})`;
  throw dataError(
    file,
    where,
    `label ${raw === null || raw === undefined ? String(raw) : JSON.stringify(typeof raw === 'bigint' ? Number(raw) : raw)} ` +
      `is not one of the ${task.name} labels: ${allowed}`,
    index === -1 ? 'label -1 marks an unlabelled test split; train and evaluate on train/validation files' : undefined,
  );
}

function textField(raw: unknown, column: string, file: string, where: string): string {
  if (typeof raw === 'string') return raw;
  throw dataError(file, where, `column ${column} holds ${raw === null ? 'null' : typeof raw}, expected text`);
}

async function readTsv(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const out: Example[] = [];
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  const wanted = hfColumns(task);
  const tsvName = (c: string): string => task.tsv?.rename?.[c] ?? c;
  let columnCount = 0;
  let index: number[] = []; // position of each wanted column
  let lineNo = 0;
  let pendingBlank = 0; // a blank line is an error unless only blank lines follow it
  try {
    for await (let line of lines) {
      lineNo++;
      if (out.length >= limit) break;
      if (lineNo === 1) {
        line = line.replace(/^\uFEFF/, '');
        const header = line.split('\t');
        const byHeader = wanted.map((c) => {
          const i = header.indexOf(tsvName(c));
          return i >= 0 ? i : header.indexOf(c);
        });
        if (byHeader.every((i) => i >= 0)) {
          index = byHeader;
          columnCount = header.length;
          continue;
        }
        const headerless = task.tsv?.headerless;
        if (headerless !== undefined && header.length === headerless.length) {
          index = wanted.map((c) => headerless.indexOf(tsvName(c)));
          columnCount = headerless.length;
          // fall through: line 1 is a data row
        } else {
          throw missingColumns(file, task, header, wanted.map(tsvName));
        }
      }
      if (line.length === 0) {
        pendingBlank = pendingBlank || lineNo;
        continue;
      }
      if (pendingBlank) throw new FormatError(file, `line ${pendingBlank}: empty line inside the data`);
      const cols = line.split('\t');
      if (cols.length !== columnCount) {
        throw new FormatError(file, `line ${lineNo}: expected ${columnCount} tab-separated columns, found ${cols.length}`, {
          hint: 'GLUE TSV fields are separated by tabs and never quoted; a tab or newline inside a text field breaks the row',
        });
      }
      const where = `line ${lineNo}`;
      const fields: Record<string, string> = {};
      task.fields.forEach((f, k) => {
        fields[f] = cols[index[k] as number] as string;
      });
      const label = normaliseLabel(task, cols[index[task.fields.length] as number], file, where);
      out.push({ fields, label });
    }
  } finally {
    lines.close();
  }
  if (lineNo === 0) throw dataError(file, 'line 1', 'the file is empty');
  return out;
}

async function readJsonl(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const out: Example[] = [];
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  const wanted = hfColumns(task);
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo++;
      if (out.length >= limit) break;
      if (line.trim() === '') continue;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new FormatError(file, `line ${lineNo}: not valid JSON (${(e as Error).message})`, {
          hint: 'JSON Lines holds one complete JSON object per line',
        });
      }
      if (typeof row !== 'object' || row === null || Array.isArray(row)) {
        throw new FormatError(file, `line ${lineNo}: expected a JSON object, found ${Array.isArray(row) ? 'an array' : typeof row}`);
      }
      const obj = row as Record<string, unknown>;
      const keys = Object.keys(obj);
      const where = `line ${lineNo}`;
      if (!wanted.every((c) => c in obj)) throw missingColumns(file, task, keys, wanted, where);
      const fields: Record<string, string> = {};
      for (const f of task.fields) fields[f] = textField(obj[f], f, file, where);
      out.push({ fields, label: normaliseLabel(task, obj[task.labelColumn], file, where) });
    }
  } finally {
    lines.close();
  }
  return out;
}

async function readParquet(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const wanted = hfColumns(task);
  const parquet = await openParquet(file);
  if (!wanted.every((c) => parquet.columns.includes(c))) throw missingColumns(file, task, parquet.columns, wanted);
  const rows = await parquet.read(wanted, 0, Math.min(parquet.numRows, limit));
  return rows.map((row, i) => {
    const where = `row ${i + 1}`;
    const fields: Record<string, string> = {};
    for (const f of task.fields) fields[f] = textField(row[f], f, file, where);
    return { fields, label: normaliseLabel(task, row[task.labelColumn], file, where) };
  });
}

async function readArrow(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const wanted = hfColumns(task);
  const arrow = openArrow(file);
  try {
    const found = arrow.schema.fields.map((f) => f.name);
    if (!wanted.every((c) => found.includes(c))) throw missingColumns(file, task, found, wanted);
    const out: Example[] = [];
    for (const batch of arrow.batches()) {
      const fieldColumns = task.fields.map((f) => batch.getChild(f));
      const labelColumn = batch.getChild(task.labelColumn);
      for (let i = 0; i < batch.numRows && out.length < limit; i++) {
        const where = `row ${out.length + 1}`;
        const fields: Record<string, string> = {};
        task.fields.forEach((f, k) => {
          fields[f] = textField(fieldColumns[k]?.get(i), f, file, where);
        });
        out.push({ fields, label: normaliseLabel(task, labelColumn?.get(i), file, where) });
      }
      if (out.length >= limit) break;
    }
    return out;
  } finally {
    arrow.close();
  }
}
