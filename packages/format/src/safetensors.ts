/**
 * safetensors read/write (https://github.com/huggingface/safetensors, format described in its README; SPEC.md here
 * lists the subset we read and every check). Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then the data buffer, which
 * the tensors' [begin, end) ranges must cover exactly, with no holes and no overlaps.
 *
 * The reader trusts nothing in the file: every length and offset is checked against the file size before any
 * allocation, and any violation is a FormatError naming the file, the tensor and what was expected.
 * Tensor data comes back as freshly allocated (so correctly aligned) typed arrays, never views into the file.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ArgumentError, FormatError, NotFoundError, ShapeError, UnsupportedError, shapeSize } from '@bitdistill/core';
import { bf16ArrayToF32, f16ArrayToF32 } from './half.ts';
import { JsonSyntaxError, isJsonObject, parseStrictJson, showJson, type JsonObject, type JsonValue } from './json.ts';

export const DTYPES = ['F32', 'F16', 'BF16', 'I8', 'U8', 'I32', 'I64'] as const;
export type Dtype = (typeof DTYPES)[number];

/** The typed array holding each dtype; F16 and BF16 are raw bits (see half.ts to convert). */
export interface DtypeArrays {
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I8: Int8Array;
  U8: Uint8Array;
  I32: Int32Array;
  I64: BigInt64Array;
}

/** One tensor; `data` is row-major with `data.length === product(shape)`. */
export type TensorEntry = { [D in Dtype]: { dtype: D; shape: readonly number[]; data: DtypeArrays[D] } }[Dtype];

export interface SafetensorsFile {
  /** In data-buffer order (which is name order for files written here). */
  tensors: Map<string, TensorEntry>;
  /** `__metadata__`, or {} when absent. */
  metadata: Record<string, string>;
}

/** A header entry, checked: `dataOffsets` are relative to the start of the data buffer. */
export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute file offset of the data buffer (8 + header length). */
  dataStart: number;
}

/** Same cap as the reference implementation (safetensors' MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

const BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4, I64: 8 };
const ARRAY_NAME: Record<Dtype, string> = {
  F32: 'Float32Array',
  F16: 'Uint16Array',
  BF16: 'Uint16Array',
  I8: 'Int8Array',
  U8: 'Uint8Array',
  I32: 'Int32Array',
  I64: 'BigInt64Array',
};
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const NOT_SAFETENSORS_HINT = 'the file is truncated, corrupt, or not a safetensors file; re-download or re-export it';

export function isDtype(s: string): s is Dtype {
  return (DTYPES as readonly string[]).includes(s);
}

function assertLittleEndianHost(): void {
  if (!LITTLE_ENDIAN_HOST) throw new UnsupportedError('safetensors I/O needs a little-endian host');
}

function allocate(dtype: Dtype, shape: readonly number[], n: number): TensorEntry {
  switch (dtype) {
    case 'F32':
      return { dtype, shape, data: new Float32Array(n) };
    case 'F16':
    case 'BF16':
      return { dtype, shape, data: new Uint16Array(n) };
    case 'I8':
      return { dtype, shape, data: new Int8Array(n) };
    case 'U8':
      return { dtype, shape, data: new Uint8Array(n) };
    case 'I32':
      return { dtype, shape, data: new Int32Array(n) };
    case 'I64':
      return { dtype, shape, data: new BigInt64Array(n) };
  }
}

function arrayMatches(t: TensorEntry): boolean {
  switch (t.dtype) {
    case 'F32':
      return t.data instanceof Float32Array;
    case 'F16':
    case 'BF16':
      return t.data instanceof Uint16Array;
    case 'I8':
      return t.data instanceof Int8Array;
    case 'U8':
      return t.data instanceof Uint8Array;
    case 'I32':
      return t.data instanceof Int32Array;
    case 'I64':
      return t.data instanceof BigInt64Array;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading

/** Random access to the bytes of a file or buffer; `read` is only called on ranges already bounds-checked. */
interface ByteSource {
  size: number;
  read(offset: number, dst: Uint8Array): void;
}

function bufferSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: (offset, dst) => dst.set(bytes.subarray(offset, offset + dst.length)) };
}

const READ_CHUNK = 1 << 30; // readSync takes at most 2 GiB per call

