/**
 * GGUF v3 read/write (ggml docs/gguf.md; SPEC.md section 4). Layout, all little-endian:
 *   u32 magic "GGUF", u32 version 3, u64 tensor_count, u64 metadata_kv_count,
 *   metadata: (string key, u32 value_type, value)*,
 *   tensor infos: (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)*,
 *   zero padding to `general.alignment` (default 32), tensor data (each tensor at an aligned offset relative to
 *   the start of the data, padded to the alignment).
 * A string is u64 byte length + UTF-8 bytes (no NUL). Dimensions are in ggml order: ne[0] is the fastest-varying
 * one, so a row-major [rows, cols] matrix has ne = [cols, rows].
 *
 * The reader trusts nothing: every count and length is checked against the bytes that remain before anything is
 * allocated; any violation is a FormatError naming the file and what was expected. The writer writes a temporary
 * file next to the target, fsyncs it, optionally lets the caller verify it, then renames it into place, so a
 * failed write never leaves a partial GGUF behind.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { ArgumentError, FormatError, NotFoundError, ShapeError, UnsupportedError } from '@bitdistill/core';

export const GGUF_MAGIC = 0x46554747; // the bytes "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL. */
export const GGUF_MAX_TENSOR_NAME = 63;
/** llama.cpp's GGML_QUANT_VERSION, written as general.quantization_version when a tensor is quantized. */
export const GGML_QUANT_VERSION = 2;

/** The ggml tensor types this project reads and writes: id, values per block, bytes per block. */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
  TQ1_0: { id: 34, blockSize: 256, typeSize: 54 },
  TQ2_0: { id: 35, blockSize: 256, typeSize: 66 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 34 },
} as const;
export type GgmlType = keyof typeof GGML_TYPES;
const TYPE_BY_ID = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([k, v]) => [v.id, k as GgmlType]));

/** llama.cpp's llama_ftype for general.file_type ("mostly" this type; 1-D tensors stay F32). */
export const LLAMA_FILE_TYPES: Record<GgmlType, number> = { F32: 0, F16: 1, BF16: 32, TQ1_0: 36, TQ2_0: 37, Q8_0: 7 };

const VALUE_TYPES = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'bool', 'string', 'array', 'uint64', 'int64', 'float64'] as const;
export type GgufValueType = (typeof VALUE_TYPES)[number];
type NumberType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';

