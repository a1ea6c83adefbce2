/**
 * The continual pre-training corpus (PAPER.md stage 2): text files, JSON Lines / parquet / Arrow with a text
 * column, tokenized and packed into fixed-length sequences of seqLen + 1 tokens (inputs = the first seqLen,
 * next-token targets = the last seqLen). Consecutive sequences overlap by one token, as in llm.c's loader, so
 * every token after the first is a target exactly once. Documents (a whole .txt file, or one row) are
 * followed by EOS (BOS if the tokenizer has no EOS); empty and null texts are skipped.
 *
 * Streaming: files are read in chunks (about 1 MiB of text cut at a line end, or 1024 parquet rows, or one Arrow
 * record batch), and only the current chunk's tokens are in memory, so a corpus larger than memory works.
 *
 * Resuming: the cursor names the current chunk by where it starts (byte offset for .txt/.jsonl, row for
 * .parquet/.arrow) and how many of its tokens were used. A chunk's bounds depend only on its start and the chunk
 * size, so re-reading it gives the same tokens, and a stream built from the cursor continues exactly (given the
 * same files, tokenizer and chunk options). After the last file the stream starts again from the first and the
 * epoch counter goes up.
 */
import { closeSync, fstatSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { ArgumentError, BitDistillError, FormatError, NotFoundError, Rng } from '@bitdistill/core';
import { openArrow } from './arrow-ipc.ts';
import { openParquet } from './parquet.ts';
import { nameList, preview } from './preview.ts';
import { MAX_LINE_BYTES, parseJsonObject } from './readers.ts';
import type { TokenizerLike } from './prompt.ts';

export const CORPUS_EXTENSIONS = ['.txt', '.jsonl', '.ndjson', '.parquet', '.arrow'] as const;

/** Where a stream stands; JSON-serialisable, stored in trainer_state.json. */
export interface CorpusCursor {
  version: 1;
  /** Completed passes over the corpus. */
  epoch: number;
  /** Index into the expanded, sorted file list, and that file's name (checked on resume). */
  fileIndex: number;
  file: string;
  /** Start of the current chunk: byte offset (.txt, .jsonl) or row index (.parquet, .arrow). */
  offset: number;
  /** Tokens of the current chunk already used. */
  consumed: number;
  /** The last token of the previous sequence, which starts the next one; null before the first. */
  carry: number | null;
  /** Sequences produced so far (for logs). */
  sequences: number;
}

export interface CorpusOptions {
  /** Column holding the text in .jsonl/.parquet/.arrow files. Default `text`. */
  textColumn?: string;
  /** Text bytes per chunk for .txt/.jsonl. Default 1 MiB. */
  chunkBytes?: number;
  /** Rows per chunk for .parquet. Default 1024. */
  chunkRows?: number;
}

/** A piece of document text: `start` when it opens the document, `end` when it closes it (a separator follows). */
interface Piece {
  text: string;
  start: boolean;
  end: boolean;
}

interface Chunk {
  offset: number;
  pieces: Piece[];
}

/** Files of a corpus: each path is a file, or a folder searched recursively; sorted by path within a folder. */
export function expandCorpusPaths(paths: string | readonly string[]): string[] {
  const list = typeof paths === 'string' ? [paths] : [...paths];
  if (list.length === 0) throw new ArgumentError('corpus: no paths given');
  const out: string[] = [];
  const walk = (dir: string): void => {
    const names = readdirSync(dir).filter((n) => !n.startsWith('.'));
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const n of names) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if ((CORPUS_EXTENSIONS as readonly string[]).includes(extname(n).toLowerCase())) out.push(p);
    }
  };
  for (const p of list) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      throw new NotFoundError(p, `corpus path not found: ${p}`, {
        hint: 'check corpus paths in the config; the repository ships ' + 'datasets/corpus/{tinyshakespeare,gutenberg-nltk,us-presidential-speeches}',
      });
    }
    if (isDir) {
      const before = out.length;
      walk(p);
      if (out.length === before) {
        throw new BitDistillError('E_DATA', `corpus folder ${p} holds no ${CORPUS_EXTENSIONS.join(' / ')} files`, {
          hint: 'corpus files are recognised by extension; other files (README, .md) are skipped',
        });
      }
    } else {
      if (!(CORPUS_EXTENSIONS as readonly string[]).includes(extname(p).toLowerCase())) {
        throw new BitDistillError('E_DATA', `corpus file ${p}: unsupported extension '${extname(p) || '(none)'}'`, {
          hint: `corpus files must end in ${CORPUS_EXTENSIONS.join(', ')}`,
        });
      }
      out.push(p);
    }
  }
  return out;
}

