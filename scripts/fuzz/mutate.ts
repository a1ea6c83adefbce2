/**
 * Seeded mutations of files: the one mutator module of the reader fuzz campaign (scripts/fuzz/index.ts) and of the
 * packages' seeded fuzz tests. Byte mutators model damage (truncation, bit flips, lost or repeated spans) and
 * hostile headers (counts and lengths set to extremes); text mutators model hand edits and hostile documents
 * (extreme numbers, broken brackets, nesting bombs, huge strings). Every mutation is a pure function of
 * (rng, input): it never writes its input, and a case number replays exactly.
 *
 * The byte mutators are factories whose options say where they act and how far, so that a test keeps its own
 * ranges (a header of 28 bytes, the fields of a GGUF header) and the campaign its own; `mutate(rng, bytes, kind)`
 * is the campaign's mix. `runCases` runs a seeded series of cases for a test and tallies the outcomes.
 */
import { Rng } from '@bitdistill/core';

export interface Mutation {
  /** What was done, for the report: "truncate to 812", "u32 at 24 = 4294967295". */
  what: string;
  bytes: Uint8Array;
}

/**
 * A mutation of `b`; `ctx` is what a test knows about its base (the offsets of its header fields, say). The
 * factories below are generic in it only so that they fit in a list of mutators that use it.
 */
export type Mutator<C = void> = (rng: Rng, b: Uint8Array, ctx: C) => Mutation;

export const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)] as T;

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A copy of `b` with `remove` bytes at `at` replaced by `insert`. */
export function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(b.subarray(0, at), insert, b.subarray(Math.min(b.length, at + remove)));
}

export const randomBytes = (rng: Rng, n: number): Uint8Array => Uint8Array.from({ length: n }, () => rng.int(256));

/** Little-endian integer fields: unsigned or two's complement, 32 or 64 bits. */
export type IntKind = 'u32' | 'i32' | 'u64' | 'i64';
const WIDTH: Record<IntKind, number> = { u32: 4, i32: 4, u64: 8, i64: 8 };

export function readInt(b: Uint8Array, at: number, kind: IntKind): bigint {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (kind === 'u32') return BigInt(dv.getUint32(at, true));
  if (kind === 'i32') return BigInt(dv.getInt32(at, true));
  return kind === 'u64' ? dv.getBigUint64(at, true) : dv.getBigInt64(at, true);
}

/** Writes `v` at `at`, wrapped to the field's width as the hardware would. */
export function writeInt(b: Uint8Array, at: number, kind: IntKind, v: number | bigint): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (WIDTH[kind] === 4) dv.setUint32(at, Number(BigInt.asUintN(32, BigInt(v))), true);
  else dv.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
}

// ------------------------------------------------------------------------------------------- generic byte mutators

/** A cut to n = rng.int(limit(b)) bytes: by default strictly shorter than the input. */
export function truncate<C = void>(limit: (b: Uint8Array) => number = (b) => b.length): Mutator<C> {
  return (rng, b) => {
    const n = rng.int(limit(b));
    return { what: `truncate to ${n}`, bytes: b.slice(0, n) };
  };
}

/** 1..max single-bit flips anywhere. */
export function bitFlips<C = void>(max = 8): Mutator<C> {
  return (rng, b) => {
    const out = b.slice();
    const k = 1 + rng.int(max);
    for (let j = 0; j < k && out.length > 0; j++) {
      const i = rng.int(out.length);
      out[i] = (out[i] as number) ^ (1 << rng.int(8));
    }
    return { what: `${k} bit flips`, bytes: out };
  };
}

/** 1..max bytes set to random values, at positions `at(rng, length)` (anywhere by default). */
export function randomizeBytes<C = void>(o: { max?: number; at?: (rng: Rng, n: number) => number } = {}): Mutator<C> {
  const at = o.at ?? ((rng, n) => rng.int(n));
  return (rng, b) => {
    const out = b.slice();
    const k = 1 + rng.int(o.max ?? 4);
    for (let j = 0; j < k && out.length > 0; j++) out[at(rng, out.length)] = rng.int(256);
    return { what: `${k} random bytes`, bytes: out };
  };
}

type Values = readonly (number | bigint)[] | ((b: Uint8Array) => readonly (number | bigint)[]);

/**
 * An integer field at `at(rng, b, ctx)` set to one of `values` (extremes for lengths, counts and offsets);
 * a field that would not fit in the input leaves it as it is.
 */
export function setInt<C = void>(o: { kind: IntKind; at: (rng: Rng, b: Uint8Array, ctx: C) => number; values: Values }): Mutator<C> {
  return (rng, b, ctx) => {
    const out = b.slice();
    const at = o.at(rng, out, ctx);
    const v = pick(rng, typeof o.values === 'function' ? o.values(b) : o.values);
    if (at + WIDTH[o.kind] <= out.length) writeInt(out, at, o.kind, v);
    return { what: `${o.kind} at ${at} = ${v}`, bytes: out };
  };
}