function fileSource(fd: number, label: string): ByteSource {
  return {
    size: fstatSync(fd).size,
    read(offset, dst) {
      let done = 0;
      while (done < dst.length) {
        const n = readSync(fd, dst, done, Math.min(READ_CHUNK, dst.length - done), offset + done);
        if (n === 0) throw new FormatError(label, `file ended at byte ${offset + done} while reading; was it modified while being read?`);
        done += n;
      }
    },
  };
}

function withFile<T>(path: string, what: string, fn: (src: ByteSource) => T): T {
  if (!existsSync(path)) throw new NotFoundError(path, `${what} '${path}' does not exist`);
  if (statSync(path).isDirectory()) {
    throw new ArgumentError(`'${path}' is a folder, expected a .safetensors file`, { hint: 'use loadSafetensorsDir(dir) for a model folder' });
  }
  const fd = openSync(path, 'r');
  try {
    return fn(fileSource(fd, path));
  } finally {
    closeSync(fd);
  }
}

/** A non-negative integer that fits a JS number exactly, or undefined. */
function safeCount(v: JsonValue | undefined): number | undefined {
  return typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

function parseMetadata(v: JsonValue, fe: (msg: string) => FormatError): Record<string, string> {
  if (!isJsonObject(v)) throw fe(`__metadata__ must be an object of strings, got ${showJson(v)}`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, x] of v) {
    if (typeof x !== 'string') throw fe(`__metadata__[${JSON.stringify(k)}] must be a string, got ${showJson(x)}`);
    out[k] = x;
  }
  return out;
}

interface Checked extends TensorInfo {
  name: string;
}

function parseEntry(name: string, v: JsonValue, bufLen: number, fe: (msg: string) => FormatError): Checked {
  const what = `tensor ${JSON.stringify(name)}`;
  if (!isJsonObject(v)) throw fe(`${what}: expected {"dtype", "shape", "data_offsets"}, got ${showJson(v)}`);
  const e: JsonObject = v;
  const dtype = e.get('dtype');
  if (typeof dtype !== 'string' || !isDtype(dtype)) {
    throw fe(`${what}: dtype ${showJson(dtype)} is not one of ${DTYPES.join(', ')}`);
  }
  const rawShape = e.get('shape');
  if (!Array.isArray(rawShape)) throw fe(`${what}: shape must be a list of non-negative integers, got ${showJson(rawShape)}`);
  const shape: number[] = [];
  for (const d of rawShape) {
    const n = safeCount(d);
    if (n === undefined) throw fe(`${what}: shape must be a list of non-negative integers, got ${showJson(rawShape)}`);
    shape.push(n);
  }
  const off = e.get('data_offsets');
  const begin = Array.isArray(off) && off.length === 2 ? safeCount(off[0]) : undefined;
  const end = Array.isArray(off) && off.length === 2 ? safeCount(off[1]) : undefined;
  if (begin === undefined || end === undefined) {
    throw fe(`${what}: data_offsets must be [begin, end] with non-negative integers, got ${showJson(off)}`);
  }
  const offs = `data_offsets [${begin}, ${end}]`;
  if (end < begin) throw fe(`${what}: ${offs} end before they begin`);
  if (end > bufLen) throw fe(`${what}: ${offs} run past the end of the ${bufLen}-byte data buffer`);
  // Element count: a zero dimension makes it 0; otherwise guard against overflow before comparing.
  const span = end - begin;
  let count = shape.includes(0) ? 0 : 1;
  for (const d of shape) {
    if (count === 0 || count > span) break; // already too big (or empty): the size check below reports it
    count *= d;
  }
  const want = count * BYTES[dtype];
  if (want !== span) {
    const expected = count > span ? `more than ${span}` : String(want);
    throw fe(`${what}: ${dtype} [${shape.join(', ')}] takes ${expected} bytes but ${offs} span ${span}`);
  }
  return { name, dtype, shape, dataOffsets: [begin, end] };
}