/** A metadata value with its GGUF type. Arrays hold values of one item type (arrays of arrays are allowed). */
export type GgufValue =
  | { type: NumberType; value: number }
  | { type: 'uint64' | 'int64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufValueType; items: GgufValue[] };

/** Constructors for metadata values, e.g. `gv.u32(2048)`, `gv.strings(['<unk>', '<s>'])`. */
export const gv = {
  u32: (value: number): GgufValue => ({ type: 'uint32', value }),
  i32: (value: number): GgufValue => ({ type: 'int32', value }),
  f32: (value: number): GgufValue => ({ type: 'float32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (values: readonly string[]): GgufValue => ({ type: 'array', itemType: 'string', items: values.map((value) => ({ type: 'string', value })) }),
  f32s: (values: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'float32', items: Array.from(values, (value) => ({ type: 'float32', value })) }),
  i32s: (values: ArrayLike<number>): GgufValue => ({ type: 'array', itemType: 'int32', items: Array.from(values, (value) => ({ type: 'int32', value })) }),
};

export interface GgufTensor {
  name: string;
  type: GgmlType;
  /** ggml order: dims[0] varies fastest (a row-major [rows, cols] matrix is [cols, rows]). */
  dims: number[];
  /** Raw tensor bytes (blocks for quantized types). */
  data: Uint8Array;
}

export interface GgufFile {
  version: number;
  alignment: number;
  /** In file order. */
  metadata: Map<string, GgufValue>;
  /** In file order, with `offset` relative to the start of the data section. */
  tensors: (GgufTensor & { offset: number })[];
  /** Absolute file offset of the data section. */
  dataStart: number;
}

/** Bytes of a tensor of `type` with ggml dims `dims`; ne[0] must be a whole number of blocks. */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number {
  const t = GGML_TYPES[type];
  const ne0 = dims[0] ?? 1;
  if (ne0 % t.blockSize !== 0) throw new ShapeError(`${type} needs ne[0] to be a multiple of ${t.blockSize}, got dims [${dims.join(', ')}]`);
  let n = 1;
  for (const d of dims) n *= d;
  return (n / t.blockSize) * t.typeSize;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

// ---------------------------------------------------------------------------------------------------- writing

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(type: GgufValueType, v: GgufValue, where: string): void {
    const bad = (): never => {
      throw new ArgumentError(`GGUF metadata ${where}: value ${JSON.stringify(String(v.type === 'array' ? '[...]' : v.value))} does not fit type ${type}`);
    };
    if (v.type !== type) throw new ArgumentError(`GGUF metadata ${where}: ${v.type} value in an array of ${type}`);
    this.reserve(8);
    const at = this.length;
    switch (v.type) {
      case 'uint8':
      case 'int8':
      case 'uint16':
      case 'int16':
      case 'uint32':
      case 'int32': {
        const [lo, hi, size] = {
          uint8: [0, 255, 1],
          int8: [-128, 127, 1],
          uint16: [0, 65535, 2],
          int16: [-32768, 32767, 2],
          uint32: [0, 2 ** 32 - 1, 4],
          int32: [-(2 ** 31), 2 ** 31 - 1, 4],
        }[v.type] as [number, number, number];
        if (!Number.isInteger(v.value) || v.value < lo || v.value > hi) bad();
        if (size === 1) this.view.setUint8(at, v.value & 0xff);
        else if (size === 2) this.view.setUint16(at, v.value & 0xffff, true);
        else this.view.setUint32(at, v.value >>> 0, true);
        this.length += size;
        return;
      }
      case 'float32':
        this.view.setFloat32(at, v.value, true);
        this.length += 4;
        return;
      case 'float64':
        this.view.setFloat64(at, v.value, true);
        this.length += 8;
        return;
      case 'uint64':
        if (v.value < 0n || v.value >= 2n ** 64n) bad();
        this.view.setBigUint64(at, v.value, true);
        this.length += 8;
        return;
      case 'int64':
        if (v.value < -(2n ** 63n) || v.value >= 2n ** 63n) bad();
        this.view.setBigInt64(at, v.value, true);
        this.length += 8;
        return;
      case 'bool':
        this.view.setUint8(at, v.value ? 1 : 0);
        this.length += 1;
        return;
      case 'string':
        this.string(v.value);
        return;
      case 'array':
        this.u32(VALUE_TYPES.indexOf(v.itemType));
        this.u64(v.items.length);
        v.items.forEach((item, i) => this.scalar(v.itemType, item, `${where}[${i}]`));
        return;
    }
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

export interface WriteGgufOptions {
  /** Default 32; anything else must also be given as metadata general.alignment (uint32). */
  alignment?: number;
  /** Called with the finished temporary file before it is renamed over `path`; throw to abandon the write. */
  beforeRename?: (tmpPath: string) => void;
}

/** Header + tensor infos + padding, and each tensor's offset in the data section. */
export function serializeGgufHeader(
  metadata: Map<string, GgufValue> | [string, GgufValue][],
  tensors: readonly GgufTensor[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): { header: Uint8Array; offsets: number[]; dataBytes: number } {
  if (!Number.isInteger(alignment) || alignment < 8 || (alignment & (alignment - 1)) !== 0)
    throw new ArgumentError(`GGUF alignment must be a power of two >= 8, got ${alignment}`);
  const meta = metadata instanceof Map ? [...metadata] : metadata;
  const keys = new Set<string>();
  for (const [k, v] of meta) {
    if (k.length === 0 || k.length > 65535 || !/^[\x20-\x7e]+$/.test(k))
      throw new ArgumentError(`GGUF metadata key ${JSON.stringify(k)} must be 1..65535 printable ASCII characters`);
    if (keys.has(k)) throw new ArgumentError(`GGUF metadata key '${k}' given twice`);
    keys.add(k);
    if (k === 'general.alignment' && !(v.type === 'uint32' && v.value === alignment))
      throw new ArgumentError(`general.alignment (${JSON.stringify(v)}) must be uint32 ${alignment}, the alignment written`);
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !keys.has('general.alignment'))
    throw new ArgumentError(`alignment ${alignment} must also be written as metadata general.alignment`);
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const [k, v] of meta) {
    w.string(k);
    w.u32(VALUE_TYPES.indexOf(v.type));
    w.scalar(v.type, v, `'${k}'`);
  }
  const names = new Set<string>();
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const nameBytes = new TextEncoder().encode(t.name).length;
    if (nameBytes === 0 || nameBytes > GGUF_MAX_TENSOR_NAME) throw new ArgumentError(`GGUF tensor name '${t.name}' must be 1..${GGUF_MAX_TENSOR_NAME} bytes`);
    if (names.has(t.name)) throw new ArgumentError(`GGUF tensor '${t.name}' given twice`);
    names.add(t.name);
    if (!(t.type in GGML_TYPES)) throw new ArgumentError(`GGUF tensor '${t.name}': unknown type ${String(t.type)}`);
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isSafeInteger(d) || d < 1))
      throw new ShapeError(`GGUF tensor '${t.name}': dims [${t.dims.join(', ')}] must be 1 to 4 positive integers`);
    const bytes = ggmlTensorBytes(t.type, t.dims);
    if (t.data.length !== bytes)
      throw new ShapeError(`GGUF tensor '${t.name}': ${t.data.length} bytes, expected ${bytes} for ${t.type} [${t.dims.join(', ')}]`);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPES[t.type].id);
    w.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + bytes, alignment);
  }
  const headerLen = alignUp(w.length, alignment);
  while (w.length < headerLen) w.u8(0);
  return { header: w.result(), offsets, dataBytes: offset };
}

