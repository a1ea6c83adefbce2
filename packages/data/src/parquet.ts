/**
 * Parquet files read with hyparquet, checked first. hyparquet trusts the file: a mutated 749-byte file escaped
 * as a raw "internal error", and sizes in a corrupt footer or page header become allocations (issue 21). Here
 * (format: https://parquet.apache.org/docs/file-format/):
 *   - the footer: "PAR1" at both ends, the metadata length inside the file, the thrift metadata well-formed (read
 *     here first, as hyparquet allocates lists at their claimed length); any error hyparquet throws while parsing
 *     it becomes a FormatError;
 *   - the metadata: num_rows = the sum of the row groups' num_rows (at most MAX_ROWS); every column chunk inside
 *     the data region [4, size - 8 - metadata length) with a codec that can be decoded;
 *   - before a row group is read, the page headers of each column to read, parsed here by a thrift compact
 *     reader that accepts exactly what hyparquet would read the same way and refuses the rest: pages inside
 *     their chunk, sizes within the chunk's metadata and MAX_PAGE_BYTES, at most MAX_PAGE_VALUES values a page,
 *     value counts adding up to the chunk's (so hyparquet stops at the chunk's end), encodings it can decode
 *     (PLAIN, dictionary, RLE; not DELTA_* or BYTE_STREAM_SPLIT, which fill arrays from counts in the data);
 *   - in the pages, the RLE / bit-packed runs of definition levels, dictionary indices and RLE booleans:
 *     hyparquet writes an RLE run's whole count into its output array, so one 5-byte run header in the data could
 *     ask for 2^31 entries (a heap OOM). These pages are decompressed once more here to walk their runs.
 * Columns read must be flat (a leaf under the root, not repeated), as HF dataset columns of text and labels are.
 * Every failure is a FormatError naming the file.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, ColumnChunk, Compressors, FileMetaData, SchemaTree } from 'hyparquet';
import { compressors, decompressZstd } from 'hyparquet-compressors';
import { BitDistillError, FormatError } from '@bitdistill/core';

/** Rows in one file; also the bound of a row group. */
export const MAX_ROWS = 2 ** 31;
/** Decompressed size of one page (writers default to 1 MiB pages). */
export const MAX_PAGE_BYTES = 256 * 2 ** 20;
/** Values in one page: hyparquet allocates an array of this many entries per page. */
export const MAX_PAGE_VALUES = 2 ** 24;

const HINT = 'expected a parquet file as the Hugging Face hub or pyarrow write them; the file is truncated or corrupted';

/**
 * The codecs of hyparquet-compressors, except ZSTD: its decompressor allocates what the zstd frame header claims
 * (up to 2 GB) instead of the page size, so here it writes into a buffer of the page's checked size.
 */
const CHECKED_COMPRESSORS: Compressors = {
  ...compressors,
  ZSTD: (input: Uint8Array, outputLength: number) => decompressZstd(input, new Uint8Array(outputLength)),
};
const CODECS = new Set(['UNCOMPRESSED', ...Object.keys(CHECKED_COMPRESSORS)]);

// parquet.thrift enums
const PAGE_DATA = 0;
const PAGE_DICTIONARY = 2;
const PAGE_DATA_V2 = 3;
const ENC_PLAIN = 0;
const ENC_PLAIN_DICTIONARY = 2;
const ENC_RLE = 3;
const ENC_RLE_DICTIONARY = 8;
const ENCODING_NAMES = [
  'PLAIN',
  'GROUP_VAR_INT',
  'PLAIN_DICTIONARY',
  'RLE',
  'BIT_PACKED',
  'DELTA_BINARY_PACKED',
  'DELTA_LENGTH_BYTE_ARRAY',
  'DELTA_BYTE_ARRAY',
  'RLE_DICTIONARY',
  'BYTE_STREAM_SPLIT',
];

type Fail = (message: string) => never;

/** Thrown by ThriftReader when the bytes end inside the struct: read a longer window and parse again. */
class NeedMoreBytes extends Error {}

/** A thrift struct: field id -> an int, a bool, a nested struct, or `skipped` for fields not interpreted. */
type Thrift = Map<number, number | boolean | Thrift | 'skipped'>;

// TCompactProtocol types
const T_TRUE = 1;
const T_FALSE = 2;
const T_BYTE = 3;
const T_I16 = 4;
const T_I32 = 5;
const T_I64 = 6;
const T_DOUBLE = 7;
const T_BINARY = 8;
const T_LIST = 9;
const T_STRUCT = 12;

