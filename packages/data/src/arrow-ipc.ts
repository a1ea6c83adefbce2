/**
 * Arrow IPC bytes checked before apache-arrow sees them. apache-arrow trusts every length in a file: a 987-byte
 * mutated .arrow file kept tableFromIPC busy for 47 s and ended in a 4.6 GB heap OOM (issue 21). Here each
 * message is read and checked on its own, then handed on re-framed, so the library only ever parses validated
 * metadata over bodies whose buffers are known to lie inside them.
 *
 * Format (https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc):
 *   stream   messages, each: 0xFFFFFFFF, int32 metadata length, a flatbuffer Message (Message.fbs), a body of
 *            Message.bodyLength bytes; end: 0xFFFFFFFF 0x00000000 (or just the end of the file). Before Arrow 0.15
 *            the continuation marker was absent (the int32 length comes first); both are read.
 *   file     "ARROW1" + 2 padding bytes, a stream, a flatbuffer Footer (File.fbs), int32 footer length, "ARROW1".
 *            The footer's record-batch blocks must point at the stream's record batches, in order.
 * A stream is one Schema message, then RecordBatch messages. Within a record batch, fields are visited depth
 * first; each takes one FieldNode {length, null_count} and the buffers of its layout (validity, offsets, data),
 * each {offset, length} inside the body. Checked here: every length, count and offset against the bytes that hold
 * it; offsets buffers non-decreasing and within their data or child; nesting depth; the number of flatbuffer
 * tables and string bytes against the metadata size (so shared or cyclic references cannot multiply work).
 * Not supported (FormatError that says so): dictionary encoding, unions, run-end and view layouts, compressed
 * bodies, big-endian data. The `datasets` library writes none of them for text and label columns.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { RecordBatchReader, type RecordBatch, type Schema } from 'apache-arrow';
import { BitDistillError, FormatError } from '@bitdistill/core';

/** Random access to the bytes of a file (or of a buffer). */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

export function bufferSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/** Reads an open file descriptor on demand; each read is a fresh, 8-byte-aligned buffer. */
export function fdSource(fd: number): ByteSource {
  const size = fstatSync(fd).size;
  return {
    size,
    read(offset, length) {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
      return done === length ? out : out.subarray(0, done);
    },
  };
}

const HINT = 'expected an Arrow IPC stream or file as written by pyarrow or the `datasets` library; the file is truncated or corrupted';
const MAX_DEPTH = 64; // nesting of struct/list fields; Arrow C++ stops at the same depth
const MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // "ARROW1"
const EOS = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0);

// Message.fbs enums
const HEADER_SCHEMA = 1;
const HEADER_DICTIONARY_BATCH = 2;
const HEADER_RECORD_BATCH = 3;
const METADATA_V4 = 3;
const METADATA_V5 = 4;

type Fail = (message: string) => never;

/**
 * Bounds-checked reads of one flatbuffer. Offsets follow the flatbuffers JS runtime that apache-arrow uses
 * (signed int32 offsets, int16 vtable entries), but anything that runtime would read outside the buffer, or
 * read with a negative offset, fails here instead.
 */