/**
 * Write a GGUF file: into `${path}.tmp-<pid>`, fsynced, then (after `beforeRename`, if given) renamed over `path`.
 * The temporary file is removed on any failure. Returns the file size.
 */
export function writeGguf(
  path: string,
  metadata: Map<string, GgufValue> | [string, GgufValue][],
  tensors: readonly GgufTensor[],
  options: WriteGgufOptions = {},
): number {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const { header, offsets, dataBytes } = serializeGgufHeader(metadata, tensors, alignment);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    try {
      writeAll(fd, header);
      const zeros = new Uint8Array(alignment);
      let pos = 0;
      tensors.forEach((t, i) => {
        if (offsets[i] !== pos) throw new Error(`internal: tensor ${t.name} at ${pos}, planned ${offsets[i]}`);
        writeAll(fd, t.data);
        pos += t.data.length;
        const pad = alignUp(pos, alignment) - pos;
        writeAll(fd, zeros.subarray(0, pad));
        pos += pad;
      });
      if (pos !== dataBytes) throw new Error(`internal: wrote ${pos} data bytes, planned ${dataBytes}`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    options.beforeRename?.(tmp);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return header.length + dataBytes;
}

function writeAll(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}

// ---------------------------------------------------------------------------------------------------- reading

const MIN_BYTES: Record<GgufValueType, number> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  bool: 1,
  string: 8,
  array: 12,
  uint64: 8,
  int64: 8,
  float64: 8,
};
const MAX_ARRAY_DEPTH = 8;
/** One decoder for every string of the header (a vocabulary holds ~150k); decode() without `stream` keeps no state. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown by ByteReader when the header runs past the bytes read so far but not past the file: read more. */
class NeedMoreBytes extends Error {
  constructor(readonly want: number) {
    super(`GGUF header needs ${want} bytes`);
  }
}

class ByteReader {
  private readonly view: DataView;
  pos = 0;
  /**
   * @param bytes the file, or its first bytes (readGguf reads the header in growing pieces)
   * @param fileLength the whole file's length (checks against the file use it)
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
    readonly fileLength = bytes.length,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(message: string): never {
    throw new FormatError(this.file, message, { hint: 'the file is truncated, corrupted, or not a GGUF v3 file' });
  }
  need(n: number, what: string): void {
    if (this.pos + n <= this.bytes.length) return;
    if (this.pos + n <= this.fileLength) throw new NeedMoreBytes(this.pos + n);
    this.fail(`${what}: needs ${n} bytes at offset ${this.pos}, the file has ${this.fileLength}`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 that must be a safe integer (a count, length, dimension or offset). */
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} is ${v}, beyond any file this reader accepts`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.u64(`${what} length`);
    this.need(len, what);
    const b = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return UTF8.decode(b);
    } catch {
      return this.fail(`${what} is not valid UTF-8`);
    }
  }
  value(type: GgufValueType, where: string, depth: number): GgufValue {
    const v = this.view;
    switch (type) {
      case 'uint8':
        return { type, value: this.u8(where) };
      case 'int8':
        this.need(1, where);
        this.pos += 1;
        return { type, value: v.getInt8(this.pos - 1) };
      case 'uint16':
        this.need(2, where);
        this.pos += 2;
        return { type, value: v.getUint16(this.pos - 2, true) };
      case 'int16':
        this.need(2, where);
        this.pos += 2;
        return { type, value: v.getInt16(this.pos - 2, true) };
      case 'uint32':
        return { type, value: this.u32(where) };
      case 'int32':
        this.need(4, where);
        this.pos += 4;
        return { type, value: v.getInt32(this.pos - 4, true) };
      case 'float32':
        this.need(4, where);
        this.pos += 4;
        return { type, value: v.getFloat32(this.pos - 4, true) };
      case 'float64':
        this.need(8, where);
        this.pos += 8;
        return { type, value: v.getFloat64(this.pos - 8, true) };
      case 'uint64':
        this.need(8, where);
        this.pos += 8;
        return { type, value: v.getBigUint64(this.pos - 8, true) };
      case 'int64':
        this.need(8, where);
        this.pos += 8;
        return { type, value: v.getBigInt64(this.pos - 8, true) };
      case 'bool': {
        const b = this.u8(where);
        if (b > 1) this.fail(`${where}: bool byte is ${b}, expected 0 or 1`);
        return { type, value: b === 1 };
      }
      case 'string':
        return { type, value: this.string(where) };
      case 'array': {
        if (depth >= MAX_ARRAY_DEPTH) this.fail(`${where}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
        const itemType = this.valueType(`${where} item type`);
        const n = this.u64(`${where} length`);
        if (n * MIN_BYTES[itemType] > this.fileLength - this.pos)
          this.fail(`${where}: ${n} items of ${itemType} cannot fit in the ${this.fileLength - this.pos} bytes left`);
        const items: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) items[i] = this.value(itemType, `${where}[${i}]`, depth + 1);
        return { type, itemType, items };
      }
    }
  }
  valueType(what: string): GgufValueType {
    const id = this.u32(what);
    const t = VALUE_TYPES[id];
    if (t === undefined) this.fail(`${what}: unknown metadata value type ${id}`);
    return t;
  }
}