/** An integer field at `at(rng, b, ctx)` moved by -max..+max: an off-by-some length or offset (unsigned ones stop at 0). */
export function addToInt<C = void>(o: { kind: IntKind; at: (rng: Rng, b: Uint8Array, ctx: C) => number; max: number }): Mutator<C> {
  return (rng, b, ctx) => {
    const out = b.slice();
    const at = o.at(rng, out, ctx);
    const d = rng.int(2 * o.max + 1) - o.max;
    if (at + WIDTH[o.kind] <= out.length) {
      const v = readInt(out, at, o.kind) + BigInt(d);
      writeInt(out, at, o.kind, o.kind[0] === 'u' && v < 0n ? 0n : v);
    }
    return { what: `${o.kind} at ${at} ${d >= 0 ? '+' : ''}${d}`, bytes: out };
  };
}

/** 1..max random bytes inserted anywhere. */
export function insertRandom<C = void>(max = 32): Mutator<C> {
  return (rng, b) => {
    const n = 1 + rng.int(max);
    const at = rng.int(b.length + 1);
    return { what: `insert ${n} random bytes at ${at}`, bytes: splice(b, at, 0, randomBytes(rng, n)) };
  };
}

/** 1..max bytes deleted. */
export function deleteSpan<C = void>(max = 32): Mutator<C> {
  return (rng, b) => {
    const at = rng.int(b.length);
    const n = 1 + rng.int(Math.min(max, b.length - at));
    return { what: `delete [${at}, +${n})`, bytes: splice(b, at, n) };
  };
}

/** A span of 1..max bytes repeated somewhere else. */
export function repeatSpan<C = void>(max = 64): Mutator<C> {
  return (rng, b) => {
    const from = rng.int(b.length);
    const n = 1 + rng.int(Math.min(max, b.length - from));
    const at = rng.int(b.length + 1);
    return { what: `repeat [${from}, +${n}) at ${at}`, bytes: splice(b, at, 0, b.slice(from, from + n)) };
  };
}

/** 1..max bytes appended: zeros, random bytes, or either at even odds. */
export function append<C = void>(o: { max: number; fill: 'zero' | 'random' | 'either' }): Mutator<C> {
  return (rng, b) => {
    const n = 1 + rng.int(o.max);
    const random = o.fill === 'random' || (o.fill === 'either' && rng.int(2) === 0);
    return { what: `append ${n} ${random ? 'random' : 'zero'} bytes`, bytes: concat(b, random ? randomBytes(rng, n) : new Uint8Array(n)) };
  };
}

// ---------------------------------------------------------------------------------------------- the campaign's mix

/** Values that break length and count fields: zero, one, sign bits, all ones, just past 2^31/2^32/2^53. */
const EXTREMES: readonly bigint[] = [
  0n,
  1n,
  2n,
  7n,
  255n,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  2n ** 53n + 1n,
  2n ** 62n,
  2n ** 63n - 1n,
  2n ** 64n - 1n,
];

/** A position biased to the first 4 KiB, where every format here keeps its header, counts and offsets. */
function headerPos(rng: Rng, n: number): number {
  if (n === 0) return 0;
  return rng.next() < 0.75 ? rng.int(Math.min(n, 4096)) : rng.int(n);
}

const extremeAt = (kind: 'u32' | 'u64'): Mutator => setInt({ kind, at: (rng, b) => headerPos(rng, Math.max(1, b.length - WIDTH[kind] + 1)), values: EXTREMES });
const EXTREME_INTS = [extremeAt('u32'), extremeAt('u64')];

const BYTE_MUTATORS: Mutator[] = [
  truncate((b) => b.length + 1),
  bitFlips(),
  randomizeBytes({ at: headerPos }),
  (rng, b) => pick(rng, EXTREME_INTS)(rng, b),
  insertRandom(64),
  deleteSpan(256),
  repeatSpan(512),
];

const STRUCTURAL = [...'{}[](),:"\'\t\n -#&*!|>'];
const NUMBERS = [
  '-1',
  '0',
  '1e309',
  '-1e309',
  '9007199254740993',
  '99999999999999999999',
  '1.5',
  '-0',
  '2147483648',
  '4294967296',
  '1e-320',
  'NaN',
  '.inf',
  '"7"',
  'null',
  'true',
  '[]',
  '{}',
];

