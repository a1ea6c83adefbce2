/**
 * Dataset readers, selected by file extension (or an explicit `format`, for a file under another extension),
 * all returning `{ fields, label }` rows keyed by the HF column names of the task:
 *   .tsv / .txt        GLUE TSV. Split on tabs only: GLUE does not quote like CSV (MRPC and QQP text holds bare
 *                      quotes). Header names per task (TsvLayout), or HF names; CoLA train/dev have no header.
 *                      `.txt` is the original MSRP release (msr_paraphrase_train.txt): the same TSV, BOM included.
 *   .jsonl / .ndjson   one JSON object per line with HF column names (`datasets` `to_json`).
 *   .parquet           HF hub shards, read with hyparquet (+ hyparquet-compressors for snappy/zstd/...) after the
 *                      checks of parquet.ts.
 *   .arrow             Arrow IPC streams as the `datasets` cache writes them (or IPC files), checked by
 *                      arrow-ipc.ts before apache-arrow decodes them.
 * Labels may be class indices (HF: int64, so BigInt from parquet/arrow) or names (GLUE TSV: `entailment`);
 * both become the class index. STS-B labels are the float score.
 * Text files are read line by line (LF or CRLF), UTF-8 with bad bytes as U+FFFD, a line at most MAX_LINE_BYTES;
 * every problem is a typed error naming the file and the line or row, with values cut short in messages.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { BitDistillError, FormatError, NotFoundError, UnsupportedError } from '@bitdistill/core';
import { openArrow } from './arrow-ipc.ts';
import { openParquet } from './parquet.ts';
import { nameList, preview } from './preview.ts';
import type { TaskSpec } from './tasks.ts';

/** One labelled example: text fields by HF column name; class index (or STS-B score). */
export interface Example {
  fields: Record<string, string>;
  label: number;
}

export type DatasetFormat = 'tsv' | 'jsonl' | 'parquet' | 'arrow';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['tsv', 'jsonl', 'parquet', 'arrow'];

export interface ReadOptions {
  /** Read at most this many examples (from the start of the file). */
  limit?: number;
  /** The file's format whatever its extension (default: from the extension). */
  format?: DatasetFormat;
}

export const DATASET_EXTENSIONS = ['.tsv', '.txt', '.jsonl', '.ndjson', '.parquet', '.arrow'] as const;

const FORMAT_OF_EXTENSION: Readonly<Record<string, DatasetFormat>> = {
  '.tsv': 'tsv',
  '.txt': 'tsv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.parquet': 'parquet',
  '.arrow': 'arrow',
};

/** The format a file is read as: `format`, else its extension's; an unknown extension is an UnsupportedError. */
export function datasetFormat(file: string, format?: DatasetFormat): DatasetFormat {
  if (format !== undefined) return format;
  const f = FORMAT_OF_EXTENSION[extname(file).toLowerCase()];
  if (f !== undefined) return f;
  throw new UnsupportedError(`${file}: cannot read '${extname(file) || '(no extension)'}' files`, {
    hint: `dataset files end in ${DATASET_EXTENSIONS.join(', ')}; for another extension name the format (task.format / --format: ${DATASET_FORMATS.join(', ')})`,
  });
}