/** Parse a whole GGUF file held in memory; tensor data are copied out (aligned, independent of `bytes`). */
interface GgufHeader {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  infos: { name: string; type: GgmlType; dims: number[]; offset: number; size: number }[];
  dataStart: number;
}

export function parseGguf(bytes: Uint8Array, file: string): GgufFile {
  const h = parseHeader(new ByteReader(bytes, file));
  const tensors = h.infos.map((t) => ({
    name: t.name,
    type: t.type,
    dims: t.dims,
    offset: t.offset,
    data: bytes.slice(h.dataStart + t.offset, h.dataStart + t.offset + t.size),
  }));
  return { version: h.version, alignment: h.alignment, metadata: h.metadata, tensors, dataStart: h.dataStart };
}

/**
 * The header, tensor infos and every check against the file's length; r.bytes may hold only the file's first
 * bytes (NeedMoreBytes says how many it needs).
 */
function parseHeader(r: ByteReader): GgufHeader {
  const { bytes, file } = r;
  const fileLength = r.fileLength;
  if (fileLength < 24) r.fail(`${fileLength} bytes is too short for a GGUF header (24 bytes)`);
  const magic = r.u32('magic');
  if (magic !== GGUF_MAGIC) r.fail(`magic is 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF" (0x${GGUF_MAGIC.toString(16)})`);
  const version = r.u32('version');
  if (version === 1) throw new UnsupportedError(`${file}: GGUF version 1 (32-bit counts) is not supported`, { hint: 'convert it with a current llama.cpp' });
  if (version !== 2 && version !== 3) r.fail(`GGUF version ${version}; this reader knows versions 2 and 3`);
  const nTensors = r.u64('tensor_count');
  const nKv = r.u64('metadata_kv_count');
  // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info at least 8 + 4 + 8 + 4 + 8.
  if (nKv * 13 + nTensors * 32 > fileLength - r.pos) r.fail(`${nKv} metadata entries and ${nTensors} tensors cannot fit in ${fileLength} bytes`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`metadata key ${i}`);
    if (key.length === 0) r.fail(`metadata key ${i} is empty`);
    if (metadata.has(key)) r.fail(`metadata key '${key}' appears twice`);
    const type = r.valueType(`metadata '${key}' type`);
    metadata.set(key, r.value(type, `metadata '${key}'`, 0));
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = metadata.get('general.alignment');
  if (a !== undefined) {
    if (a.type !== 'uint32') r.fail(`general.alignment is ${a.type}, expected uint32`);
    if (a.value < 8 || (a.value & (a.value - 1)) !== 0) r.fail(`general.alignment is ${a.value}, expected a power of two >= 8`);
    alignment = a.value;
  }
  const infos: { name: string; type: GgmlType; dims: number[]; offset: number; size: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = r.string(`tensor ${i} name`);
    if (name.length === 0) r.fail(`tensor ${i} has an empty name`);
    if (names.has(name)) r.fail(`tensor '${name}' appears twice`);
    names.add(name);
    const nd = r.u32(`tensor '${name}' n_dims`);
    if (nd < 1 || nd > 4) r.fail(`tensor '${name}' has ${nd} dimensions; expected 1 to 4`);
    const dims: number[] = [];
    let count = 1;
    for (let d = 0; d < nd; d++) {
      const ne = r.u64(`tensor '${name}' ne[${d}]`);
      if (ne < 1) r.fail(`tensor '${name}' ne[${d}] is 0`);
      count *= ne;
      if (count > Number.MAX_SAFE_INTEGER) r.fail(`tensor '${name}' has more than 2^53 elements`);
      dims.push(ne);
    }
    const typeId = r.u32(`tensor '${name}' type`);
    const type = TYPE_BY_ID.get(typeId);
    if (type === undefined) {
      throw new UnsupportedError(
        `${file}: tensor '${name}' has ggml type ${typeId}; this reader knows ${Object.entries(GGML_TYPES)
          .map(([k, v]) => `${k} (${v.id})`)
          .join(', ')}`,
        {
          hint: 'BitDistill reads the GGUF files it writes (F32/F16/BF16 + TQ1_0/TQ2_0); use llama.cpp for other types',
        },
      );
    }
    const offset = r.u64(`tensor '${name}' offset`);
    if (offset % alignment !== 0) r.fail(`tensor '${name}' offset ${offset} is not a multiple of the alignment ${alignment}`);
    if ((dims[0] as number) % GGML_TYPES[type].blockSize !== 0)
      r.fail(`tensor '${name}' is ${type} with ne[0] = ${dims[0]}, not a multiple of its block size ${GGML_TYPES[type].blockSize}`);
    infos.push({ name, type, dims, offset, size: ggmlTensorBytes(type, dims) });
  }
  const dataStart = alignUp(r.pos, alignment);
  if (dataStart > fileLength && nTensors > 0) r.fail(`the data section would start at ${dataStart}, past the end of the file (${fileLength} bytes)`);
  if (Math.min(dataStart, fileLength) > bytes.length) throw new NeedMoreBytes(Math.min(dataStart, fileLength));
  for (let i = r.pos; i < Math.min(dataStart, fileLength); i++)
    if (bytes[i] !== 0) r.fail(`padding byte at ${i} before the data section is ${bytes[i]}, expected 0`);
  const sorted = [...infos].sort((x, y) => x.offset - y.offset);
  let end = 0;
  for (const t of sorted) {
    if (t.offset < end) r.fail(`tensor '${t.name}' [${t.offset}, ${t.offset + t.size}) overlaps the previous tensor, which ends at ${end}`);
    end = t.offset + t.size;
    if (dataStart + end > fileLength)
      r.fail(`tensor '${t.name}' (${t.type} [${t.dims.join(', ')}], ${t.size} bytes at data offset ${t.offset}) runs past the end of the file`);
  }
  // ggml's own reader loads the data section as the sum of the padded tensor sizes: the padding after the last
  // tensor must be there too.
  if (sorted.length > 0 && dataStart + alignUp(end, alignment) > fileLength)
    r.fail(`the file ends inside the padding after the last tensor (${fileLength} bytes, expected ${dataStart + alignUp(end, alignment)})`);
  return { version, alignment, metadata, infos, dataStart };
}