/**
 * Thrift compact protocol, read as hyparquet's thrift.js reads it. Varints longer than hyparquet decodes
 * exactly (5 bytes, 32 bits) are refused, as are types it does not handle (sets, maps), so a struct accepted
 * here has the same values there.
 */
class ThriftReader {
  pos = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly fail: Fail,
  ) {}

  private byte(): number {
    if (this.pos >= this.bytes.length) throw new NeedMoreBytes();
    return this.bytes[this.pos++] as number;
  }

  /** hyparquet's readVarInt: 32-bit `|` and `<<`. */
  private varint(): number {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      const b = this.byte();
      if (shift === 28 && b > 0x0f) this.fail(`thrift varint at byte ${this.pos - 1} has more than 32 bits`);
      result |= (b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
    }
  }

  private zigzag(): number {
    const z = this.varint();
    return (z >>> 1) ^ -(z & 1);
  }

  private skipVarint(): void {
    for (let n = 0; n < 10; n++) if (!(this.byte() & 0x80)) return;
    this.fail(`thrift varint at byte ${this.pos} is longer than 10 bytes`);
  }

  struct(depth = 0): Thrift {
    if (depth > 16) this.fail('thrift structs nested more than 16 deep');
    const out: Thrift = new Map();
    let fid = 0;
    for (;;) {
      const b = this.byte();
      const type = b & 0x0f;
      if (type === 0) return out;
      const delta = b >> 4;
      fid = delta ? fid + delta : this.zigzag();
      out.set(fid, this.element(type, depth));
    }
  }

  private element(type: number, depth: number): number | boolean | Thrift | 'skipped' {
    switch (type) {
      case T_TRUE:
        return true;
      case T_FALSE:
        return false;
      case T_BYTE:
        this.byte();
        return 'skipped';
      case T_I16:
      case T_I32:
        return this.zigzag();
      case T_I64:
        this.skipVarint();
        return 'skipped';
      case T_DOUBLE:
        if (this.pos + 8 > this.bytes.length) throw new NeedMoreBytes();
        this.pos += 8;
        return 'skipped';
      case T_BINARY: {
        const n = this.varint();
        if (n < 0) this.fail(`thrift binary of length ${n}`);
        if (this.pos + n > this.bytes.length) throw new NeedMoreBytes();
        this.pos += n;
        return 'skipped';
      }
      case T_LIST: {
        const h = this.byte();
        const elem = h & 0x0f;
        let n = h >> 4;
        if (n === 15) n = this.varint();
        if (n < 0) this.fail(`thrift list of ${n} elements`);
        // Each element takes at least a byte: a count beyond the bytes left is a truncated or corrupt list.
        if (n > this.bytes.length - this.pos) throw new NeedMoreBytes();
        const asByte = elem === T_TRUE || elem === T_FALSE;
        for (let i = 0; i < n; i++) this.element(asByte ? T_BYTE : elem, depth + 1);
        return 'skipped';
      }
      case T_STRUCT:
        return this.struct(depth + 1);
      default:
        return this.fail(`thrift type ${type}, which parquet does not use`);
    }
  }
}

/** A non-negative integer from the metadata (int or BigInt) as a number, at most `max`. */
function count(v: unknown, max: number, what: string, fail: Fail): number {
  const n = typeof v === 'bigint' ? (v >= 0n && v <= BigInt(max) ? Number(v) : -1) : typeof v === 'number' && Number.isInteger(v) ? v : -1;
  if (n < 0 || n > max) fail(`${what} is ${String(v)}`);
  return n;
}

/** An open, checked parquet file. */
export interface ParquetFile {
  readonly file: string;
  readonly numRows: number;
  /** Top-level column names. */
  readonly columns: readonly string[];
  /** Rows [rowStart, rowEnd) of the flat columns `columns`, as objects keyed by column name. */
  read(columns: readonly string[], rowStart: number, rowEnd: number): Promise<Record<string, unknown>[]>;
}

function libraryError(file: string, e: unknown): BitDistillError {
  if (e instanceof BitDistillError) return e;
  return new FormatError(file, `not a readable parquet file (${e instanceof Error ? e.message : String(e)})`, { hint: HINT, cause: e });
}

