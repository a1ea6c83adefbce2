// Seeded fuzzing of the safetensors reader: every mutated file must either parse into consistent tensors or
// raise a FormatError. Any other exception (RangeError, TypeError, a JSON.parse SyntaxError...) is a reader bug.
import { expect } from 'chai';
import { FormatError } from '@bitdistill/core';
import { addToInt, append, pick, randomizeBytes, runCases, setInt, splice, truncate, writeInt, type Mutator } from '../../../scripts/fuzz/mutate.ts';
import { parseSafetensors, serializeSafetensors, type TensorEntry } from '../src/index.ts';

const SEED = 20240611;

function seeds(): Uint8Array[] {
  const a = new Map<string, TensorEntry>([
    ['model.embed.weight', { dtype: 'F32', shape: [3, 4], data: new Float32Array(12).map((_, i) => i - 5.5) }],
    ['half', { dtype: 'F16', shape: [5], data: new Uint16Array([0x3c00, 0x7e00, 0x8000, 1, 0x7bff]) }],
    ['brain', { dtype: 'BF16', shape: [2, 1], data: new Uint16Array([0x3f80, 0xbf80]) }],
    ['i8', { dtype: 'I8', shape: [7], data: new Int8Array([-1, 0, 1, -128, 127, 5, 6]) }],
    ['packed', { dtype: 'U8', shape: [2, 3], data: new Uint8Array([0, 1, 2, 85, 170, 255]) }],
    ['steps', { dtype: 'I32', shape: [2], data: new Int32Array([7, -7]) }],
    ['ids', { dtype: 'I64', shape: [2, 2], data: new BigInt64Array([1n, -1n, 2n ** 40n, 0n]) }],
  ]);
  const b = new Map<string, TensorEntry>([
    ['empty', { dtype: 'F32', shape: [0, 16], data: new Float32Array(0) }],
    ['scalar', { dtype: 'I64', shape: [], data: new BigInt64Array([3n]) }],
    ['ünïcode', { dtype: 'U8', shape: [1, 1, 1], data: new Uint8Array([9]) }],
  ]);
  return [
    serializeSafetensors(a, { format: 'pt', step: '12' }),
    serializeSafetensors(b),
    serializeSafetensors(new Map(), { only: 'metadata' }),
    serializeSafetensors(new Map([['x', { dtype: 'F16', shape: [1], data: new Uint16Array([0x3c00]) } as TensorEntry]])),
  ];
}

function headerLength(buf: Uint8Array): number {
  return Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
}

/** Positions in the header whose byte matches `pred`. */
function positions(buf: Uint8Array, pred: (b: number) => boolean): number[] {
  const out: number[] = [];
  const end = Math.min(buf.length, 8 + headerLength(buf));
  for (let i = 8; i < end; i++) if (pred(buf[i] as number)) out.push(i);
  return out;
}

const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39;
const STRUCTURAL = new Set([...'{}[],:" '].map((c) => c.charCodeAt(0)));
const DTYPE_SWAPS: [string, string][] = [
  ['F32', 'F64'],
  ['F16', 'F61'],
  ['I64', 'U64'],
  ['U8"', 'U9"'],
  ['I32', 'U32'],
  ['BF16', 'BF32'],
  ['F16', 'f16'],
];
const HUGE = [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n + 1n, 2n ** 32n, 100_000_001n, 100_000_000n];

const MUTATORS: Mutator[] = [
  truncate(),
  randomizeBytes(),
  (rng, base) => {
    const out = base.slice();
    const i = rng.int(8);
    out[i] = rng.int(256);
    return { what: `length byte ${i}`, bytes: out };
  },
  setInt({ kind: 'u64', at: () => 0, values: HUGE }),
  addToInt({ kind: 'u64', at: () => 0, max: 8 }),
  (rng, base) => {
    const out = base.slice();
    const ps = positions(out, isDigit);
    if (ps.length === 0) return { what: 'no digits', bytes: out };
    const k = 1 + rng.int(3);
    for (let j = 0; j < k; j++) out[pick(rng, ps)] = 0x30 + rng.int(10);
    return { what: `${k} header digits`, bytes: out };
  },
  (rng, base) => {
    // Insert digits into a number: grows an offset or dimension by orders of magnitude.
    const ps = positions(base, isDigit);
    if (ps.length === 0) return { what: 'no digits', bytes: base.slice() };
    const at = pick(rng, ps);
    const extra = Uint8Array.from({ length: 1 + rng.int(20) }, () => 0x30 + rng.int(10));
    const out = splice(base, at, 0, extra);
    const fix = rng.int(2) === 0;
    if (fix) writeInt(out, 0, 'u64', headerLength(base) + extra.length);
    return { what: `insert ${extra.length} digits${fix ? ', length fixed' : ''}`, bytes: out };
  },
  (rng, base) => {
    const out = base.slice();
    const ps = positions(out, (b) => STRUCTURAL.has(b));
    if (ps.length > 0) out[pick(rng, ps)] = pick(rng, [...STRUCTURAL, 0x2d /* - */, 0x2e /* . */, 0x65 /* e */, 0x00, 0xff]);
    return { what: 'structural byte', bytes: out };
  },
  (rng, base) => {
    const out = base.slice();
    const text = new TextDecoder('latin1').decode(out.subarray(8, 8 + headerLength(out)));
    const [from, to] = pick(rng, DTYPE_SWAPS);
    const i = text.indexOf(from);
    if (i >= 0) out.set(new TextEncoder().encode(to), 8 + i);
    return { what: `dtype ${from} -> ${to}`, bytes: out };
  },
  (rng, base) => {
    // Swap the two offsets of a data_offsets pair, or shift a whole tensor's range.
    const out = base.slice();
    const text = new TextDecoder('latin1').decode(out.subarray(8, 8 + headerLength(out)));
    const matches = [...text.matchAll(/"data_offsets":\[(\d+),(\d+)\]/g)];
    if (matches.length === 0) return { what: 'no offsets', bytes: out };
    const m = pick(rng, matches);
    const swapped = `"data_offsets":[${m[2]},${m[1]}]`.padEnd((m[0] as string).length, ' ');
    out.set(new TextEncoder().encode(swapped.slice(0, (m[0] as string).length)), 8 + (m.index as number));
    return { what: 'swap offsets', bytes: out };
  },
  append({ max: 16, fill: 'zero' }),
];

function check(buf: Uint8Array): 'parsed' | 'rejected' {
  let parsed;
  try {
    parsed = parseSafetensors(buf, 'fuzz.safetensors');
  } catch (e) {
    if (e instanceof FormatError) return 'rejected';
    throw e;
  }
  let bytes = 0;
  for (const [name, t] of parsed.tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw new Error(`tensor ${name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    bytes += t.data.byteLength;
  }
  const expected = buf.length - 8 - headerLength(buf);
  if (bytes !== expected) throw new Error(`tensors hold ${bytes} bytes but the data buffer is ${expected}`);
  return 'parsed';
}

describe('safetensors fuzz', () => {
  it('every mutated file parses consistently or throws FormatError (seeded, 3000 cases)', async () => {
    const bases = seeds();
    for (const b of bases) expect(check(b)).to.equal('parsed');
    const { outcomes } = await runCases({ seed: SEED, count: 3000, bases, mutators: MUTATORS, check });
    // Both outcomes must occur, or the mutators are not exercising the reader.
    expect(outcomes['rejected'] ?? 0).to.be.greaterThan(1000);
    expect(outcomes['parsed'] ?? 0).to.be.greaterThan(50);
  });
});