/** Bytes read per readSync call (Node reads at most 2 GiB at a time). */
const READ_PIECE = 1 << 30;

function readAt(fd: number, dst: Uint8Array, position: number): void {
  for (let done = 0; done < dst.length;) {
    const n = readSync(fd, dst, done, Math.min(READ_PIECE, dst.length - done), position + done);
    if (n <= 0) throw new Error(`short read at ${position + done}`);
    done += n;
  }
}

/**
 * Reads a GGUF file of any size: the header in growing pieces (16 MiB first; Qwen3's tokenizer metadata alone is
 * tens of MB), then each tensor's data on its own, so no buffer holds the whole file (readFileSync stops at 2 GiB).
 * `firstPiece` is for tests.
 */
export function readGguf(path: string, firstPiece = 16 << 20): GgufFile {
  if (!existsSync(path)) throw new NotFoundError(path, `GGUF file '${path}' does not exist`, { hint: 'run `bitdistill export --ternary --format gguf` first' });
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    let piece = Math.min(size, Math.max(24, firstPiece));
    for (;;) {
      const head = new Uint8Array(piece);
      readAt(fd, head, 0);
      let h: GgufHeader;
      try {
        h = parseHeader(new ByteReader(head, path, size));
      } catch (e) {
        if (!(e instanceof NeedMoreBytes)) throw e;
        piece = Math.min(size, Math.max(2 * piece, e.want));
        continue;
      }
      const tensors = h.infos.map((t) => {
        const data = new Uint8Array(t.size);
        readAt(fd, data, h.dataStart + t.offset);
        return { name: t.name, type: t.type, dims: t.dims, offset: t.offset, data };
      });
      return { version: h.version, alignment: h.alignment, metadata: h.metadata, tensors, dataStart: h.dataStart };
    }
  } finally {
    closeSync(fd);
  }
}

