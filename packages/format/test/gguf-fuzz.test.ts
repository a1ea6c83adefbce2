// Seeded fuzzing of the GGUF reader: every mutated file must either parse into a consistent file (each tensor
// holding exactly the bytes its type and dims need, array items of their declared type) or be refused with a
// typed error: FormatError, or UnsupportedError for a well-formed file of a ggml type / GGUF version this reader
// does not know. A RangeError, a TypeError or a huge allocation from a corrupt count is a reader bug.
// readGguf (which reads the header in growing pieces) must reach the same outcome as parseGguf on the bytes.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addToInt, append, pick, randomBytes, randomizeBytes, runCases, setInt, splice, truncate, type Mutator } from '../../../scripts/fuzz/mutate.ts';
import { ggmlTensorBytes, gv, packTernaryGgml, parseGguf, readGguf, type GgufFile, type GgufTensor, type GgufValue } from '../src/index.ts';
import { SCALAR_META, bothReaders, ggufSampleTensors } from './fixtures.ts';
import { serializeGgufHeader } from '../src/gguf.ts';

const SEED = 20250121;

function file(meta: [string, GgufValue][], tensors: GgufTensor[], alignment = 32): Uint8Array {
  const { header, offsets, dataBytes } = serializeGgufHeader(meta, tensors, alignment);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header);
  tensors.forEach((t, i) => out.set(t.data, header.length + (offsets[i] as number)));
  return out;
}

function seeds(): Uint8Array[] {
  const tensors: GgufTensor[] = [
    ...ggufSampleTensors(),
    { name: 'blk.0.attn_k.weight', type: 'TQ1_0', dims: [256, 1, 1], data: packTernaryGgml('TQ1_0', new Int8Array(256).fill(-1), 1, 256, Float32Array.of(2)) },
    { name: 'brain', type: 'BF16', dims: [1, 2, 1, 1], data: new Uint8Array([0x80, 0x3f, 0x80, 0xbf]) },
  ];
  const meta: [string, GgufValue][] = [
    ['general.architecture', gv.str('bitnet')],
    ...SCALAR_META,
    ['tokens', gv.strings(['<unk>', '▁the', 'é', '', '東京'])],
    ['scores', gv.f32s([0, -1.5, 2])],
    ['nested', { type: 'array', itemType: 'array', items: [gv.i32s([1, 2]), gv.i32s([]), gv.strings(['a'])] }],
  ];
  return [
    file(meta, tensors),
    file(
      [
        ['general.alignment', gv.u32(64)],
        ['x', gv.str('y')],
      ],
      tensors.slice(0, 2),
      64,
    ),
    file([['only', gv.strings(['a', 'bb', 'ccc'])]], []),
    file([], [tensors[2] as GgufTensor]),
  ];
}

/** Offsets of the header's numeric fields in a valid file (u64 counts and lengths, u32 types and n_dims). */
function fields(b: Uint8Array): { u64: number[]; u32: number[] } {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u64: number[] = [8, 16];
  const u32: number[] = [0, 4];
  let p = 24;
  const str = () => {
    u64.push(p);
    p += 8 + Number(dv.getBigUint64(p, true));
  };
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: number): void => {
    if (type === 8) return str();
    if (type === 9) {
      u32.push(p);
      const item = dv.getUint32(p, true);
      u64.push(p + 4);
      const n = Number(dv.getBigUint64(p + 4, true));
      p += 12;
      for (let i = 0; i < n; i++) value(item);
      return;
    }
    p += SIZES[type] as number;
  };
  const nTensors = Number(dv.getBigUint64(8, true));
  const nKv = Number(dv.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    str();
    u32.push(p);
    const t = dv.getUint32(p, true);
    p += 4;
    value(t);
  }
  for (let i = 0; i < nTensors; i++) {
    str();
    u32.push(p);
    const nd = dv.getUint32(p, true);
    p += 4;
    for (let d = 0; d < nd; d++, p += 8) u64.push(p);
    u32.push(p); // ggml type
    u64.push(p + 4); // offset
    p += 12;
  }
  return { u64, u32 };
}