class FlatBuffer {
  private readonly view: DataView;
  private tables = 0;
  private stringBytes = 0;
  private readonly maxTables: number;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly fail: Fail,
    private readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // Every table holds at least its 4-byte vtable offset, and writers share neither tables nor strings.
    this.maxTables = (bytes.length >> 2) + 8;
  }

  private need(pos: number, size: number, what: string): void {
    if (!(pos >= 0 && pos + size <= this.bytes.length)) {
      this.fail(`${this.what}: ${what} at byte ${pos} runs past the ${this.bytes.length}-byte flatbuffer`);
    }
  }

  i32(pos: number): number {
    this.need(pos, 4, 'int32');
    return this.view.getInt32(pos, true);
  }

  /** An int64 that must be an exact JS number (every Arrow length and offset fits). */
  i64(pos: number, what: string): number {
    this.need(pos, 8, 'int64');
    const v = this.view.getBigInt64(pos, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(-Number.MAX_SAFE_INTEGER)) this.fail(`${this.what}: ${what} is ${v}`);
    return Number(v);
  }

  /** The table that the uoffset at `pos` points to, its vtable checked. */
  private tableAt(pos: number, what: string): number {
    const off = this.i32(pos);
    if (off <= 0) this.fail(`${this.what}: ${what} has offset ${off}`);
    return this.checkTable(pos + off, what);
  }

  checkTable(t: number, what: string): number {
    if (++this.tables > this.maxTables) {
      this.fail(`${this.what}: more than ${this.maxTables} tables in ${this.bytes.length} bytes (shared or cyclic references)`);
    }
    const vt = t - this.i32(t);
    this.need(vt, 4, `vtable of ${what}`);
    const vtSize = this.view.getInt16(vt, true);
    if (vtSize < 4 || vtSize % 2 !== 0) this.fail(`${this.what}: ${what} has a vtable of ${vtSize} bytes`);
    this.need(vt, vtSize, `vtable of ${what}`);
    return t;
  }

  root(what: string): number {
    return this.tableAt(0, what);
  }

  /** Position of field `index` of table `t`, checked to hold `size` bytes; -1 if the field is absent. */
  field(t: number, index: number, size: number): number {
    const vt = t - this.view.getInt32(t, true);
    const slot = 4 + 2 * index;
    if (slot >= this.view.getInt16(vt, true)) return -1;
    const entry = this.view.getInt16(vt + slot, true);
    if (entry < 0) this.fail(`${this.what}: field ${index} has vtable entry ${entry}`);
    if (entry === 0) return -1;
    this.need(t + entry, size, `field ${index}`);
    return t + entry;
  }

  int(t: number, index: number, size: 1 | 2 | 4, fallback: number): number {
    const p = this.field(t, index, size);
    if (p < 0) return fallback;
    return size === 1 ? this.view.getUint8(p) : size === 2 ? this.view.getInt16(p, true) : this.view.getInt32(p, true);
  }

  long(t: number, index: number, what: string): number {
    const p = this.field(t, index, 8);
    return p < 0 ? 0 : this.i64(p, what);
  }

  /** A sub-table (or union member); -1 if absent. */
  table(t: number, index: number, what: string): number {
    const p = this.field(t, index, 4);
    return p < 0 ? -1 : this.tableAt(p, what);
  }

  /** A vector of `elemSize`-byte elements: where its elements start and how many there are. */
  vector(t: number, index: number, elemSize: number, what: string): { start: number; length: number } {
    const p = this.field(t, index, 4);
    if (p < 0) return { start: 0, length: 0 };
    const off = this.i32(p);
    if (off <= 0) this.fail(`${this.what}: ${what} has offset ${off}`);
    const length = this.i32(p + off);
    if (length < 0) this.fail(`${this.what}: ${what} has ${length} elements`);
    const start = p + off + 4;
    if (start + length * elemSize > this.bytes.length) {
      this.fail(`${this.what}: ${what} claims ${length} elements of ${elemSize} bytes, past the end of the flatbuffer`);
    }
    return { start, length };
  }

  /** Table `i` of a vector of tables. */
  tableInVector(v: { start: number }, i: number, what: string): number {
    return this.tableAt(v.start + 4 * i, what);
  }

  string(t: number, index: number, what: string): string | null {
    if (this.field(t, index, 4) < 0) return null;
    const v = this.vector(t, index, 1, what);
    this.stringBytes += v.length;
    if (this.stringBytes > this.bytes.length) this.fail(`${this.what}: strings add up to more bytes than the flatbuffer holds`);
    return new TextDecoder().decode(this.bytes.subarray(v.start, v.start + v.length));
  }
}

/** How a field's values are laid out in buffers (Columnar.html#physical-memory-layout). */
type Layout =
  | { kind: 'null' }
  | { kind: 'bool' }
  | { kind: 'fixed'; width: number }
  | { kind: 'binary'; offsetWidth: 4 | 8 }
  | { kind: 'list'; offsetWidth: 4 | 8 }
  | { kind: 'fixedList'; size: number }
  | { kind: 'struct' };

export interface ArrowField {
  name: string;
  /** A readable type name, e.g. `Utf8`, `Int64`, `List<Int32>`. */
  type: string;
  layout: Layout;
  children: ArrowField[];
}