/**
 * Bytes [offset, offset + about chunkBytes), cut after the last newline (or at a UTF-8 character boundary).
 * With `wholeLines` (JSON Lines) a line longer than the chunk is read on to its end, up to MAX_LINE_BYTES.
 */
function readTextChunk(file: string, fd: number, size: number, offset: number, chunkBytes: number, wholeLines: boolean): Buffer | null {
  if (offset >= size) return null;
  let len = Math.min(chunkBytes, size - offset);
  let buf = Buffer.alloc(len);
  readSync(fd, buf, 0, len, offset);
  if (offset + len >= size) return buf;
  let cut = buf.lastIndexOf(0x0a) + 1;
  while (cut === 0 && wholeLines) {
    // one JSON line longer than the chunk: read on to its end, doubling the read, up to MAX_LINE_BYTES + 1
    const more = Math.min(Math.max(chunkBytes, len), size - offset - len, MAX_LINE_BYTES + 1 - len);
    if (more <= 0) {
      throw new FormatError(file, `line at byte ${offset} is longer than ${MAX_LINE_BYTES / 2 ** 20} MiB`, {
        hint: 'a corrupt file, or not JSON Lines (each line holds one JSON object)',
      });
    }
    const next = Buffer.alloc(len + more);
    buf.copy(next);
    readSync(fd, next, len, more, offset + len);
    const nl = next.indexOf(0x0a, len);
    buf = next;
    len += more;
    if (nl >= 0 && nl <= MAX_LINE_BYTES) cut = nl + 1;
    else if (offset + len >= size && nl < 0) return buf;
  }
  if (cut === 0) {
    // no newline in a whole chunk of text: cut before the last, possibly incomplete, character
    let p = len - 1;
    while (p > 0 && ((buf[p] as number) & 0xc0) === 0x80) p--;
    const lead = buf[p] as number;
    const charLen = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    cut = p + charLen <= len ? len : p;
    if (cut === 0) cut = len;
  }
  return buf.subarray(0, cut);
}

const utf8 = new TextDecoder('utf-8');

async function* textChunks(file: string, start: number, chunkBytes: number): AsyncGenerator<Chunk> {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    let offset = start;
    for (;;) {
      const buf = readTextChunk(file, fd, size, offset, chunkBytes, false);
      if (buf === null) return;
      const end = offset + buf.length >= size;
      yield { offset, pieces: [{ text: utf8.decode(buf), start: offset === 0, end }] };
      offset += buf.length;
    }
  } finally {
    closeSync(fd);
  }
}

function textOf(row: unknown, column: string, file: string, where: string): string {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    throw new FormatError(file, `${where}: expected a JSON object`);
  }
  const v = Object.hasOwn(row, column) ? (row as Record<string, unknown>)[column] : undefined;
  if (typeof v === 'string') return v;
  if (v === null) return ''; // a missing text is skipped like an empty one
  if (v === undefined || !Object.hasOwn(row, column)) {
    throw new BitDistillError('E_DATA', `${file}: ${where}: no '${column}' column (found ${nameList(Object.keys(row)) || 'none'})`, {
      hint: 'set the corpus text column in the config (textColumn)',
    });
  }
  throw new BitDistillError('E_DATA', `${file}: ${where}: column '${column}' holds ${preview(v)}, expected text`);
}

async function* jsonlChunks(file: string, start: number, chunkBytes: number, column: string): AsyncGenerator<Chunk> {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    let offset = start;
    for (;;) {
      const buf = readTextChunk(file, fd, size, offset, chunkBytes, true);
      if (buf === null) return;
      const pieces: Piece[] = [];
      let lineStart = 0;
      while (lineStart < buf.length) {
        let lineEnd = buf.indexOf(0x0a, lineStart);
        if (lineEnd < 0) lineEnd = buf.length;
        const line = utf8.decode(buf.subarray(lineStart, lineEnd));
        if (line.trim() !== '') {
          const where = `line at byte ${offset + lineStart}`;
          const text = textOf(parseJsonObject(line, file, where), column, file, where);
          if (text.length > 0) pieces.push({ text, start: true, end: true });
        }
        lineStart = lineEnd + 1;
      }
      yield { offset, pieces };
      offset += buf.length;
    }
  } finally {
    closeSync(fd);
  }
}