function parseHeader(src: ByteSource, label: string): SafetensorsHeader {
  const fe = (msg: string, cause?: unknown): FormatError =>
    new FormatError(label, msg, cause === undefined ? { hint: NOT_SAFETENSORS_HINT } : { hint: NOT_SAFETENSORS_HINT, cause });
  if (src.size < 8) throw fe(`file is ${src.size} bytes; a safetensors file starts with an 8-byte header length`);
  const lenBytes = new Uint8Array(8);
  src.read(0, lenBytes);
  const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw fe(`header length ${n64} is over the ${MAX_HEADER_BYTES}-byte cap`);
  const n = Number(n64);
  if (8 + n > src.size) throw fe(`header length ${n} runs past the end of the file (${src.size} bytes, so at most ${src.size - 8})`);
  const headerBytes = new Uint8Array(n);
  src.read(8, headerBytes);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (e) {
    throw fe('header is not valid UTF-8', e);
  }
  if (!text.startsWith('{')) throw fe(`header must be a JSON object starting with '{', got ${JSON.stringify(text.slice(0, 20))}`);
  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw fe(`header is not valid JSON: ${e.message}`, e);
    throw e;
  }
  if (!isJsonObject(root)) throw fe('header must be a JSON object');

  const bufLen = src.size - 8 - n;
  let metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const entries: Checked[] = [];
  for (const [name, v] of root) {
    if (name === '__metadata__') metadata = parseMetadata(v, fe);
    else entries.push(parseEntry(name, v, bufLen, fe));
  }

  // The ranges must tile [0, bufLen): sorted by (begin, end), each starts where the previous ended.
  entries.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let pos = 0;
  let prev: string | undefined;
  for (const e of entries) {
    const [begin, end] = e.dataOffsets;
    const what = `tensor ${JSON.stringify(e.name)}: data_offsets [${begin}, ${end}]`;
    const after = prev === undefined ? 'the start of the data buffer' : `tensor ${JSON.stringify(prev)}, which ends at byte ${pos}`;
    if (begin > pos) throw fe(`${what} leave a hole of ${begin - pos} bytes after ${after}; the tensors must cover the data buffer without holes`);
    if (begin < pos) throw fe(`${what} overlap ${after}`);
    pos = end;
    prev = e.name;
  }
  if (pos !== bufLen) {
    throw fe(`the data buffer is ${bufLen} bytes but the tensors cover only ${pos}; ${bufLen - pos} trailing bytes belong to no tensor`);
  }
  const tensors = new Map<string, TensorInfo>();
  for (const { name, ...info } of entries) tensors.set(name, info);
  return { tensors, metadata, dataStart: 8 + n };
}

/**
 * A tensor whose bytes stay in the file until asked for: `read()` the whole tensor, or `readRows(r0, r1)` a range
 * of its first dimension (rows of a [rows, ...] matrix) as a tensor of shape [r1 - r0, ...]. Each call reads
 * anew, so a loader that keeps only what it derives (a repacked or re-quantized copy) never holds the file.
 */
export interface LazyTensor {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  read(): TensorEntry;
  readRows(r0: number, r1: number): TensorEntry;
  /** The raw little-endian bytes of rows [r0, r1) into `dst` (exactly that many bytes): no allocation. */
  readRowsInto(r0: number, r1: number, dst: Uint8Array): void;
}

/** A safetensors file (or a sharded folder) opened for lazy reads; `close()` releases the file handles. */
export interface LazySafetensors {
  tensors: Map<string, LazyTensor>;
  metadata: Record<string, string>;
  close(): void;
}

/** A tensor already in memory behind the LazyTensor interface (readRows returns views, not copies). */
export function inMemoryTensor(t: TensorEntry): LazyTensor {
  const rowValues = shapeSize(t.shape.slice(1));
  const rows = (r0: number, r1: number): void => {
    const n = t.shape[0] ?? 1;
    if (!(Number.isInteger(r0) && Number.isInteger(r1) && r0 >= 0 && r0 <= r1 && r1 <= n))
      throw new ArgumentError(`tensor has ${n} rows; cannot read rows [${r0}, ${r1})`);
  };
  return {
    dtype: t.dtype,
    shape: t.shape,
    read: () => t,
    readRows(r0, r1) {
      rows(r0, r1);
      return { dtype: t.dtype, shape: [r1 - r0, ...t.shape.slice(1)], data: t.data.subarray(r0 * rowValues, r1 * rowValues) } as TensorEntry;
    },
    readRowsInto(r0, r1, dst) {
      rows(r0, r1);
      const b = BYTES[t.dtype];
      if (dst.length !== (r1 - r0) * rowValues * b)
        throw new ArgumentError(`readRowsInto: dst has ${dst.length} bytes, rows [${r0}, ${r1}) take ${(r1 - r0) * rowValues * b}`);
      dst.set(new Uint8Array(t.data.buffer, t.data.byteOffset + r0 * rowValues * b, dst.length));
    },
  };
}