// Type union of Schema.fbs, in order; the ones apache-arrow cannot read or that are not checked here say so.
const TYPE_NAMES = [
  'NONE',
  'Null',
  'Int',
  'FloatingPoint',
  'Binary',
  'Utf8',
  'Bool',
  'Decimal',
  'Date',
  'Time',
  'Timestamp',
  'Interval',
  'List',
  'Struct',
  'Union',
  'FixedSizeBinary',
  'FixedSizeList',
  'Map',
  'Duration',
  'LargeBinary',
  'LargeUtf8',
  'LargeList',
  'RunEndEncoded',
  'BinaryView',
  'Utf8View',
  'ListView',
  'LargeListView',
];

function readField(fb: FlatBuffer, f: number, depth: number, path: string, fail: Fail): ArrowField {
  if (depth > MAX_DEPTH) fail(`field ${path}: nested more than ${MAX_DEPTH} levels deep`);
  const name = fb.string(f, 0, `name of field ${path}`) ?? '';
  const where = `field ${path === '' ? JSON.stringify(name) : `${path}.${JSON.stringify(name)}`}`;
  if (fb.table(f, 4, `dictionary of ${where}`) >= 0) {
    fail(`${where} is dictionary-encoded, which this reader does not support (cast it to its value type)`);
  }
  const typeId = fb.int(f, 2, 1, 0);
  const typeName = TYPE_NAMES[typeId];
  if (typeName === undefined || typeId === 0) fail(`${where} has type id ${typeId}, not an Arrow type`);
  const t = fb.table(f, 3, `type of ${where}`);
  const param = (index: number, size: 1 | 2 | 4, fallback: number): number => (t < 0 ? fallback : fb.int(t, index, size, fallback));

  const kids = fb.vector(f, 5, 4, `children of ${where}`);
  const children: ArrowField[] = [];
  for (let i = 0; i < kids.length; i++) {
    children.push(readField(fb, fb.tableInVector(kids, i, `child ${i} of ${where}`), depth + 1, path === '' ? name : `${path}.${name}`, fail));
  }
  // apache-arrow decodes custom metadata of every field: walk it so its size counts against the budget.
  readCustomMetadata(fb, f, 6, where);

  const nested = (n: number): void => {
    if (children.length !== n) fail(`${where} (${typeName}) has ${children.length} child fields, expected ${n}`);
  };
  const unit = (u: number, max: number): number => {
    if (u < 0 || u > max) fail(`${where} (${typeName}) has unit ${u}`);
    return u;
  };
  let layout: Layout;
  let type = typeName as string;
  switch (typeName) {
    case 'Null':
      layout = { kind: 'null' };
      break;
    case 'Bool':
      layout = { kind: 'bool' };
      break;
    case 'Int': {
      const bits = param(0, 4, 0);
      if (![8, 16, 32, 64].includes(bits)) fail(`${where} is a ${bits}-bit integer`);
      const signed = param(1, 1, 0) !== 0;
      type = `${signed ? 'Int' : 'Uint'}${bits}`;
      layout = { kind: 'fixed', width: bits / 8 };
      break;
    }
    case 'FloatingPoint': {
      const precision = unit(param(0, 2, 0), 2);
      type = ['Float16', 'Float32', 'Float64'][precision] as string;
      layout = { kind: 'fixed', width: 2 << precision };
      break;
    }
    case 'Decimal': {
      const bits = param(2, 4, 128);
      if (![32, 64, 128, 256].includes(bits)) fail(`${where} is a ${bits}-bit decimal`);
      layout = { kind: 'fixed', width: bits / 8 };
      break;
    }
    case 'Date':
      layout = { kind: 'fixed', width: unit(param(0, 2, 1), 1) === 0 ? 4 : 8 };
      break;
    case 'Time': {
      unit(param(0, 2, 1), 3);
      const bits = param(1, 4, 32);
      if (bits !== 32 && bits !== 64) fail(`${where} is a ${bits}-bit time`);
      layout = { kind: 'fixed', width: bits / 8 };
      break;
    }
    case 'Timestamp':
    case 'Duration':
      unit(param(0, 2, typeName === 'Timestamp' ? 0 : 1), 3);
      if (typeName === 'Timestamp' && t >= 0) fb.string(t, 1, `timezone of ${where}`);
      layout = { kind: 'fixed', width: 8 };
      break;
    case 'Interval':
      layout = { kind: 'fixed', width: [4, 8, 16][unit(param(0, 2, 0), 2)] as number };
      break;
    case 'FixedSizeBinary': {
      const width = param(0, 4, 0);
      if (width < 1) fail(`${where} has byteWidth ${width}`);
      layout = { kind: 'fixed', width };
      break;
    }
    case 'Binary':
    case 'Utf8':
      layout = { kind: 'binary', offsetWidth: 4 };
      break;
    case 'LargeBinary':
    case 'LargeUtf8':
      layout = { kind: 'binary', offsetWidth: 8 };
      break;
    case 'List':
    case 'LargeList':
      nested(1);
      type = `${typeName}<${children[0]?.type}>`;
      layout = { kind: 'list', offsetWidth: typeName === 'List' ? 4 : 8 };
      break;
    case 'Map':
      nested(1);
      if (children[0]?.layout.kind !== 'struct' || children[0].children.length !== 2) {
        fail(`${where} (Map) must hold a struct of key and value`);
      }
      layout = { kind: 'list', offsetWidth: 4 };
      break;
    case 'FixedSizeList': {
      nested(1);
      const size = param(0, 4, 0);
      if (size < 0) fail(`${where} has listSize ${size}`);
      type = `FixedSizeList[${size}]<${children[0]?.type}>`;
      layout = { kind: 'fixedList', size };
      break;
    }
    case 'Struct':
      layout = { kind: 'struct' };
      break;
    default:
      return fail(`${where} has type ${typeName}, which this reader does not support`);
  }
  if (layout.kind !== 'list' && layout.kind !== 'fixedList' && layout.kind !== 'struct') nested(0);
  return { name, type, layout, children };
}