async function* parquetChunks(file: string, start: number, chunkRows: number, column: string): AsyncGenerator<Chunk> {
  const parquet = await openParquet(file);
  if (!parquet.columns.includes(column)) {
    throw new BitDistillError('E_DATA', `${file}: no '${column}' column (found ${parquet.columns.join(', ')})`, {
      hint: 'set the corpus text column in the config (textColumn)',
    });
  }
  for (let offset = start; offset < parquet.numRows; offset += chunkRows) {
    const rows = await parquet.read([column], offset, Math.min(parquet.numRows, offset + chunkRows));
    const pieces: Piece[] = [];
    rows.forEach((row, i) => {
      const text = textOf(row, column, file, `row ${offset + i + 1}`);
      if (text.length > 0) pieces.push({ text, start: true, end: true });
    });
    yield { offset, pieces };
  }
}

async function* arrowChunks(file: string, start: number, column: string): AsyncGenerator<Chunk> {
  const arrow = openArrow(file);
  try {
    const names = arrow.schema.fields.map((f) => f.name);
    if (!names.includes(column)) {
      throw new BitDistillError('E_DATA', `${file}: no '${column}' column (found ${names.join(', ')})`, {
        hint: 'set the corpus text column in the config (textColumn)',
      });
    }
    let base = 0;
    for (const batch of arrow.batches()) {
      const n = batch.numRows;
      if (base + n > start) {
        const from = Math.max(start, base);
        const col = batch.getChild(column);
        const pieces: Piece[] = [];
        for (let r = from - base; r < n; r++) {
          const v: unknown = col?.get(r) ?? '';
          if (typeof v !== 'string') {
            throw new BitDistillError('E_DATA', `${file}: row ${base + r + 1}: column '${column}' is not text`);
          }
          if (v.length > 0) pieces.push({ text: v, start: true, end: true });
        }
        yield { offset: from, pieces };
      }
      base += n;
    }
  } finally {
    arrow.close();
  }
}

/**
 * Packed pre-training sequences from a corpus, forever (cycling over the files).
 * `const s = new CorpusStream('datasets/corpus/tinyshakespeare', tok, 256); const seq = await s.next();`
 */
export class CorpusStream {
  readonly files: readonly string[];
  readonly seqLen: number;
  private readonly tokenizer: TokenizerLike;
  private readonly separator: number;
  private readonly textColumn: string;
  private readonly chunkBytes: number;
  private readonly chunkRows: number;

  private epoch: number;
  private fileIndex: number;
  private chunks: AsyncGenerator<Chunk> | null = null;
  private startOffset: number; // where the next opened file starts (non-zero only when resuming)
  private skip: number; // tokens to drop from the first chunk read (resuming)
  private resuming: boolean; // a cursor points inside a file: its chunk must be there
  private chunkOffset: number;
  private tokens: Int32Array = new Int32Array(0);
  private pos = 0;
  private carry: number | null;
  private sequences: number;
  private filesWithoutTokens = 0; // files in a row that gave no tokens: all of them = an empty corpus
  private fileHadTokens = false;