function textMutators(): Mutator[] {
  const text =
    (f: (rng: Rng, s: string) => [string, string]): Mutator =>
    (rng, b) => {
      const [what, s] = f(rng, Buffer.from(b).toString('utf8'));
      return { what, bytes: new Uint8Array(Buffer.from(s, 'utf8')) };
    };
  return [
    text((rng, s) => {
      const nums = [...s.matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)];
      if (nums.length === 0) return ['no number to replace', s];
      const m = pick(rng, nums);
      const v = pick(rng, NUMBERS);
      return [`number '${m[0]}' at ${m.index} -> ${v}`, s.slice(0, m.index) + v + s.slice((m.index as number) + m[0].length)];
    }),
    text((rng, s) => {
      const idx: number[] = [];
      for (let i = 0; i < s.length; i++) if (STRUCTURAL.includes(s[i] as string)) idx.push(i);
      if (idx.length === 0) return ['no structural character', s];
      const i = pick(rng, idx);
      return rng.next() < 0.5 ? [`delete '${s[i]}' at ${i}`, s.slice(0, i) + s.slice(i + 1)] : [`double '${s[i]}' at ${i}`, s.slice(0, i + 1) + s.slice(i)];
    }),
    text((rng, s) => {
      const strs = [...s.matchAll(/"(?:[^"\\\n]|\\.){0,200}"/g)];
      if (strs.length === 0) return ['no string to replace', s];
      const m = pick(rng, strs);
      const v = pick(rng, ['""', `"${'x'.repeat(200_000)}"`, '"\\ud800"', '"\\u0000"', '"é\u0301🙂"', '"__proto__"', '"constructor"', `"${'\\'.repeat(3)}"`]);
      return [`string at ${m.index} -> ${v.slice(0, 16)}... (${v.length} chars)`, s.slice(0, m.index) + v + s.slice((m.index as number) + m[0].length)];
    }),
    text((rng, s) => {
      const at = rng.int(s.length + 1);
      const depth = pick(rng, [100, 10_000, 200_000]);
      const open = pick(rng, ['[', '{"a":', '- ', '  ']);
      return [`nest ${depth} x '${open}' at ${at}`, s.slice(0, at) + open.repeat(depth) + s.slice(at)];
    }),
    text((rng, s) => {
      const lines = s.split('\n');
      if (lines.length < 2) return ['one line only', s];
      const i = rng.int(lines.length);
      const j = rng.int(lines.length);
      const op = rng.int(3);
      if (op === 0) [lines[i], lines[j]] = [lines[j] as string, lines[i] as string];
      else if (op === 1) lines.splice(i, 1);
      else lines.splice(i, 0, ...Array<string>(1 + rng.int(2000)).fill(lines[j] as string));
      return [`${['swap', 'drop', 'repeat'][op]} line ${i}${op === 1 ? '' : `/${j}`}`, lines.join('\n')];
    }),
    text((rng, s) => {
      const at = rng.int(s.length + 1);
      const junk = pick(rng, ['\u0000', '\uFEFF', '\r', '\t\t', '"', "'", '\\', '%', '&a *a', '!!binary', '<<: *x', '\u2028', '\uFFFD']);
      return [`insert ${JSON.stringify(junk)} at ${at}`, s.slice(0, at) + junk + s.slice(at)];
    }),
  ];
}

const TEXT_MUTATORS = textMutators();

/**
 * One mutation of `input`: for text formats text edits two times in three, otherwise byte damage. With
 * probability 1/8 a second mutation is stacked on the first.
 */
export function mutate(rng: Rng, input: Uint8Array, kind: 'binary' | 'text'): Mutation {
  const one = (b: Uint8Array): Mutation => (kind === 'text' && rng.next() < 2 / 3 ? pick(rng, TEXT_MUTATORS) : pick(rng, BYTE_MUTATORS))(rng, b);
  const m = one(input);
  if (rng.next() >= 1 / 8) return m;
  const m2 = one(m.bytes);
  return { what: `${m.what}; ${m2.what}`, bytes: m2.bytes };
}

// ----------------------------------------------------------------------------------------------- a test's cases

export interface CaseTally {
  /** Cases by the outcome `check` returned. */
  outcomes: Record<string, number>;
  /** The slowest check, ms, and its case. */
  maxMs: number;
  slowest: string;
}

/**
 * `count` seeded cases: a base picked at random, a mutator applied to it (with the base's `ctx`), `check` run on
 * the result. `check` returns the outcome to tally ('parsed', the error's name...) and throws on a reader bug;
 * that error is rethrown naming the case, the seed, the base and the mutation, so the case replays. `rng`, when
 * given, continues a stream the bases were drawn from (else the cases start from `seed`).
 */
export async function runCases<C = void>(o: {
  seed: number;
  rng?: Rng;
  count: number;
  bases: readonly Uint8Array[];
  ctx?: readonly C[];
  mutators: readonly Mutator<C>[];
  check: (bytes: Uint8Array, base: number) => string | Promise<string>;
}): Promise<CaseTally> {
  const rng = o.rng ?? new Rng(o.seed);
  const tally: CaseTally = { outcomes: {}, maxMs: 0, slowest: '' };
  for (let k = 0; k < o.count; k++) {
    const b = rng.int(o.bases.length);
    const m = rng.int(o.mutators.length);
    const { what, bytes } = (o.mutators[m] as Mutator<C>)(rng, o.bases[b] as Uint8Array, o.ctx?.[b] as C);
    const t0 = performance.now();
    let outcome: string;
    try {
      outcome = await o.check(bytes, b);
    } catch (e) {
      const err = e as Error;
      throw new Error(`case ${k} (seed ${o.seed}, base ${b}, mutator ${m}: ${what}) threw ${err.name}: ${err.message}`, { cause: e });
    }
    tally.outcomes[outcome] = (tally.outcomes[outcome] ?? 0) + 1;
    const ms = performance.now() - t0;
    if (ms > tally.maxMs) {
      tally.maxMs = ms;
      tally.slowest = `case ${k} (base ${b}, ${what})`;
    }
  }
  return tally;
}
