/**
 * Seeded mutations of real files, for the reader fuzz campaign (scripts/fuzz/index.ts). Byte mutators model
 * damage (truncation, bit flips, lost or repeated spans) and hostile headers (counts and lengths set to extremes);
 * text mutators model hand edits and hostile documents (extreme numbers, broken brackets, nesting bombs, huge
 * strings). Every mutation is a pure function of (rng, input), so a case number replays exactly.
 */
import type { Rng } from '@bitdistill/core';

export interface Mutation {
  /** What was done, for the report: "truncate to 812", "u32 0xffffffff at 24". */
  what: string;
  bytes: Uint8Array;
}

type Mutator = (rng: Rng, b: Uint8Array) => Mutation;

const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)] as T;

/** Values that break length and count fields: zero, one, sign bits, all ones, just past 2^31/2^32/2^53. */
const EXTREMES: readonly bigint[] = [0n, 1n, 2n, 7n, 255n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n, 2n ** 64n - 1n];

/** A position biased to the first 4 KiB, where every format here keeps its header, counts and offsets. */
function headerPos(rng: Rng, n: number): number {
  if (n === 0) return 0;
  return rng.next() < 0.75 ? rng.int(Math.min(n, 4096)) : rng.int(n);
}

const BYTE_MUTATORS: Mutator[] = [
  (rng, b) => {
    const n = rng.int(b.length + 1);
    return { what: `truncate to ${n}`, bytes: b.slice(0, n) };
  },
  (rng, b) => {
    const out = b.slice();
    const k = 1 + rng.int(8);
    for (let j = 0; j < k && out.length > 0; j++) {
      const i = rng.int(out.length);
      out[i] = (out[i] as number) ^ (1 << rng.int(8));
    }
    return { what: `${k} bit flips`, bytes: out };
  },
  (rng, b) => {
    const out = b.slice();
    const k = 1 + rng.int(4);
    for (let j = 0; j < k && out.length > 0; j++) out[headerPos(rng, out.length)] = rng.int(256);
    return { what: `${k} random header bytes`, bytes: out };
  },
  (rng, b) => {
    const out = b.slice();
    const width = pick(rng, [4, 8] as const);
    const at = headerPos(rng, Math.max(1, out.length - width + 1));
    if (at + width > out.length) return { what: 'too short for an integer overwrite', bytes: out };
    const v = pick(rng, EXTREMES) & ((1n << BigInt(8 * width)) - 1n);
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    if (width === 4) dv.setUint32(at, Number(v), true);
    else dv.setBigUint64(at, v, true);
    return { what: `u${8 * width} ${v} at ${at}`, bytes: out };
  },
  (rng, b) => {
    const at = rng.int(b.length + 1);
    const ins = new Uint8Array(1 + rng.int(64)).map(() => rng.int(256));
    return { what: `insert ${ins.length} bytes at ${at}`, bytes: concat(b.subarray(0, at), ins, b.subarray(at)) };
  },
  (rng, b) => {
    const at = rng.int(b.length + 1);
    const len = 1 + rng.int(Math.min(256, Math.max(1, b.length - at)));
    return { what: `delete ${len} bytes at ${at}`, bytes: concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + len))) };
  },
  (rng, b) => {
    const from = rng.int(b.length + 1);
    const len = rng.int(Math.min(512, b.length - from) + 1);
    const to = rng.int(b.length + 1);
    return { what: `repeat ${len} bytes from ${from} at ${to}`, bytes: concat(b.subarray(0, to), b.subarray(from, from + len), b.subarray(to)) };
  },
];

const STRUCTURAL = [...'{}[](),:"\'\t\n -#&*!|>'];
const NUMBERS = ['-1', '0', '1e309', '-1e309', '9007199254740993', '99999999999999999999', '1.5', '-0', '2147483648', '4294967296', '1e-320', 'NaN', '.inf', '"7"', 'null', 'true', '[]', '{}'];

function textMutators(): Mutator[] {
  const text = (f: (rng: Rng, s: string) => [string, string]): Mutator => (rng, b) => {
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

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

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
