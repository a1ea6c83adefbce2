import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError, FormatError, NotFoundError, ShapeError } from '@bitdistill/core';
import {
  inMemoryTensor,
  loadSafetensorsDir,
  openSafetensorsDir,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  serializeSafetensors,
  tensorToFloat32,
  writeSafetensors,
  type TensorEntry,
} from '../src/index.ts';
import { openSafetensors } from '../src/safetensors.ts';

const enc = new TextEncoder();

/** A file from a literal header (unpadded) and data bytes; `lengthOverride` replaces the u64 length field. */
function build(header: string, data: number[] | Uint8Array = [], lengthOverride?: bigint): Uint8Array {
  const h = enc.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const entry = (dtype: string, shape: unknown[], begin: number | string, end: number | string): string =>
  `{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`;

function bytesOf(t: TensorEntry): number[] {
  return [...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)];
}

/** One tensor of every dtype, with edge values (NaN payloads, -0, extremes). */
function everyDtype(): Map<string, TensorEntry> {
  const f32 = new Float32Array(new Uint32Array([0x7fc00001, 0xffa5a5a5, 0x80000000, 0x00000001, 0x7f800000, 0x3f800000]).buffer);
  return new Map<string, TensorEntry>([
    ['f32', { dtype: 'F32', shape: [2, 3], data: f32 }],
    ['f16', { dtype: 'F16', shape: [4], data: new Uint16Array([0x7e01, 0x8000, 0x0001, 0xfc00]) }],
    ['bf16', { dtype: 'BF16', shape: [2, 2], data: new Uint16Array([0x7fc1, 0x8000, 0x0001, 0x3f80]) }],
    ['i8', { dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) }],
    ['u8', { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) }],
    ['i32', { dtype: 'I32', shape: [3], data: new Int32Array([-2147483648, 0, 2147483647]) }],
    ['i64', { dtype: 'I64', shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n, 2n ** 63n - 1n]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
    ['scalar', { dtype: 'I32', shape: [], data: new Int32Array([42]) }],
  ]);
}