function readCustomMetadata(fb: FlatBuffer, t: number, index: number, where: string): void {
  const kv = fb.vector(t, index, 4, `custom metadata of ${where}`);
  for (let i = 0; i < kv.length; i++) {
    const e = fb.tableInVector(kv, i, `custom metadata ${i} of ${where}`);
    fb.string(e, 0, `custom metadata key ${i}`);
    fb.string(e, 1, `custom metadata value ${i}`);
  }
}

function readSchema(fb: FlatBuffer, s: number, fail: Fail): ArrowField[] {
  if (fb.int(s, 0, 2, 0) !== 0) fail('the schema is big-endian, which this reader does not support');
  const list = fb.vector(s, 1, 4, 'schema fields');
  const fields: ArrowField[] = [];
  for (let i = 0; i < list.length; i++) fields.push(readField(fb, fb.tableInVector(list, i, `schema field ${i}`), 1, '', fail));
  readCustomMetadata(fb, s, 2, 'the schema');
  fb.vector(s, 3, 8, 'schema features');
  return fields;
}

/** One canonical line per schema, to compare the footer's schema with the stream's. */
function describe(fields: readonly ArrowField[]): string {
  return fields.map((f) => `${JSON.stringify(f.name)}:${f.type}(${describe(f.children)})`).join(',');
}