function lazyTensors(src: ByteSource, label: string): { tensors: Map<string, LazyTensor>; metadata: Record<string, string> } {
  assertLittleEndianHost();
  const header = parseHeader(src, label);
  const tensors = new Map<string, LazyTensor>();
  for (const [name, info] of header.tensors) {
    const start = header.dataStart + info.dataOffsets[0];
    const rowValues = shapeSize(info.shape.slice(1));
    const check = (r0: number, r1: number): void => {
      const rows = info.shape[0] ?? 1;
      if (!(Number.isInteger(r0) && Number.isInteger(r1) && r0 >= 0 && r0 <= r1 && r1 <= rows)) {
        throw new ArgumentError(`${label}: tensor '${name}' has ${rows} rows; cannot read rows [${r0}, ${r1})`);
      }
    };
    const readRowsInto = (r0: number, r1: number, dst: Uint8Array): void => {
      check(r0, r1);
      const want = (r1 - r0) * rowValues * BYTES[info.dtype];
      if (dst.length !== want) throw new ArgumentError(`${label}: tensor '${name}': dst has ${dst.length} bytes, rows [${r0}, ${r1}) take ${want}`);
      src.read(start + r0 * rowValues * BYTES[info.dtype], dst);
    };
    const readRows = (r0: number, r1: number): TensorEntry => {
      check(r0, r1);
      const shape = info.shape.length === 0 ? [] : [r1 - r0, ...info.shape.slice(1)];
      const t = allocate(info.dtype, shape, (r1 - r0) * rowValues);
      readRowsInto(r0, r1, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      return t;
    };
    tensors.set(name, { dtype: info.dtype, shape: info.shape, read: () => readRows(0, info.shape[0] ?? 1), readRows, readRowsInto });
  }
  return { tensors, metadata: header.metadata };
}

function readAll(src: ByteSource, label: string): SafetensorsFile {
  return materialize(lazyTensors(src, label));
}

function materialize(f: { tensors: Map<string, LazyTensor>; metadata: Record<string, string> }): SafetensorsFile {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, t] of f.tensors) tensors.set(name, t.read());
  return { tensors, metadata: f.metadata };
}