  constructor(paths: string | readonly string[], tokenizer: TokenizerLike, seqLen: number, cursor?: CorpusCursor | null, options: CorpusOptions = {}) {
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new ArgumentError(`corpus: seqLen must be a positive integer, got ${seqLen}`);
    this.files = expandCorpusPaths(paths);
    this.seqLen = seqLen;
    this.tokenizer = tokenizer;
    const sep = tokenizer.eosId ?? tokenizer.bosId;
    if (sep === null) throw new ArgumentError('corpus: the tokenizer has neither EOS nor BOS to separate documents');
    this.separator = sep;
    this.textColumn = options.textColumn ?? 'text';
    this.chunkBytes = options.chunkBytes ?? 1 << 20;
    this.chunkRows = options.chunkRows ?? 1024;
    if (!(this.chunkBytes >= 16) || !(this.chunkRows >= 1)) throw new ArgumentError('corpus: chunkBytes >= 16 and chunkRows >= 1');

    if (cursor) {
      const f = this.files[cursor.fileIndex];
      if (cursor.version !== 1 || f === undefined || basename(f) !== cursor.file) {
        throw new BitDistillError(
          'E_DATA',
          `corpus cursor points at file ${cursor.fileIndex} '${cursor.file}', but the corpus has ` +
            (f === undefined ? `${this.files.length} files` : `'${basename(f)}' there`),
          { hint: 'the corpus changed since the checkpoint; restore it, or start the stage afresh with --resume none' },
        );
      }
      this.epoch = cursor.epoch;
      this.fileIndex = cursor.fileIndex;
      this.startOffset = cursor.offset;
      this.chunkOffset = cursor.offset;
      this.skip = cursor.consumed;
      this.resuming = cursor.offset > 0 || cursor.consumed > 0;
      this.carry = cursor.carry;
      this.sequences = cursor.sequences;
    } else {
      this.epoch = 0;
      this.fileIndex = 0;
      this.startOffset = 0;
      this.chunkOffset = 0;
      this.skip = 0;
      this.resuming = false;
      this.carry = null;
      this.sequences = 0;
    }
  }

  /** The position after the last sequence returned. */
  cursor(): CorpusCursor {
    return {
      version: 1,
      epoch: this.epoch,
      fileIndex: this.fileIndex,
      file: basename(this.files[this.fileIndex] as string),
      offset: this.chunkOffset,
      consumed: this.chunks === null ? this.skip : this.pos,
      carry: this.carry,
      sequences: this.sequences,
    };
  }

  /** The next sequence: seqLen + 1 token ids. */
  async next(): Promise<Int32Array> {
    const n = this.seqLen + 1;
    const seq = new Int32Array(n);
    let i = 0;
    if (this.carry !== null) seq[i++] = this.carry;
    while (i < n) {
      if (this.pos >= this.tokens.length) await this.nextChunk();
      const take = Math.min(n - i, this.tokens.length - this.pos);
      seq.set(this.tokens.subarray(this.pos, this.pos + take), i);
      i += take;
      this.pos += take;
    }
    this.carry = seq[n - 1] as number;
    this.sequences++;
    return seq;
  }