describe('safetensors', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bd-format-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('writer', () => {
    it('writes the exact bytes of the reference layout: sorted names, contiguous offsets, space padding to 8', () => {
      const tensors = new Map<string, TensorEntry>([
        ['b', { dtype: 'U8', shape: [2], data: new Uint8Array([1, 2]) }],
        ['a', { dtype: 'F32', shape: [1], data: new Float32Array([1]) }],
      ]);
      const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}';
      expect(json.length).to.equal(137);
      const expected = [144, 0, 0, 0, 0, 0, 0, 0, ...enc.encode(json), 32, 32, 32, 32, 32, 32, 32, 0x00, 0x00, 0x80, 0x3f, 1, 2];
      expect([...serializeSafetensors(tensors, { format: 'pt' })]).to.deep.equal(expected);
      const p = join(dir, 'exact.safetensors');
      writeSafetensors(p, tensors, { format: 'pt' });
      expect([...parseSafetensors(serializeSafetensors(tensors, { format: 'pt' })).tensors.keys()]).to.deep.equal(['a', 'b']);
      expect([...readSafetensors(p).tensors.keys()]).to.deep.equal(['a', 'b']);
    });

    it('omits __metadata__ when there is none, and keeps numeric-looking names in byte order', () => {
      const tensors = new Map<string, TensorEntry>([
        ['10', { dtype: 'U8', shape: [1], data: new Uint8Array([1]) }],
        ['9', { dtype: 'U8', shape: [1], data: new Uint8Array([2]) }],
      ]);
      const bytes = serializeSafetensors(tensors);
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect(n % 8).to.equal(0);
      expect(new TextDecoder().decode(bytes.subarray(8, 8 + n)).trimEnd()).to.equal(
        '{"10":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"9":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
      );
    });

    it('rejects bad arguments', () => {
      const one = (t: unknown): Map<string, TensorEntry> => new Map([['x', t as TensorEntry]]);
      expect(() => serializeSafetensors(one({ dtype: 'F32', shape: [3], data: new Float32Array(2) }))).to.throw(ShapeError, /holds 3 values but data has 2/);
      expect(() => serializeSafetensors(one({ dtype: 'F32', shape: [2], data: new Int32Array(2) }))).to.throw(
        ArgumentError,
        /needs its data in a Float32Array, got Int32Array/,
      );
      expect(() => serializeSafetensors(one({ dtype: 'F64', shape: [1], data: new Float64Array(1) }))).to.throw(ArgumentError, /unknown dtype "F64"/);
      expect(() => serializeSafetensors(one({ dtype: 'U8', shape: [-1], data: new Uint8Array(0) }))).to.throw(ShapeError, /bad shape/);
      expect(() => serializeSafetensors(new Map([['__metadata__', { dtype: 'U8', shape: [0], data: new Uint8Array(0) } as TensorEntry]]))).to.throw(
        ArgumentError,
        /reserved/,
      );
      expect(() => serializeSafetensors(new Map(), { a: 1 as unknown as string })).to.throw(ArgumentError, /must be a string/);
    });
  });

  describe('round trip', () => {
    it('is bit-exact for every dtype, NaN payloads and -0 included, in memory and through a file', () => {
      const tensors = everyDtype();
      const metadata = { format: 'pt', 'note ✓': 'üñí "quoted"\n', __proto__: 'not a prototype' };
      const p = join(dir, 'all.safetensors');
      writeSafetensors(p, tensors, metadata);
      for (const back of [parseSafetensors(serializeSafetensors(tensors, metadata), 'mem'), readSafetensors(p)]) {
        expect(back.tensors.size).to.equal(tensors.size);
        for (const [name, t] of tensors) {
          const r = back.tensors.get(name) as TensorEntry;
          expect(r.dtype, name).to.equal(t.dtype);
          expect(r.shape, name).to.deep.equal(t.shape);
          expect(r.data.constructor, name).to.equal(t.data.constructor);
          expect(bytesOf(r), name).to.deep.equal(bytesOf(t));
        }
        expect(Object.entries(back.metadata)).to.deep.equal(Object.entries(metadata));
      }
      const i64 = readSafetensors(p).tensors.get('i64');
      expect(i64?.dtype === 'I64' && [...i64.data]).to.deep.equal([-(2n ** 63n), 2n ** 53n + 1n, 2n ** 63n - 1n]);
    });

    it('files without tensors round-trip', () => {
      expect(parseSafetensors(serializeSafetensors(new Map())).tensors.size).to.equal(0);
      const m = parseSafetensors(serializeSafetensors(new Map(), { k: 'v' }));
      expect(m.metadata).to.deep.equal({ k: 'v' });
    });

    it('returns fresh aligned arrays, not views into a misaligned input', () => {
      const file = serializeSafetensors(everyDtype());
      const shifted = new Uint8Array(file.length + 1).subarray(1);
      shifted.set(file);
      for (const [name, t] of parseSafetensors(shifted).tensors) {
        expect(t.data.buffer, name).to.not.equal(shifted.buffer);
        expect(t.data.byteOffset, name).to.equal(0);
      }
    });

    it('reads a header padded to any length and data at any alignment (hand-built file)', () => {
      // 1.0f and -2.0f little-endian, header of 65 bytes so data starts at the odd offset 73.
      const header = `{"w":${entry('F32', [2], 0, 8)}}`.padEnd(65, ' ');
      const t = parseSafetensors(build(header, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0])).tensors.get('w') as TensorEntry;
      expect(t.dtype).to.equal('F32');
      expect([...t.data]).to.deep.equal([1, -2]);
    });

    it('header-only read gives shapes and offsets', () => {
      const p = join(dir, 'hdr.safetensors');
      writeSafetensors(p, everyDtype(), { a: 'b' });
      const h = readSafetensorsHeader(p);
      expect(h.dataStart % 8).to.equal(0);
      expect(h.tensors.get('bf16')).to.deep.equal({ dtype: 'BF16', shape: [2, 2], dataOffsets: [0, 8] });
      expect(h.metadata).to.deep.equal({ a: 'b' });
    });
  });

  describe('reader rejects bad files with a FormatError that says what was expected', () => {
    const ok = entry('F32', [2], 0, 8);
    const eight = [0, 0, 0, 0, 0, 0, 0, 0];
    const cases: [string, Uint8Array, RegExp][] = [
      ['too short', new Uint8Array(5), /file is 5 bytes; .*8-byte header length/],
      ['header length over the cap', build('{}', [], 100_000_001n), /header length 100000001 is over the 100000000-byte cap/],
      ['header length 2^64-1', build('{}', [], 2n ** 64n - 1n), /header length 18446744073709551615 is over/],
      ['header length past the end', build('{}', [], 3n), /header length 3 runs past the end of the file \(10 bytes, so at most 2\)/],
      ['not UTF-8', build('{"\xff":1}'.replace('\xff', '\u0000')).map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8/],
      ['not an object', build('[1]'), /must be a JSON object starting with '\{', got "\[1\]"/],
      ['leading space', build(' {}'), /starting with '\{'/],
      ['JSON syntax', build('{"a":'), /not valid JSON: unexpected end of input at character 5/],
      ['trailing garbage', build('{} x'), /unexpected data after the JSON value/],
      ['duplicate tensor', build(`{"w":${ok},"w":${ok}}`, eight), /duplicate key "w"/],
      ['duplicate field', build(`{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, eight), /duplicate key "dtype"/],
      ['deep nesting', build(`{"a":${'['.repeat(5000)}`), /nesting deeper than 64/],
      ['unknown dtype', build(`{"w":${entry('F64', [1], 0, 8)}}`, eight), /tensor "w": dtype "F64" is not one of F32, F16, BF16, I8, U8, I32, I64/],
      ['dtype not a string', build(`{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, eight), /dtype 4 is not one of/],
      ['entry not an object', build(`{"w":[1,2]}`), /tensor "w": expected \{"dtype", "shape", "data_offsets"\}, got \[1, 2\]/],
      ['negative dimension', build(`{"w":${entry('F32', [-2], 0, 8)}}`, eight), /shape must be a list of non-negative integers, got \[-2\]/],
      ['fractional dimension', build(`{"w":${entry('F32', ['2.0'], 0, 8)}}`, eight), /shape must be a list of non-negative integers/],
      ['exponent dimension', build(`{"w":${entry('F32', ['2e0'], 0, 8)}}`, eight), /shape must be a list of non-negative integers/],
      ['shape not a list', build(`{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, eight), /shape must be a list/],
      ['dimension past 2^53', build(`{"w":${entry('F32', ['9007199254740993'], 0, 8)}}`, eight), /shape must be a list of non-negative integers/],
      [
        'huge offset',
        build(`{"w":${entry('F32', [2], 0, '18446744073709551615')}}`, eight),
        /data_offsets must be \[begin, end\] with non-negative integers, got \[0, 18446744073709551615\]/,
      ],
      ['three offsets', build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, eight), /data_offsets must be \[begin, end\]/],
      ['missing offsets', build(`{"w":{"dtype":"F32","shape":[2]}}`, eight), /data_offsets must be \[begin, end\] with non-negative integers, got \(missing\)/],
      ['end before begin', build(`{"w":${entry('F32', [0], 8, 0)}}`, eight), /data_offsets \[8, 0\] end before they begin/],
      ['past the buffer', build(`{"w":${entry('F32', [4], 0, 16)}}`, eight), /data_offsets \[0, 16\] run past the end of the 8-byte data buffer/],
      ['size mismatch', build(`{"w":${entry('F32', [3], 0, 8)}}`, eight), /tensor "w": F32 \[3\] takes 12 bytes but data_offsets \[0, 8\] span 8/],
      [
        'huge shape',
        build(`{"w":${entry('F32', [4294967296, 4294967296, 4294967296], 0, 8)}}`, eight),
        /takes more than 8 bytes but data_offsets \[0, 8\] span 8/,
      ],
      [
        'hole at the start',
        build(`{"w":${entry('F32', [1], 4, 8)}}`, eight),
        /tensor "w": data_offsets \[4, 8\] leave a hole of 4 bytes after the start of the data buffer/,
      ],
      [
        'hole between',
        build(`{"a":${entry('U8', [2], 0, 2)},"b":${entry('U8', [4], 4, 8)}}`, eight),
        /tensor "b": .* leave a hole of 2 bytes after tensor "a", which ends at byte 2/,
      ],
      [
        'overlap',
        build(`{"a":${entry('U8', [6], 0, 6)},"b":${entry('U8', [4], 4, 8)}}`, eight),
        /tensor "b": data_offsets \[4, 8\] overlap tensor "a", which ends at byte 6/,
      ],
      [
        'empty tensor inside another',
        build(`{"a":${ok},"e":${entry('F32', [0], 4, 4)}}`, eight),
        /tensor "e": data_offsets \[4, 4\] overlap tensor "a", which ends at byte 8/,
      ],
      [
        'trailing bytes',
        build(`{"w":${entry('U8', [4], 0, 4)}}`, eight),
        /data buffer is 8 bytes but the tensors cover only 4; 4 trailing bytes belong to no tensor/,
      ],
      ['metadata not an object', build(`{"__metadata__":[1]}`), /__metadata__ must be an object of strings/],
      ['metadata value not a string', build(`{"__metadata__":{"n":3}}`), /__metadata__\["n"\] must be a string, got 3/],
    ];
    for (const [what, bytes, re] of cases) {
      it(what, () => {
        expect(() => parseSafetensors(bytes, 'bad.safetensors')).to.throw(FormatError, re);
        try {
          parseSafetensors(bytes, 'bad.safetensors');
        } catch (e) {
          expect((e as FormatError).message.startsWith('bad.safetensors: ')).to.equal(true);
          expect((e as FormatError).code).to.equal('E_FORMAT');
          expect((e as FormatError).hint).to.be.a('string');
        }
      });
    }

    it('accepts what the spec allows: reordered offsets, empty tensors at shared offsets, unknown entry keys', () => {
      const f = parseSafetensors(
        build(
          `{"b":${entry('U8', [4], 4, 8)},"e":${entry('I64', [0, 9], 4, 4)},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"extra":null}}`,
          [1, 2, 3, 4, 5, 6, 7, 8],
        ),
      );
      expect([...f.tensors.keys()]).to.deep.equal(['a', 'e', 'b']);
      expect([...(f.tensors.get('b') as TensorEntry).data]).to.deep.equal([5, 6, 7, 8]);
    });

    it('names the missing file', () => {
      expect(() => readSafetensors(join(dir, 'nope.safetensors'))).to.throw(NotFoundError, /nope.safetensors' does not exist/);
      expect(() => readSafetensors(dir)).to.throw(ArgumentError, /is a folder/);
    });

    it('reads a file truncated on disk with the file path in the error', () => {
      const p = join(dir, 'trunc.safetensors');
      writeFileSync(p, serializeSafetensors(everyDtype()).subarray(0, 200));
      expect(() => readSafetensors(p)).to.throw(FormatError, new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    });
  });

  describe('tensorToFloat32', () => {
    it('converts float dtypes and refuses integer ones', () => {
      const t = everyDtype();
      expect([...tensorToFloat32(t.get('f16') as TensorEntry)].slice(1)).to.deep.equal([-0, 2 ** -24, -Infinity]);
      expect([...tensorToFloat32(t.get('bf16') as TensorEntry)].slice(1)).to.deep.equal([-0, 2 ** -133, 1]);
      const f = t.get('f32') as TensorEntry;
      expect(tensorToFloat32(f)).to.equal(f.data);
      expect(() => tensorToFloat32(t.get('u8') as TensorEntry, 'm.safetensors: w')).to.throw(
        FormatError,
        /^m.safetensors: w: tensor is U8, expected a floating-point dtype/,
      );
    });
  });

  describe('sharded checkpoints and model folders', () => {
    const t = (v: number): TensorEntry => ({ dtype: 'F32', shape: [1], data: new Float32Array([v]) });
    function shardedDir(name: string, index: unknown, shards: Record<string, [string, number][]>): string {
      const real = mkdtempSync(join(dir, `${name}-`));
      for (const [file, ts] of Object.entries(shards))
        writeSafetensors(join(real, file), new Map(ts.map(([n, v]) => [n, t(v)])), { format: 'pt', shard: file });
      writeFileSync(join(real, 'model.safetensors.index.json'), typeof index === 'string' ? index : JSON.stringify(index));
      return real;
    }
    const shards = {
      's1.safetensors': [
        ['a', 1],
        ['b', 2],
      ] as [string, number][],
      's2.safetensors': [['c', 3]] as [string, number][],
    };

    it('merges shards in weight_map order', () => {
      const d = shardedDir('ok', { metadata: { total_size: 12 }, weight_map: { c: 's2.safetensors', a: 's1.safetensors', b: 's1.safetensors' } }, shards);
      const f = loadSafetensorsDir(d);
      expect([...f.tensors].map(([n, x]) => [n, x.data[0]])).to.deep.equal([
        ['c', 3],
        ['a', 1],
        ['b', 2],
      ]);
      expect(f.metadata).to.deep.equal({ format: 'pt', shard: 's2.safetensors' });
    });

    it('opens lazily: headers now, whole tensors or row ranges on demand, from one file or from shards', () => {
      const single = join(dir, 'lazy.safetensors');
      writeSafetensors(single, everyDtype());
      const f = openSafetensors(single);
      try {
        for (const [name, t] of everyDtype()) {
          const lazy = f.tensors.get(name);
          expect(lazy?.dtype, name).to.equal(t.dtype);
          expect(bytesOf(lazy?.read() as TensorEntry), name).to.deep.equal(bytesOf(t));
        }
        const f32 = f.tensors.get('f32');
        const row1 = f32?.readRows(1, 2) as TensorEntry;
        expect(row1.shape).to.deep.equal([1, 3]);
        expect(bytesOf(row1)).to.deep.equal(bytesOf(everyDtype().get('f32') as TensorEntry).slice(12, 24));
        expect((f32?.readRows(2, 2) as TensorEntry).data.length).to.equal(0);
        expect(() => f32?.readRows(1, 3)).to.throw(ArgumentError, /'f32' has 2 rows; cannot read rows \[1, 3\)/);
        expect(() => f32?.readRows(-1, 1)).to.throw(ArgumentError);
      } finally {
        f.close();
      }
      const d = shardedDir('lazy', { weight_map: { c: 's2.safetensors', a: 's1.safetensors', b: 's1.safetensors' } }, shards);
      const g = openSafetensorsDir(d);
      expect([...g.tensors].map(([n, x]) => [n, x.read().data[0]])).to.deep.equal([
        ['c', 3],
        ['a', 1],
        ['b', 2],
      ]);
      g.close();
      const m = inMemoryTensor({ dtype: 'F32', shape: [3, 2], data: Float32Array.of(1, 2, 3, 4, 5, 6) });
      expect(Array.from(m.readRows(1, 3).data as Float32Array)).to.deep.equal([3, 4, 5, 6]);
      expect(() => m.readRows(0, 4)).to.throw(ArgumentError);
    });

    it('prefers model.safetensors over the index', () => {
      const d = shardedDir('both', { weight_map: {} }, {});
      writeSafetensors(join(d, 'model.safetensors'), new Map([['x', t(9)]]));
      expect([...loadSafetensorsDir(d).tensors.keys()]).to.deep.equal(['x']);
    });

    it('rejects inconsistent indexes', () => {
      const bad: [string, unknown, RegExp, typeof FormatError | typeof NotFoundError][] = [
        ['unlisted', { weight_map: { a: 's1.safetensors', c: 's2.safetensors' } }, /tensor 'b' is not listed in model.safetensors.index.json/, FormatError],
        [
          'wrong-shard',
          { weight_map: { a: 's1.safetensors', b: 's2.safetensors', c: 's2.safetensors' } },
          /tensor 'b' is mapped to 's2.safetensors' .* but found in 's1.safetensors'/,
          FormatError,
        ],
        [
          'missing-tensor',
          { weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's2.safetensors', d: 's2.safetensors' } },
          /tensor 'd' is listed in .* but missing from this shard/,
          FormatError,
        ],
        [
          'missing-shard',
          { weight_map: { a: 's1.safetensors', b: 's1.safetensors', c: 's3.safetensors' } },
          /shard 's3.safetensors' named in .* does not exist/,
          NotFoundError,
        ],
        [
          'traversal',
          { weight_map: { a: '../s1.safetensors' } },
          /weight_map\["a"\] = "..\/s1.safetensors" is not a file name in the index's folder/,
          FormatError,
        ],
        ['no-map', { metadata: {} }, /expected an object with "weight_map"/, FormatError],
        ['dup', '{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}', /not valid JSON: duplicate key "a"/, FormatError],
        ['syntax', '{"weight_map":', /not valid JSON/, FormatError],
      ];
      for (const [name, index, re, cls] of bad) {
        const d = shardedDir(name, index, shards);
        expect(() => loadSafetensorsDir(d), name).to.throw(cls, re);
      }
    });

    it('says what a model folder should hold', () => {
      expect(() => loadSafetensorsDir(join(dir, 'absent'))).to.throw(NotFoundError, /model folder .* does not exist/);
      const empty = mkdtempSync(join(dir, 'empty-'));
      expect(() => loadSafetensorsDir(empty)).to.throw(NotFoundError, /no model.safetensors or model.safetensors.index.json/);
    });
  });
});