/** True when the file starts with the GGUF magic. */
export function isGgufFile(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(4);
      return readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------- metadata

/** A metadata value of the expected type, or a FormatError naming the key. */
export function ggufMeta<T extends GgufValue['type']>(file: GgufFile, key: string, type: T, path = '<gguf>'): GgufValue & { type: T } {
  const v = file.metadata.get(key);
  if (v === undefined) throw new FormatError(path, `missing metadata key '${key}'`);
  if (v.type !== type) throw new FormatError(path, `metadata '${key}' is ${v.type}, expected ${type}`);
  return v as GgufValue & { type: T };
}

/** The items of a metadata array whose items are all of `itemType`. */
export function ggufArray<T extends GgufValue['type']>(file: GgufFile, key: string, itemType: T, path = '<gguf>'): (GgufValue & { type: T })[] {
  const v = ggufMeta(file, key, 'array', path);
  if (v.itemType !== itemType) throw new FormatError(path, `metadata '${key}' is an array of ${v.itemType}, expected ${itemType}`);
  return v.items as (GgufValue & { type: T })[];
}

// ---------------------------------------------------------------------------------------------------- bitnet names

/**
 * Hugging Face parameter names <-> llama.cpp `bitnet` architecture tensor names (llama.cpp src/llama-arch.cpp
 * LLM_ARCH_BITNET; gguf-py tensor_mapping.py). The bitnet graph has no `output` tensor: logits use token_embd.
 */
const BITNET_LAYER_NAMES: [hf: string, gguf: string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.attn_sub_norm.weight', 'attn_sub_norm.weight'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.ffn_sub_norm.weight', 'ffn_sub_norm.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
];
const BITNET_GLOBAL_NAMES: [hf: string, gguf: string][] = [
  ['model.embed_tokens.weight', 'token_embd.weight'],
  ['model.norm.weight', 'output_norm.weight'],
];

/** The bitnet GGUF name of a Hugging Face parameter, or null when the architecture has no such tensor. */
export function bitnetGgufName(hfName: string): string | null {
  for (const [hf, g] of BITNET_GLOBAL_NAMES) if (hf === hfName) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m === null) return null;
  for (const [hf, g] of BITNET_LAYER_NAMES) if (hf === m[2]) return `blk.${m[1]}.${g}`;
  return null;
}

/** The Hugging Face name of a bitnet GGUF tensor, or null for a name the architecture does not have. */
export function bitnetHfName(ggufName: string): string | null {
  for (const [hf, g] of BITNET_GLOBAL_NAMES) if (g === ggufName) return hf;
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  if (m === null) return null;
  for (const [hf, g] of BITNET_LAYER_NAMES) if (g === m[2]) return `model.layers.${m[1]}.${hf}`;
  return null;
}