/** Checks one RecordBatch table against the schema and the body it describes (already read). */
function checkRecordBatch(fb: FlatBuffer, rb: number, fields: readonly ArrowField[], body: Uint8Array, fail: Fail): void {
  if (fb.table(rb, 3, 'body compression') >= 0) {
    fail('the record batch body is compressed (LZ4/ZSTD), which this reader does not support; write it uncompressed');
  }
  const length = fb.long(rb, 0, 'record batch length');
  // Every layout but Null spends at least one bit per row, so no honest length exceeds this.
  const maxLength = body.length * 8 + 64;
  if (length < 0 || length > maxLength) fail(`record batch length ${length} does not fit its ${body.length}-byte body`);
  const nodes = fb.vector(rb, 1, 16, 'field nodes');
  const buffers = fb.vector(rb, 2, 16, 'buffers');
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let nodeIndex = 0;
  let bufferIndex = 0;

  const nextNode = (where: string): { length: number; nullCount: number } => {
    if (nodeIndex >= nodes.length) fail(`${nodes.length} field nodes; ${where} needs another`);
    const p = nodes.start + 16 * nodeIndex++;
    const n = { length: fb.i64(p, `length of ${where}`), nullCount: fb.i64(p + 8, `null count of ${where}`) };
    if (n.length < 0 || n.length > maxLength) fail(`${where} has length ${n.length}, more than its ${body.length}-byte body can hold`);
    if (n.nullCount < 0 || n.nullCount > n.length) fail(`${where} has ${n.nullCount} nulls in ${n.length} values`);
    return n;
  };
  const nextBuffer = (where: string, min: number): { offset: number; length: number } => {
    if (bufferIndex >= buffers.length) fail(`${buffers.length} buffers; ${where} needs another`);
    const p = buffers.start + 16 * bufferIndex++;
    const b = { offset: fb.i64(p, `buffer offset of ${where}`), length: fb.i64(p + 8, `buffer length of ${where}`) };
    if (b.offset < 0 || b.length < 0 || b.offset + b.length > body.length) {
      fail(`${where}: buffer [${b.offset}, +${b.length}) is outside the ${body.length}-byte body`);
    }
    if (b.length < min) fail(`${where}: buffer of ${b.length} bytes, expected at least ${min}`);
    return b;
  };
  /** Checks an offsets buffer of `n` + 1 entries: from >= 0, non-decreasing, the last <= `limit`; returns it. */
  const offsets = (where: string, n: number, width: 4 | 8, limit: number): number => {
    const b = nextBuffer(`${where} offsets`, n === 0 ? 0 : (n + 1) * width);
    if (n === 0) return 0;
    let prev = 0;
    for (let i = 0; i <= n; i++) {
      const p = b.offset + i * width;
      const big = width === 4 ? null : view.getBigInt64(p, true);
      const v = big === null ? view.getInt32(p, true) : big > BigInt(limit) || big < 0n ? -1 : Number(big);
      if (v < prev || v > limit) fail(`${where}: offset ${i} is ${big ?? v} (previous ${prev}, limit ${limit})`);
      prev = v;
    }
    return prev;
  };

  const visit = (f: ArrowField, where: string, minLength: number, exact: boolean): void => {
    const n = nextNode(where);
    if (exact ? n.length !== minLength : n.length < minLength) {
      fail(`${where} has ${n.length} values, expected ${exact ? '' : 'at least '}${minLength}`);
    }
    const { layout } = f;
    if (layout.kind === 'null') return;
    nextBuffer(`${where} validity`, n.nullCount > 0 ? Math.ceil(n.length / 8) : 0);
    switch (layout.kind) {
      case 'bool':
        nextBuffer(`${where} values`, Math.ceil(n.length / 8));
        return;
      case 'fixed':
        nextBuffer(`${where} values`, n.length * layout.width);
        return;
      case 'binary': {
        // The data buffer comes after the offsets; peek at its length to bound them.
        if (bufferIndex + 1 >= buffers.length) fail(`${buffers.length} buffers; ${where} needs offsets and data`);
        const dataLength = fb.i64(buffers.start + 16 * (bufferIndex + 1) + 8, `buffer length of ${where}`);
        offsets(where, n.length, layout.offsetWidth, Math.max(0, Math.min(dataLength, body.length)));
        nextBuffer(`${where} data`, 0);
        return;
      }
      case 'list': {
        const childLength = offsets(where, n.length, layout.offsetWidth, maxLength);
        visit(f.children[0] as ArrowField, `${where}[]`, childLength, false);
        return;
      }
      case 'fixedList':
        visit(f.children[0] as ArrowField, `${where}[]`, n.length * layout.size, false);
        return;
      case 'struct':
        for (const c of f.children) visit(c, `${where}.${c.name}`, n.length, false);
        return;
    }
  };
  for (const f of fields) visit(f, `column ${JSON.stringify(f.name)}`, length, true);
  if (nodeIndex !== nodes.length) fail(`${nodes.length} field nodes for ${nodeIndex} fields`);
  if (bufferIndex !== buffers.length) fail(`${buffers.length} buffers where the schema needs ${bufferIndex}`);
  // Buffers of view layouts only; with none of those in the schema the counts must be absent.
  if (fb.vector(rb, 4, 8, 'variadic buffer counts').length > 0) fail('variadic buffer counts without a view column');
}

interface Block {
  offset: number;
  metaDataLength: number;
  bodyLength: number;
}