const HUGE = [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, 2n ** 53n - 1n, 2n ** 32n, 2n ** 31n, 100_000_000n, 65536n, 1000n, 0n, 1n];
const U32S = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 30, 31, 34, 35, 36, 0xffff, 0x7fffffff, 0xffffffff];

type Fields = { u64: number[]; u32: number[] };

const MUTATORS: Mutator<Fields>[] = [
  truncate(),
  randomizeBytes(),
  setInt({ kind: 'u64', at: (rng, _b, f: Fields) => pick(rng, f.u64), values: HUGE }),
  addToInt({ kind: 'u64', at: (rng, _b, f: Fields) => pick(rng, f.u64), max: 8 }),
  setInt({ kind: 'u32', at: (rng, _b, f: Fields) => pick(rng, f.u32), values: U32S }),
  (rng, base, f) => {
    // Cut just before or after a field.
    const at = pick(rng, [...f.u64, ...f.u32]) + rng.int(12) - 2;
    const n = Math.max(0, Math.min(base.length, at));
    return { what: `truncate at field ${n}`, bytes: base.slice(0, n) };
  },
  append({ max: 64, fill: 'either' }),
  (rng, base) => {
    // Insert or delete bytes inside the header: every later field shifts.
    const at = 24 + rng.int(Math.min(base.length, 400) - 24);
    const k = 1 + rng.int(8);
    if (rng.int(2) === 0) return { what: `delete ${k} bytes at ${at}`, bytes: splice(base, at, k) };
    return { what: `insert ${k} bytes at ${at}`, bytes: splice(base, at, 0, randomBytes(rng, k)) };
  },
];

function consistent(f: GgufFile): void {
  for (const t of f.tensors) {
    const want = ggmlTensorBytes(t.type, t.dims);
    if (t.data.length !== want) throw new Error(`tensor ${t.name}: ${t.data.length} bytes, ${t.type} [${t.dims.join(', ')}] needs ${want}`);
    if (t.offset % f.alignment !== 0) throw new Error(`tensor ${t.name} at unaligned offset ${t.offset}`);
  }
  const items = (v: GgufValue): void => {
    if (v.type !== 'array') return;
    for (const i of v.items) {
      if (i.type !== v.itemType) throw new Error(`array of ${v.itemType} holds a ${i.type}`);
      items(i);
    }
  };
  for (const v of f.metadata.values()) items(v);
}

/** 'parsed' or the error class; both readers must agree. */
function check(buf: Uint8Array, path: string): string {
  const r = bothReaders(buf, path, 'fuzz.gguf', parseGguf, (p) => readGguf(p, 24 + (buf.length % 97)));
  if (r.parsed !== undefined) {
    const [pa, pb] = r.parsed;
    consistent(pa);
    if (pa.tensors.length !== pb.tensors.length || pa.tensors.some((t, i) => !Buffer.from(t.data).equals(Buffer.from(pb.tensors[i]?.data ?? []))))
      throw new Error('readGguf read other tensors than parseGguf');
  }
  return r.outcome;
}

describe('GGUF reader fuzz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-gguf-fuzz-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every mutated file parses consistently or throws FormatError / UnsupportedError, in both readers (seeded, 3000 cases)', async () => {
    const bases = seeds();
    const path = join(dir, 'case.gguf');
    for (const b of bases) expect(check(b, path)).to.equal('parsed');
    const { outcomes: tally } = await runCases({
      seed: SEED,
      count: 3000,
      bases,
      ctx: bases.map(fields),
      mutators: MUTATORS,
      check: (buf) => check(buf, path),
    });
    console.log(`      outcomes: ${JSON.stringify(tally)}`);
    expect(tally['FormatError'] ?? 0).to.be.greaterThan(1500);
    expect(tally['parsed'] ?? 0).to.be.greaterThan(50);
  });
});