/** Open one .safetensors file for lazy reads (the header is read and checked now, the tensors on demand). */
export function openSafetensors(path: string): LazySafetensors {
  if (!existsSync(path)) throw new NotFoundError(path, `safetensors file '${path}' does not exist`);
  if (statSync(path).isDirectory())
    throw new ArgumentError(`'${path}' is a folder, expected a .safetensors file`, { hint: 'use openSafetensorsDir(dir) for a model folder' });
  const fd = openSync(path, 'r');
  try {
    return { ...lazyTensors(fileSource(fd, path), path), close: () => closeSync(fd) };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Parse a whole safetensors file held in memory. `label` names it in errors (usually its path). */
export function parseSafetensors(bytes: Uint8Array, label = '<buffer>'): SafetensorsFile {
  return readAll(bufferSource(bytes), label);
}

/** Read one .safetensors file (header first, then each tensor straight into its own array). */
export function readSafetensors(path: string): SafetensorsFile {
  return withFile(path, 'safetensors file', (src) => readAll(src, path));
}

/** Read and check only the header of a .safetensors file (names, dtypes, shapes, offsets, metadata). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  return withFile(path, 'safetensors file', (src) => parseHeader(src, path));
}

// ---------------------------------------------------------------------------------------------------------
// Sharded checkpoints and model folders

const INDEX_NAME = 'model.safetensors.index.json';

function isPlainFileName(f: string): boolean {
  return f !== '' && f !== '.' && f !== '..' && !f.includes('/') && !f.includes('\\') && !f.includes('\0');
}

/**
 * Read a sharded checkpoint from its `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`, shards
 * in the same folder). Every tensor listed must be in its shard and every tensor of a shard must be listed for
 * that shard. Shard metadata are merged (the first shard wins on a conflicting key); the index's own
 * `metadata.total_size` is informational and ignored. Tensors come back in weight_map order.
 */
export function readShardedSafetensors(indexPath: string): SafetensorsFile {
  const lazy = openShardedSafetensors(indexPath);
  try {
    return materialize(lazy);
  } finally {
    lazy.close();
  }
}

/** readShardedSafetensors for lazy reads: every shard's header is read and checked now, the tensors on demand. */
export function openShardedSafetensors(indexPath: string): LazySafetensors {
  if (!existsSync(indexPath)) throw new NotFoundError(indexPath, `shard index '${indexPath}' does not exist`);
  const fe = (msg: string): FormatError =>
    new FormatError(indexPath, msg, {
      hint: `${INDEX_NAME} maps each tensor name to a shard file: {"weight_map": {"name": "model-00001-of-00002.safetensors"}}`,
    });
  let root: JsonValue;
  try {
    root = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(indexPath)));
  } catch (e) {
    if (e instanceof JsonSyntaxError || e instanceof TypeError) throw fe(`not valid JSON: ${e.message}`);
    throw e;
  }
  const weightMap = isJsonObject(root) ? root.get('weight_map') : undefined;
  if (!isJsonObject(weightMap)) throw fe(`expected an object with "weight_map": {tensor name: shard file}`);
  const shardOf = new Map<string, string>();
  for (const [name, f] of weightMap) {
    if (typeof f !== 'string' || !isPlainFileName(f)) {
      throw fe(`weight_map[${JSON.stringify(name)}] = ${showJson(f)} is not a file name in the index's folder`);
    }
    shardOf.set(name, f);
  }

  const dir = dirname(indexPath);
  const found = new Map<string, LazyTensor>();
  const opened: LazySafetensors[] = [];
  const close = (): void => {
    for (const f of opened) f.close();
  };
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const shard of new Set(shardOf.values())) {
    const path = join(dir, shard);
    if (!existsSync(path)) {
      throw new NotFoundError(path, `shard '${shard}' named in ${indexPath} does not exist`, { hint: 'the download or copy is incomplete' });
    }
    let file: LazySafetensors;
    try {
      file = openSafetensors(path);
    } catch (e) {
      close();
      throw e;
    }
    opened.push(file);
    for (const [name, t] of file.tensors) {
      const mapped = shardOf.get(name);
      if (mapped === undefined || mapped !== shard) close();
      if (mapped === undefined) throw new FormatError(path, `tensor '${name}' is not listed in ${basename(indexPath)}`);
      if (mapped !== shard) throw new FormatError(path, `tensor '${name}' is mapped to '${mapped}' in ${basename(indexPath)} but found in '${shard}'`);
      found.set(name, t);
    }
    for (const [k, v] of Object.entries(file.metadata)) if (!(k in metadata)) metadata[k] = v;
  }
  const tensors = new Map<string, LazyTensor>();
  for (const [name, shard] of shardOf) {
    const t = found.get(name);
    if (t === undefined) {
      close();
      throw new FormatError(join(dir, shard), `tensor '${name}' is listed in ${basename(indexPath)} but missing from this shard`);
    }
    tensors.set(name, t);
  }
  return { tensors, metadata, close };
}

/** loadSafetensorsDir for lazy reads (headers now, tensors on demand); close() it when done. */
export function openSafetensorsDir(dir: string): LazySafetensors {
  if (!existsSync(dir)) throw new NotFoundError(dir, `model folder '${dir}' does not exist`);
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return openSafetensors(single);
  const index = join(dir, INDEX_NAME);
  if (existsSync(index)) return openShardedSafetensors(index);
  throw new NotFoundError(dir, `no model.safetensors or ${INDEX_NAME} in '${dir}'`, {
    hint: 'a Hugging Face model folder holds model.safetensors (or shards with an index); .bin / .pt weights must be converted first',
  });
}

/** The weights of a Hugging Face model folder: `model.safetensors`, else `model.safetensors.index.json` + shards. */
export function loadSafetensorsDir(dir: string): SafetensorsFile {
  const lazy = openSafetensorsDir(dir);
  try {
    return materialize(lazy);
  } finally {
    lazy.close();
  }
}