function readFooter(bytes: Uint8Array, fail: Fail): { fields: ArrowField[]; batches: Block[] } {
  const fb = new FlatBuffer(bytes, fail, 'footer');
  const footer = fb.root('footer');
  const s = fb.table(footer, 1, 'footer schema');
  if (s < 0) fail('the footer has no schema');
  const fields = readSchema(fb, s, fail);
  if (fb.vector(footer, 2, 24, 'dictionary blocks').length > 0) {
    fail('the file holds dictionary batches, which this reader does not support');
  }
  const v = fb.vector(footer, 3, 24, 'record batch blocks');
  const batches: Block[] = [];
  for (let i = 0; i < v.length; i++) {
    const p = v.start + 24 * i;
    batches.push({
      offset: fb.i64(p, `offset of block ${i}`),
      metaDataLength: fb.i32(p + 8),
      bodyLength: fb.i64(p + 16, `body length of block ${i}`),
    });
  }
  readCustomMetadata(fb, footer, 4, 'the footer');
  return { fields, batches };
}

/**
 * The bytes of an Arrow IPC stream or file, checked, for apache-arrow's RecordBatchReader.from / tableFromIPC.
 * A stream comes out as a clean stream (continuation-framed messages, then the end-of-stream marker), lazily: a
 * message is read and checked when the consumer asks for it, so memory stays within one message. A file is
 * checked whole (footer, then every message), then handed over whole, since apache-arrow reads files through
 * their footer (whose schema its own writer does not repeat as a message). Throws FormatError naming `file`.
 */
export function* checkedArrowStream(source: ByteSource, file: string): Generator<Uint8Array, void, undefined> {
  const fail: Fail = (message) => {
    throw new FormatError(file, `Arrow IPC: ${message}`, { hint: HINT });
  };
  const { size } = source;
  if (size === 0) fail('the file is empty');
  const head = source.read(0, Math.min(size, 8));
  if (!MAGIC.every((b, i) => head[i] === b)) {
    yield* checkedMessages(source, 0, size, null, fail);
    yield EOS;
    return;
  }
  if (size < 8 + 8 + 10) fail(`a ${size}-byte file is too short for the Arrow file format`);
  const tail = source.read(size - 10, 10);
  if (!MAGIC.every((b, i) => tail[4 + i] === b)) fail('the file starts with ARROW1 but does not end with it (truncated?)');
  const footerLength = new DataView(tail.buffer, tail.byteOffset, 4).getInt32(0, true);
  if (footerLength <= 0 || footerLength > size - 10 - 8) fail(`footer length ${footerLength} does not fit the ${size}-byte file`);
  const end = size - 10 - footerLength;
  const footer = readFooter(source.read(end, footerLength), fail);
  for (const piece of checkedMessages(source, 8, end, footer, fail)) void piece;
  yield source.read(0, size);
}

/**
 * The messages in [start, end) of `source`, each checked and yielded as framing, metadata and body. With a
 * `footer` (file format) the schema message is optional (the footer holds the schema) and the record batches
 * must be the footer's blocks, in order.
 */