/** Opens and checks the footer and metadata of `file` (see the file comment). */
export async function openParquet(file: string): Promise<ParquetFile> {
  const fail: Fail = (message) => {
    throw new FormatError(file, `parquet: ${message}`, { hint: HINT });
  };
  let buffer: AsyncBuffer;
  let metadata: FileMetaData;
  let tree: SchemaTree;
  try {
    buffer = await asyncBufferFromFile(file);
    const size = buffer.byteLength;
    if (size < 12) fail(`a ${size}-byte file is too short for parquet ("PAR1", metadata, length, "PAR1")`);
    const head = new Uint8Array(await buffer.slice(0, 4));
    const tail = new Uint8Array(await buffer.slice(size - 8, size));
    const par1 = (b: Uint8Array, at: number): boolean => b[at] === 0x50 && b[at + 1] === 0x41 && b[at + 2] === 0x52 && b[at + 3] === 0x31;
    if (!par1(head, 0) || !par1(tail, 4)) fail('no "PAR1" magic at the start and end of the file');
    const metadataLength = new DataView(tail.buffer, tail.byteOffset, 4).getUint32(0, true);
    if (metadataLength === 0 || metadataLength > size - 12) fail(`metadata length ${metadataLength} does not fit the ${size}-byte file`);
    // A pass of the bounded reader first: hyparquet allocates each thrift list at its claimed size before reading it.
    const reader = new ThriftReader(new Uint8Array(await buffer.slice(size - 8 - metadataLength, size - 8)), (m) => fail(`metadata: ${m}`));
    try {
      reader.struct();
    } catch (e) {
      if (e instanceof NeedMoreBytes) fail(`the metadata runs past its ${metadataLength} bytes`);
      throw e;
    }
    metadata = await parquetMetadataAsync(buffer);
    tree = parquetSchema(metadata);
    checkMetadata(metadata, 4, size - 8 - metadataLength, fail);
  } catch (e) {
    throw libraryError(file, e);
  }
  const numRows = Number(metadata.num_rows);
  const columns = tree.children.map((c) => c.element.name as unknown);
  const unnamed = columns.findIndex((n) => typeof n !== 'string' || n === '');
  if (unnamed >= 0) fail(`schema column ${unnamed} has no name`);
  const groupRows = metadata.row_groups.map((g) => Number(g.num_rows));
  const checked = new Set<string>();

  return {
    file,
    numRows,
    columns: columns as string[],
    async read(wanted, rowStart, rowEnd) {
      for (const name of wanted) {
        const leaf = tree.children.find((c) => c.element.name === name);
        if (leaf === undefined) fail(`no column ${name}`);
        if (leaf.children.length > 0 || leaf.element.repetition_type === 'REPEATED' || leaf.element.type === undefined) {
          fail(`column ${name} is nested or repeated; expected a plain column of values`);
        }
      }
      let groupStart = 0;
      for (let g = 0; g < groupRows.length; g++) {
        const rows = groupRows[g] as number;
        if (rows > 0 && groupStart < rowEnd && groupStart + rows > rowStart) {
          for (const name of wanted) {
            if (checked.has(`${g}/${name}`)) continue;
            const optional = tree.children.find((c) => c.element.name === name)?.element.repetition_type !== 'REQUIRED';
            await checkPages(buffer, metadata.row_groups[g]?.columns ?? [], name, optional, rows, `row group ${g}, column ${name}`, fail);
            checked.add(`${g}/${name}`);
          }
        }
        groupStart += rows;
      }
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, columns: [...wanted], compressors: CHECKED_COMPRESSORS, rowStart, rowEnd });
      } catch (e) {
        throw libraryError(file, e);
      }
      const expected = Math.max(0, Math.min(rowEnd, numRows) - rowStart);
      if (rows.length !== expected) fail(`read ${rows.length} rows where rows ${rowStart}..${rowStart + expected - 1} were asked for`);
      return rows;
    },
  };
}

/** Row counts, column chunk ranges and codecs (see the file comment); [dataStart, dataEnd) holds the chunks. */
function checkMetadata(metadata: FileMetaData, dataStart: number, dataEnd: number, fail: Fail): void {
  const leaves = metadata.schema.filter((e) => e.type !== undefined).length;
  let total = 0;
  metadata.row_groups.forEach((g, i) => {
    total += count(g.num_rows, MAX_ROWS, `num_rows of row group ${i}`, fail);
    if (total > MAX_ROWS) fail(`the row groups hold more than ${MAX_ROWS} rows`);
    if (g.columns.length !== leaves) fail(`row group ${i} has ${g.columns.length} column chunks for ${leaves} columns`);
    g.columns.forEach((c, j) => checkChunk(c, `row group ${i}, column chunk ${j}`, dataStart, dataEnd, fail));
  });
  const numRows = count(metadata.num_rows, MAX_ROWS, 'num_rows', fail);
  if (numRows !== total) fail(`num_rows is ${numRows} but the row groups hold ${total}`);
}