/**
 * The values of a floating-point tensor as f32 (F32 data is returned as is, F16/BF16 are converted exactly).
 * Integer tensors are refused: they are packed or quantized data (a ternary export's U8 weights), not weights to
 * load as floats. `label` names the tensor in the error (e.g. "DIR/model.safetensors: model.norm.weight").
 */
export function tensorToFloat32(t: TensorEntry, label = '<tensor>'): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data;
    case 'F16':
      return f16ArrayToF32(t.data);
    case 'BF16':
      return bf16ArrayToF32(t.data);
    default:
      throw new FormatError(label, `tensor is ${t.dtype}, expected a floating-point dtype (F32, F16 or BF16)`, {
        hint: 'integer tensors hold packed or quantized weights (a ternary export); load those with the kernels runtime',
      });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Writing

interface Plan {
  /** The 8-byte length and the space-padded JSON header. */
  head: Uint8Array;
  order: [string, TensorEntry][];
}

function utf8Compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return a.length - b.length;
}

function plan(tensors: ReadonlyMap<string, TensorEntry>, metadata: Readonly<Record<string, string>> | undefined): Plan {
  assertLittleEndianHost();
  const enc = new TextEncoder();
  const named: { name: string; key: Uint8Array; t: TensorEntry }[] = [];
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new ArgumentError("a tensor cannot be named '__metadata__' (reserved by safetensors)");
    if (!isDtype(t.dtype)) throw new ArgumentError(`tensor '${name}': unknown dtype ${JSON.stringify(t.dtype)}; expected one of ${DTYPES.join(', ')}`);
    if (!arrayMatches(t)) {
      const got = (t.data as object | null)?.constructor?.name ?? String(t.data);
      throw new ArgumentError(`tensor '${name}': dtype ${t.dtype} needs its data in a ${ARRAY_NAME[t.dtype]}, got ${got}`);
    }
    let count = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`tensor '${name}': bad shape [${t.shape.join(', ')}]; dimensions are non-negative integers`);
      count *= d;
    }
    if (count !== t.data.length) {
      throw new ShapeError(`tensor '${name}': shape [${t.shape.join(', ')}] holds ${count} values but data has ${t.data.length}`);
    }
    named.push({ name, key: enc.encode(name), t });
  }
  // Sorted by the UTF-8 bytes of the name, like the reference writer sorts by name; offsets follow that order.
  named.sort((a, b) => utf8Compare(a.key, b.key));

  const parts: string[] = [];
  const meta = metadata === undefined ? [] : Object.entries(metadata);
  if (meta.length > 0) {
    for (const [k, v] of meta) {
      if (typeof v !== 'string') throw new ArgumentError(`metadata[${JSON.stringify(k)}] must be a string, got ${typeof v}`);
    }
    parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  let offset = 0;
  for (const { name, t } of named) {
    const end = offset + t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = enc.encode(`{${parts.join(',')}}`);
  const padded = json.length + ((8 - (json.length % 8)) % 8); // data starts 8-byte aligned, as the reference pads
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { head, order: named.map(({ name, t }) => [name, t]) };
}

function bytesOf(t: TensorEntry): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** The bytes of a safetensors file: tensors sorted by name, contiguous, header padded with spaces to 8 bytes. */
export function serializeSafetensors(tensors: ReadonlyMap<string, TensorEntry>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const { head, order } = plan(tensors, metadata);
  let total = head.length;
  for (const [, t] of order) total += t.data.byteLength;
  const out = new Uint8Array(total);
  out.set(head, 0);
  let pos = head.length;
  for (const [, t] of order) {
    out.set(bytesOf(t), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Write a safetensors file (same bytes as serializeSafetensors, streamed tensor by tensor). Not atomic. */
export function writeSafetensors(path: string, tensors: ReadonlyMap<string, TensorEntry>, metadata?: Readonly<Record<string, string>>): void {
  const { head, order } = plan(tensors, metadata);
  const fd = openSync(path, 'w');
  try {
    const write = (b: Uint8Array): void => {
      for (let done = 0; done < b.length;) done += writeSync(fd, b, done, Math.min(READ_CHUNK, b.length - done));
    };
    write(head);
    for (const [, t] of order) write(bytesOf(t));
  } finally {
    closeSync(fd);
  }
}