export async function readExamples(file: string, task: TaskSpec, options: ReadOptions = {}): Promise<Example[]> {
  checkFile(file, DATASET_EXTENSIONS, 'dataset');
  const limit = options.limit ?? Infinity;
  switch (datasetFormat(file, options.format)) {
    case 'tsv':
      return readTsv(file, task, limit);
    case 'jsonl':
      return readJsonl(file, task, limit);
    case 'parquet':
      return readParquet(file, task, limit);
    case 'arrow':
      return readArrow(file, task, limit);
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

function missingColumns(file: string, task: TaskSpec, found: readonly string[], expected: readonly string[], where?: string): BitDistillError {
  const missing = expected.filter((c) => !found.includes(c));
  return new BitDistillError(
    'E_DATA',
    `${file}${where === undefined ? '' : `:${where}`}: ` +
      `missing column${missing.length === 1 ? '' : 's'} ${missing.join(', ')} for task ${task.name} ` +
      `(expected ${expected.join(', ')}; found ${nameList(found) || 'none'})`,
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
    throw dataError(file, where, `label ${preview(raw)} is not a number (task ${task.name} is a regression)`);
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
    `label ${preview(raw)} is not one of the ${task.name} labels: ${allowed}`,
    index === -1 ? 'label -1 marks an unlabelled test split; train and evaluate on train/validation files' : undefined,
  );
}

function textField(raw: unknown, column: string, file: string, where: string): string {
  if (typeof raw === 'string') return raw;
  throw dataError(file, where, `column ${column} holds ${preview(raw)}, expected text`);
}

/** Longest line of a TSV or JSON Lines file: a corrupt file without newlines must not be read whole. */
export const MAX_LINE_BYTES = 64 * 2 ** 20;

const utf8 = new TextDecoder('utf-8');

/**
 * The lines of a text file (LF or CRLF; a last line may lack its newline), read a chunk at a time.
 * A line longer than MAX_LINE_BYTES is a FormatError naming it.
 */
function* textLines(file: string): Generator<string, void, undefined> {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1 << 20);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let lineNo = 0;
    const line = (last: Buffer): string => {
      const bytes = pending.length === 0 ? last : Buffer.concat([...pending, last]);
      pending = [];
      pendingBytes = 0;
      lineNo++;
      const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length;
      return utf8.decode(bytes.subarray(0, end));
    };
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      let from = 0;
      for (let nl = chunk.indexOf(0x0a, from); nl >= 0 && nl < n; nl = chunk.indexOf(0x0a, from)) {
        if (pendingBytes + nl - from > MAX_LINE_BYTES) break;
        yield line(chunk.subarray(from, nl));
        from = nl + 1;
      }
      pendingBytes += n - from;
      if (pendingBytes > MAX_LINE_BYTES) {
        throw new FormatError(file, `line ${lineNo + 1} is longer than ${MAX_LINE_BYTES / 2 ** 20} MiB`, {
          hint: 'a corrupt file, or not a text file (each line holds one row)',
        });
      }
      pending.push(Buffer.from(chunk.subarray(from, n)));
    }
    if (pendingBytes > 0) yield line(Buffer.alloc(0));
  } finally {
    closeSync(fd);
  }
}

async function readTsv(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const out: Example[] = [];
  const wanted = hfColumns(task);
  const tsvName = (c: string): string => task.tsv?.rename?.[c] ?? c;
  let columnCount = 0;
  let index: number[] = []; // position of each wanted column
  let lineNo = 0;
  let pendingBlank = 0; // a blank line is an error unless only blank lines follow it
  for (let line of textLines(file)) {
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
  if (lineNo === 0) throw dataError(file, 'line 1', 'the file is empty');
  return out;
}

async function readJsonl(file: string, task: TaskSpec, limit: number): Promise<Example[]> {
  const out: Example[] = [];
  const wanted = hfColumns(task);
  let lineNo = 0;
  for (let line of textLines(file)) {
    lineNo++;
    if (out.length >= limit) break;
    if (lineNo === 1) line = line.replace(/^\uFEFF/, '');
    if (line.trim() === '') continue;
    const where = `line ${lineNo}`;
    const obj = parseJsonObject(line, file, where);
    const keys = Object.keys(obj);
    if (!wanted.every((c) => Object.hasOwn(obj, c))) throw missingColumns(file, task, keys, wanted, where);
    const fields: Record<string, string> = {};
    for (const f of task.fields) fields[f] = textField(obj[f], f, file, where);
    out.push({ fields, label: normaliseLabel(task, obj[task.labelColumn], file, where) });
  }
  return out;
}

/** One JSON Lines row: a JSON object, else a FormatError naming `where`. */
export function parseJsonObject(line: string, file: string, where: string): Record<string, unknown> {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch (e) {
    // SyntaxError, or RangeError from an engine that parses deep nesting recursively.
    const message = e instanceof Error ? e.message : String(e);
    throw new FormatError(file, `${where}: not valid JSON (${message.length > 200 ? `${message.slice(0, 200)}...` : message})`, {
      hint: 'JSON Lines holds one complete JSON object per line',
    });
  }
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    throw new FormatError(file, `${where}: expected a JSON object, found ${Array.isArray(row) ? 'an array' : row === null ? 'null' : typeof row}`, {
      hint: 'JSON Lines holds one complete JSON object per line',
    });
  }
  return row as Record<string, unknown>;
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