/** The byte range [start, end) of a column chunk, checked to lie in [dataStart, dataEnd). */
function checkChunk(c: ColumnChunk, where: string, dataStart: number, dataEnd: number, fail: Fail): { start: number; end: number } {
  const m = c.meta_data;
  if (m === undefined) return fail(`${where} has no metadata`);
  if (c.file_path !== undefined) fail(`${where} lives in another file (${c.file_path})`);
  if (!CODECS.has(m.codec)) fail(`${where} uses compression ${m.codec ?? 'unknown'}, which this reader does not support`);
  // hyparquet starts at the dictionary page if there is one.
  const start = count(m.dictionary_page_offset || m.data_page_offset, Number.MAX_SAFE_INTEGER, `${where} start offset`, fail);
  const size = count(m.total_compressed_size, Number.MAX_SAFE_INTEGER, `${where} total_compressed_size`, fail);
  count(m.total_uncompressed_size, Number.MAX_SAFE_INTEGER, `${where} total_uncompressed_size`, fail);
  count(m.num_values, Number.MAX_SAFE_INTEGER, `${where} num_values`, fail);
  if (start < dataStart || start + size > dataEnd) fail(`${where} spans bytes [${start}, ${start + size}), outside the data [${dataStart}, ${dataEnd})`);
  return { start, end: start + size };
}

const int = (s: Thrift, fid: number): number | undefined => {
  const v = s.get(fid);
  return typeof v === 'number' ? v : undefined;
};

/**
 * Walks the page headers of the chunk of column `name` in one row group (`rows` rows): see the file comment.
 * Only headers are read, a window of bytes at a time; page data is left to hyparquet.
 */