function* checkedMessages(
  source: ByteSource,
  start: number,
  end: number,
  footer: { fields: ArrowField[]; batches: Block[] } | null,
  fail: Fail,
): Generator<Uint8Array, void, undefined> {
  let pos = start;
  let fields: ArrowField[] | null = footer === null ? null : footer.fields;
  let batchIndex = 0;
  for (;;) {
    if (pos === end) break; // a stream may simply stop after its last message
    if (end - pos < 4) fail(`${end - pos} stray bytes at offset ${pos} (truncated message header)`);
    const prefix = source.read(pos, Math.min(8, end - pos));
    const pv = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
    let header = 4;
    let metaLength = pv.getInt32(0, true);
    if (metaLength === -1) {
      if (prefix.length < 8) fail(`truncated message header at offset ${pos}`);
      metaLength = pv.getInt32(4, true);
      header = 8;
    }
    if (metaLength === 0) {
      pos += header;
      if (pos !== end) fail(`${end - pos} bytes after the end-of-stream marker at offset ${pos - header}`);
      break;
    }
    const at = `message at offset ${pos}`;
    if (metaLength < 0 || metaLength > end - pos - header) {
      fail(`${at}: metadata length ${metaLength}, but ${end - pos - header} bytes remain`);
    }
    const meta = source.read(pos + header, metaLength);
    const fb = new FlatBuffer(meta, fail, at);
    const m = fb.root('message');
    const version = fb.int(m, 0, 2, 0);
    if (version !== METADATA_V4 && version !== METADATA_V5) fail(`${at}: metadata version ${version + 1}; expected V4 or V5`);
    const headerType = fb.int(m, 1, 1, 0);
    const h = fb.table(m, 2, 'message header');
    if (h < 0) fail(`${at}: no header`);
    const bodyLength = fb.long(m, 3, 'body length');
    readCustomMetadata(fb, m, 4, at);
    const bodyStart = pos + header + metaLength;
    if (bodyLength < 0 || bodyLength > end - bodyStart) fail(`${at}: body length ${bodyLength}, but ${end - bodyStart} bytes remain`);

    let body: Uint8Array = new Uint8Array(0);
    if (headerType === HEADER_SCHEMA) {
      if (pos !== start) fail(`${at}: a schema message after the first message`);
      if (bodyLength !== 0) fail(`${at}: a schema message with a ${bodyLength}-byte body`);
      const own = readSchema(fb, h, fail);
      if (fields !== null && describe(fields) !== describe(own)) fail('the footer schema differs from the stream schema');
      fields = own;
    } else if (headerType === HEADER_RECORD_BATCH) {
      if (fields === null) fail(`${at}: a record batch before the schema`);
      body = bodyLength > 0 ? source.read(bodyStart, bodyLength) : body;
      checkRecordBatch(fb, h, fields, body, (message) => fail(`${at} (record batch ${batchIndex}): ${message}`));
      if (footer !== null) {
        const block = footer.batches[batchIndex];
        if (block === undefined) fail(`record batch ${batchIndex} at offset ${pos} is not listed in the footer`);
        if (block.offset !== pos || block.metaDataLength !== header + metaLength || block.bodyLength !== bodyLength) {
          fail(
            `footer block ${batchIndex} (offset ${block.offset}, metadata ${block.metaDataLength}, body ${block.bodyLength}) does not match the record batch at offset ${pos}`,
          );
        }
      }
      batchIndex++;
    } else if (headerType === HEADER_DICTIONARY_BATCH) {
      fail(`${at}: a dictionary batch; dictionary-encoded columns are not supported`);
    } else {
      fail(`${at}: message type ${headerType} is not a schema or record batch`);
    }
    const framing = new Uint8Array(8);
    const fv = new DataView(framing.buffer);
    fv.setInt32(0, -1, true);
    fv.setInt32(4, metaLength, true);
    yield framing;
    yield meta;
    if (body.length > 0) yield body;
    pos = bodyStart + bodyLength;
  }
  if (fields === null) fail('no schema message');
  if (footer !== null && batchIndex !== footer.batches.length) {
    fail(`the footer lists ${footer.batches.length} record batches, the stream holds ${batchIndex}`);
  }
}

/** An Arrow file opened through checkedArrowStream: its schema, then its record batches one at a time. */
export interface ArrowBatches {
  schema: Schema;
  batches(): Generator<RecordBatch, void, undefined>;
  close(): void;
}

/** apache-arrow can still refuse checked input (a buffer length that is not a whole number of values...). */
function libraryError(file: string, e: unknown): BitDistillError {
  if (e instanceof BitDistillError) return e;
  return new FormatError(file, `not a readable Arrow IPC file (${e instanceof Error ? e.message : String(e)})`, { hint: HINT, cause: e });
}

/** Opens `file` for reading batch by batch; every error is a FormatError naming the file. Call close() after. */
export function openArrow(file: string): ArrowBatches {
  const fd = openSync(file, 'r');
  try {
    const reader = RecordBatchReader.from(checkedArrowStream(fdSource(fd), file));
    reader.open();
    const schema = reader.schema;
    if (schema === undefined || schema === null) throw new FormatError(file, 'Arrow IPC: no schema', { hint: HINT });
    return {
      schema,
      *batches() {
        const it = reader[Symbol.iterator]();
        for (;;) {
          let r: IteratorResult<RecordBatch>;
          try {
            r = it.next();
          } catch (e) {
            throw libraryError(file, e);
          }
          if (r.done) return;
          yield r.value;
        }
      },
      close: () => closeSync(fd),
    };
  } catch (e) {
    closeSync(fd);
    throw libraryError(file, e);
  }
}