  /** B sequences as `inputs` and `targets`, each [B, T] with T = seqLen. */
  async nextBatch(B: number): Promise<{ inputs: Int32Array; targets: Int32Array; B: number; T: number }> {
    const T = this.seqLen;
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const seq = await this.next();
      inputs.set(seq.subarray(0, T), b * T);
      targets.set(seq.subarray(1), b * T);
    }
    return { inputs, targets, B, T };
  }

  /** Releases the open file. The stream can still be used afterwards (it reopens from its cursor). */
  async close(): Promise<void> {
    if (this.chunks !== null) {
      const c = this.cursor();
      await this.chunks.return(undefined);
      this.chunks = null;
      this.startOffset = c.offset;
      this.skip = c.consumed;
      this.tokens = new Int32Array(0);
      this.pos = 0;
    }
  }

  private open(file: string, start: number): AsyncGenerator<Chunk> {
    const ext = extname(file).toLowerCase();
    if (ext === '.txt') return textChunks(file, start, this.chunkBytes);
    if (ext === '.parquet') return parquetChunks(file, start, this.chunkRows, this.textColumn);
    if (ext === '.arrow') return arrowChunks(file, start, this.textColumn);
    return jsonlChunks(file, start, this.chunkBytes, this.textColumn);
  }

  private tokenize(chunk: Chunk): Int32Array {
    const out: number[] = [];
    const bos = this.tokenizer.bosId;
    for (const piece of chunk.pieces) {
      const ids = this.tokenizer.encode(piece.text, { addBos: false });
      // A tokenizer whose post-processor adds BOS (HF Llama) puts it before every chunk: keep it only where a
      // document starts.
      const from = !piece.start && bos !== null && ids[0] === bos ? 1 : 0;
      for (let i = from; i < ids.length; i++) out.push(ids[i] as number);
      if (piece.end) out.push(this.separator);
    }
    return Int32Array.from(out);
  }

  private cursorMismatch(file: string, what: string): BitDistillError {
    return new BitDistillError('E_DATA', `corpus cursor does not fit ${file}: ${what}`, {
      hint: 'the file, the tokenizer or the chunk options changed since the checkpoint; ' + 'restore them, or start the stage afresh with --resume none',
    });
  }

  /** Loads the next chunk that has tokens, moving across files and epochs. */
  private async nextChunk(): Promise<void> {
    for (;;) {
      const file = this.files[this.fileIndex] as string;
      if (this.chunks === null) {
        this.chunks = this.open(file, this.startOffset);
        this.startOffset = 0;
      }
      const r = await this.chunks.next();
      if (r.done) {
        if (this.resuming) throw this.cursorMismatch(file, 'the file ends before the cursor position');
        this.chunks = null;
        this.filesWithoutTokens = this.fileHadTokens ? 0 : this.filesWithoutTokens + 1;
        this.fileHadTokens = false;
        if (this.filesWithoutTokens >= this.files.length) {
          throw new BitDistillError('E_DATA', `the corpus has no text: ${this.files.length} file(s) read, 0 tokens`, {
            hint: `files: ${this.files.slice(0, 5).join(', ')}${this.files.length > 5 ? ', ...' : ''}`,
          });
        }
        this.fileIndex++;
        if (this.fileIndex === this.files.length) {
          this.fileIndex = 0;
          this.epoch++;
        }
        this.chunkOffset = 0;
        this.tokens = new Int32Array(0);
        this.pos = 0;
        continue;
      }
      this.chunkOffset = r.value.offset;
      this.tokens = this.tokenize(r.value);
      this.pos = this.skip;
      if (this.skip > this.tokens.length) {
        throw this.cursorMismatch(file, `the cursor skips ${this.skip} tokens of a chunk that has ${this.tokens.length}`);
      }
      this.skip = 0;
      this.resuming = false;
      if (this.tokens.length > 0) this.fileHadTokens = true;
      if (this.pos < this.tokens.length) return;
    }
  }
}

/**
 * Disjoint sets of packed sequences (seqLen + 1 tokens each) from the start of a corpus: calibration and held-out
 * text for post-training quantization. The pool is the first poolFactor x (sum of sizes) sequences of one pass,
 * every other packed sequence only (adjacent ones share a token, so no token is in two sets); it is shuffled by a
 * seeded Rng and cut into sets of `sizes` in order. Text is read in 64 KiB chunks, so only the pool's text is
 * tokenized. A corpus shorter than the sets need is a data error; one shorter than the pool gives a smaller pool.
 */
export async function sampleCorpusSets(
  paths: string | readonly string[],
  tokenizer: TokenizerLike,
  seqLen: number,
  sizes: readonly number[],
  options: { seed: number; poolFactor?: number },
): Promise<Int32Array[][]> {
  const need = sizes.reduce((a, b) => a + b, 0);
  if (sizes.some((n) => !Number.isInteger(n) || n < 0) || need < 1)
    throw new ArgumentError(`corpus sets: sizes must be integers >= 0, not all 0; got ${sizes.join(', ')}`);
  const poolFactor = options.poolFactor ?? 4;
  if (!(Number.isInteger(poolFactor) && poolFactor >= 1)) throw new ArgumentError(`corpus sets: poolFactor must be a positive integer, got ${poolFactor}`);
  const stream = new CorpusStream(paths, tokenizer, seqLen, null, { chunkBytes: 1 << 16 });
  const pool: Int32Array[] = [];
  try {
    for (let i = 0; pool.length < need * poolFactor; i++) {
      const seq = await stream.next();
      if (stream.cursor().epoch > 0) break; // the stream wrapped around: the corpus is used up
      if (i % 2 === 0) pool.push(seq);
    }
  } finally {
    await stream.close();
  }
  if (pool.length < need) {
    throw new BitDistillError('E_DATA', `corpus ${stream.files.join(', ')}: ${pool.length} disjoint sequences of ${seqLen + 1} tokens, ${need} asked for`, {
      hint: 'ask for fewer sequences or a shorter sequence length, or add text to the corpus',
    });
  }
  new Rng(options.seed).shuffle(pool);
  const out: Int32Array[][] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(pool.slice(at, at + n));
    at += n;
  }
  return out;
}