async function checkPages(
  buffer: AsyncBuffer,
  chunks: readonly ColumnChunk[],
  name: string,
  optional: boolean,
  rows: number,
  where: string,
  fail: Fail,
): Promise<void> {
  const matching = chunks.filter((c) => c.meta_data?.path_in_schema.length === 1 && c.meta_data.path_in_schema[0] === name);
  if (matching.length !== 1) fail(`${where}: ${matching.length} column chunks`);
  const chunk = matching[0] as ColumnChunk;
  const meta = chunk.meta_data as NonNullable<ColumnChunk['meta_data']>;
  const { start, end } = checkChunk(chunk, where, 0, Number.MAX_SAFE_INTEGER, fail);
  const values = Number(meta.num_values);
  if (values !== rows) fail(`${where}: ${values} values for ${rows} rows`);
  const maxPage = Math.min(Number(meta.total_uncompressed_size), MAX_PAGE_BYTES);
  const pageBytes = async (from: number, length: number): Promise<Uint8Array> => new Uint8Array(await buffer.slice(from, from + length));

  let pos = start;
  let seen = 0;
  let dictionary = false;
  for (let page = 0; pos < end; page++) {
    const at = `${where}, page ${page} at byte ${pos}`;
    const header = await readPageHeader(buffer, pos, end, at, fail);
    const type = int(header.struct, 1);
    const uncompressed = int(header.struct, 2) ?? -1;
    const compressed = int(header.struct, 3) ?? -1;
    const dataStart = pos + header.length;
    if (compressed < 0 || dataStart + compressed > end) fail(`${at}: ${compressed} compressed bytes, but the chunk ends at byte ${end}`);
    if (uncompressed < 0 || uncompressed > maxPage) fail(`${at}: ${uncompressed} uncompressed bytes (at most ${maxPage})`);
    const sub = (fid: number, what: string): Thrift => {
      const s = header.struct.get(fid);
      if (!(s instanceof Map)) return fail(`${at}: no ${what}`);
      return s;
    };
    const encoding = (e: number | undefined, allowed: readonly number[]): void => {
      if (e === undefined || !allowed.includes(e)) {
        fail(`${at}: encoding ${ENCODING_NAMES[e ?? -1] ?? e}, which this reader does not support (PLAIN, dictionary or RLE)`);
      }
    };
    if (type === PAGE_DICTIONARY) {
      const h = sub(7, 'dictionary page header');
      if (dictionary || page > 0) fail(`${at}: a dictionary page that is not the chunk's first page`);
      dictionary = true;
      const n = int(h, 1) ?? -1;
      if (n < 0 || n > 8 * uncompressed + 8) fail(`${at}: ${n} dictionary values in ${uncompressed} bytes`);
      encoding(int(h, 2), [ENC_PLAIN, ENC_PLAIN_DICTIONARY]);
    } else if (type === PAGE_DATA || type === PAGE_DATA_V2) {
      const v2 = type === PAGE_DATA_V2;
      const h = v2 ? sub(8, 'data page v2 header') : sub(5, 'data page header');
      const n = int(h, 1) ?? -1;
      if (n < 0 || n > MAX_PAGE_VALUES || seen + n > values) fail(`${at}: ${n} values (the chunk has ${values - seen} left)`);
      seen += n;
      const e = int(h, v2 ? 4 : 2);
      encoding(e, [ENC_PLAIN, ENC_PLAIN_DICTIONARY, ENC_RLE, ENC_RLE_DICTIONARY]);
      if ((e === ENC_PLAIN_DICTIONARY || e === ENC_RLE_DICTIONARY) && !dictionary) fail(`${at}: dictionary-encoded values without a dictionary page`);
      const runs =
        (m: string): Fail =>
        (message) =>
          fail(`${at}: ${m}: ${message}`);
      if (v2) {
        const nulls = int(h, 2) ?? -1;
        const rowCount = int(h, 3) ?? -1;
        const defLength = int(h, 5) ?? -1;
        const repLength = int(h, 6) ?? -1;
        if (nulls < 0 || nulls > n || rowCount < 0 || rowCount > n) fail(`${at}: ${nulls} nulls and ${rowCount} rows in ${n} values`);
        if (defLength < 0 || repLength < 0 || defLength + repLength > Math.min(compressed, uncompressed)) {
          fail(`${at}: level lengths ${repLength} + ${defLength} exceed the page`);
        }
        if (optional || e !== ENC_PLAIN) {
          // datapage.js readDataPageV2: levels uncompressed first (no length prefix), then the values.
          const raw = await pageBytes(dataStart, compressed);
          if (optional) scanRuns(raw, repLength, 1, n, -1, runs('definition levels'));
          const isCompressed = h.get(7) !== false;
          const rest = raw.subarray(repLength + defLength);
          const page = isCompressed ? decompress(meta.codec, rest, uncompressed - repLength - defLength, at, fail) : rest;
          scanValues(page, e as number, n - nulls, true, meta.type === 'BOOLEAN', runs('values'));
        }
      } else if (optional || e !== ENC_PLAIN) {
        // datapage.js readDataPage: [int32 length, definition levels], then the values.
        const page = decompress(meta.codec, await pageBytes(dataStart, compressed), uncompressed, at, fail);
        let from = 0;
        let present = n;
        if (optional) {
          if (page.length < 4) fail(`${at}: no room for the definition levels' length`);
          const levels = new DataView(page.buffer, page.byteOffset, 4).getUint32(0, true);
          if (4 + levels > page.length) fail(`${at}: definition levels of ${levels} bytes in a ${page.length}-byte page`);
          present = scanRuns(page, 4, 1, n, 1, runs('definition levels'));
          from = 4 + levels;
        }
        scanValues(page.subarray(from), e as number, present, false, meta.type === 'BOOLEAN', runs('values'));
      }
    } else {
      fail(`${at}: page type ${type ?? 'missing'}; expected a data or dictionary page`);
    }
    pos = dataStart + compressed;
  }
  if (seen !== values) fail(`${where}: the pages hold ${seen} values, the metadata says ${values}`);
}

/** The page header at `pos` (which must end before `end`) and its length in bytes. */
async function readPageHeader(buffer: AsyncBuffer, pos: number, end: number, at: string, fail: Fail): Promise<{ struct: Thrift; length: number }> {
  for (let window = Math.min(256, end - pos); ; window = Math.min(end - pos, window * 4)) {
    const bytes = new Uint8Array(await buffer.slice(pos, pos + window));
    const reader = new ThriftReader(bytes, (message) => fail(`${at}: page header: ${message}`));
    try {
      return { struct: reader.struct(), length: reader.pos };
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (window >= end - pos) fail(`${at}: the page header runs past the end of the column chunk`);
    }
  }
}

/** A page's bytes as hyparquet's decompressPage makes them (same compressors, same length check). */
function decompress(codec: string, bytes: Uint8Array, size: number, at: string, fail: Fail): Uint8Array {
  let out: Uint8Array = bytes;
  if (codec !== 'UNCOMPRESSED') {
    const f = CHECKED_COMPRESSORS[codec as keyof Compressors];
    if (f === undefined) return fail(`${at}: no decompressor for ${codec}`);
    try {
      out = f(bytes, size);
    } catch (e) {
      fail(`${at}: ${codec} data does not decompress (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (out.length !== size) fail(`${at}: ${out.length} bytes after decompression, the header says ${size}`);
  return out;
}

/**
 * The value runs of a page (after its levels), for the encodings that have runs; `n` values expected. As
 * datapage.js reads them: v1 pages by physical type (booleans: an int32 length, then 1-bit runs; others: a bit
 * width byte, then runs unless the width is 0), v2 pages by encoding (RLE: an int32 length, then 1-bit runs;
 * dictionary: a bit width byte, then runs, even of width 0).
 */
function scanValues(page: Uint8Array, encoding: number, n: number, v2: boolean, boolean: boolean, fail: Fail): void {
  if (encoding === ENC_PLAIN || n <= 0) return;
  const prefixed = v2 ? encoding === ENC_RLE : boolean;
  if (prefixed) {
    if (page.length < 4) fail('no room for the length of the runs');
    scanRuns(page, 4, 1, n, -1, fail);
    return;
  }
  if (page.length < 1) fail('no bit width byte');
  const width = page[0] as number;
  if (width > 0 || v2) scanRuns(page, 1, width, n, -1, fail);
}

/** hyparquet's readVarInt (32-bit), refusing what it would wrap; [value, next position]. */
function runVarint(bytes: Uint8Array, pos: number, fail: Fail): [number, number] {
  let result = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= bytes.length) fail(`a run header runs past the page at byte ${pos}`);
    const b = bytes[pos++] as number;
    if (shift === 28 && b > 0x0f) fail(`run header at byte ${pos - 1} has more than 32 bits`);
    result |= (b & 0x7f) << shift;
    if (!(b & 0x80)) return [result, pos];
  }
}

/**
 * Walks RLE / bit-packed hybrid runs from `pos` as hyparquet's readRleBitPackedHybrid reads them (runs until `n`
 * values), refusing an RLE run past `n` values (hyparquet writes all of it), a negative bit-packed count, or a
 * width above 32. Returns how many values equal `match` (the non-null count for definition levels).
 */
function scanRuns(bytes: Uint8Array, pos: number, width: number, n: number, match: number, fail: Fail): number {
  if (width > 32) fail(`bit width ${width}`);
  const valueBytes = (width + 7) >> 3;
  let seen = 0;
  let matched = 0;
  while (seen < n) {
    let header: number;
    [header, pos] = runVarint(bytes, pos, fail);
    if ((header & 1) === 0) {
      const count = header >>> 1;
      if (count > n - seen) fail(`an RLE run of ${count} values where ${n - seen} remain`);
      if (pos + valueBytes > bytes.length) fail(`an RLE run value past the end of the page`);
      let value = 0;
      for (let i = 0; i < valueBytes; i++) value |= (bytes[pos + i] as number) << (8 * i);
      pos += valueBytes;
      if (value === match) matched += count;
      seen += count;
    } else {
      const count = (header >> 1) << 3;
      if (count < 0) fail(`a bit-packed run of ${count} values`);
      // hyparquet loops over the whole run; at width 0 it reads nothing, so only the count bounds the loop.
      if (width === 0 && count > n - seen + 7) fail(`a bit-packed run of ${count} zero-width values where ${n - seen} remain`);
      const used = Math.max(1, Math.ceil((count * width) / 8));
      if (width > 0 && pos + used > bytes.length) fail(`a bit-packed run of ${count} values past the end of the page`);
      const take = Math.min(count, n - seen);
      if (match >= 0) {
        for (let i = 0; i < take; i++) {
          let v = 0;
          for (let bit = 0; bit < width; bit++) {
            const at = i * width + bit;
            v |= (((bytes[pos + (at >> 3)] as number) >> (at & 7)) & 1) << bit;
          }
          if (v === match) matched++;
        }
      }
      pos = Math.min(bytes.length, pos + used);
      seen += take;
    }
  }
  return matched;
}
