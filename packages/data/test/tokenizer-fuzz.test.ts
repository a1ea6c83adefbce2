// Seeded fuzzing of the tokenizer loaders (issue 21, item 5): every mutated tokenizer.json / tokenizer.bin must
// load into a tokenizer that encodes and decodes within its vocabulary, or raise a BitDistillError, quickly.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormatError, type Rng } from '@bitdistill/core';
import { loadHfTokenizer } from '../src/hf-tokenizer.ts';
import { parseLlama2cTokenizer } from '../src/llama2c-tokenizer.ts';
import type { Tokenizer } from '../src/tokenizer.ts';
import { BINARY_MUTATORS, TEXT_MUTATORS, enc, latin1, pick, runFuzz, splice, type Mutation, type Mutator } from './fixtures/fuzz.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const SEED = 20250124;
const SAMPLE = 'Hello world, the quick brown fox! naïve café 🙂 \t\n 12345';

/** Replaces the `i`-th match of `re` in the text of `base` with `value`. */
function replaceMatch(rng: Rng, base: Uint8Array, re: RegExp, values: readonly string[]): Mutation {
  const matches = [...latin1.decode(base).matchAll(re)];
  if (matches.length === 0) return { what: 'no match', bytes: base.slice() };
  const m = pick(rng, matches);
  const v = pick(rng, values);
  return {
    what: `${JSON.stringify(m[0].slice(0, 20))} -> ${JSON.stringify(v.slice(0, 20))}`,
    bytes: splice(base, m.index as number, m[0].length, enc.encode(v)),
  };
}

const NUMBERS = ['-1', '1e300', '1.5', '99999999999', '0', '4294967296', '"7"', 'null', '[]', '3', '100'];
const STRINGS = ['""', '"BPE"', '"WordPiece"', '"Unigram"', '"[UNK]"', '42', 'null', '[]', '{}', '["a"]', `"${'x'.repeat(300_000)}"`];
const JSON_MUTATORS: Mutator[] = [
  (rng, base) => replaceMatch(rng, base, /-?\d+(\.\d+)?/g, [...NUMBERS, String(rng.int(700))]),
  (rng, base) => replaceMatch(rng, base, /"(?:[^"\\]|\\.)*"/g, STRINGS),
  (rng, base) =>
    replaceMatch(rng, base, /\[|\{/g, ['[' + '['.repeat(100_000) + ']'.repeat(100_000) + ',', '{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000) + ',']),
];

function checkTokenizer(t: Tokenizer): void {
  expect(t.vocabSize).to.be.within(1, 10_000);
  const ids = t.encode(SAMPLE);
  for (const id of ids) expect(Number.isInteger(id) && id >= 0 && id < t.vocabSize, `id ${id}`).to.equal(true);
  expect(t.decode(ids)).to.be.a('string');
  for (const id of ids.slice(0, 5)) expect(t.decodeToken(id)).to.be.a('string');
}

describe('tokenizer fuzz', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tokenizer-fuzz-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('tokenizer.json: every mutated file loads into a working tokenizer or throws a BitDistillError (seeded, 500 cases)', async () => {
    const bases = ['small-bpe', 'small-wordpiece'].map((d) => Uint8Array.from(readFileSync(fixture(`${d}/tokenizer.json`))));
    for (const b of bases) {
      writeFileSync(join(dir, 'tokenizer.json'), b);
      checkTokenizer(loadHfTokenizer(join(dir, 'tokenizer.json')));
    }
    mkdirSync(join(dir, 'case'), { recursive: true });
    const file = join(dir, 'case', 'tokenizer.json');
    const mutators = [...JSON_MUTATORS, ...JSON_MUTATORS, ...TEXT_MUTATORS, ...BINARY_MUTATORS];
    const r = await runFuzz(SEED, 500, bases, mutators, (bytes) => {
      writeFileSync(file, bytes);
      checkTokenizer(loadHfTokenizer(file));
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(200);
    expect(r.accepted, 'accepted').to.be.greaterThan(50);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('tokenizer.bin: every mutated file parses into a working tokenizer or throws a FormatError (seeded, 1000 cases)', async () => {
    const base = Uint8Array.from(readFileSync(repo('models/stories260K/tokenizer.bin')));
    const r = await runFuzz(SEED + 1, 1000, [base], BINARY_MUTATORS, (bytes, _b) => {
      const t = parseLlama2cTokenizer(bytes, 'fuzz.bin', bytes.length % 2 === 0 ? { vocabSize: 512 } : {});
      checkTokenizer(t);
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(500);
    expect(r.accepted, 'accepted').to.be.greaterThan(50);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });
});

/** A llama2.c tokenizer.bin: the 259 tokens run.c relies on, " ", then `extra` pieces. */
function llama2cFile(extra: readonly Uint8Array[]): Uint8Array {
  const pieces: Uint8Array[] = [enc.encode('<unk>'), enc.encode('<s>'), enc.encode('</s>')];
  for (let b = 0; b < 256; b++) pieces.push(enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
  pieces.push(enc.encode(' '));
  for (const p of extra) pieces.push(p);
  let maxLen = 0;
  for (const p of pieces) maxLen = Math.max(maxLen, p.length);
  const out = new Uint8Array(4 + pieces.reduce((n, p) => n + 8 + p.length, 0));
  const view = new DataView(out.buffer);
  view.setInt32(0, maxLen, true);
  let off = 4;
  pieces.forEach((p, i) => {
    view.setFloat32(off, -i, true);
    view.setInt32(off + 4, p.length, true);
    out.set(p, off + 8);
    off += 8 + p.length;
  });
  return out;
}

describe('tokenizer sizes', () => {
  it('a 200 KB llama2.c token and 140,000 pieces load (no spread of a data-sized array)', () => {
    const long = enc.encode('ab'.repeat(100_000));
    const big = parseLlama2cTokenizer(llama2cFile([long]), 'long.bin');
    expect(big.tokenToId('ab'.repeat(100_000))).to.equal(260);
    expect(big.decodeToken(260)).to.have.length(200_000);
    const many = Array.from({ length: 140_000 }, (_, i) => enc.encode(`w${i}`));
    const t = parseLlama2cTokenizer(llama2cFile(many), 'many.bin');
    expect(t.vocabSize).to.equal(260 + 140_000);
    expect(t.tokenToId('w139999')).to.equal(260 + 139_999);
  });

  it('counts and lengths in a tokenizer.bin header are checked against the file size', () => {
    const bytes = llama2cFile([]);
    new DataView(bytes.buffer).setInt32(0, 2 ** 30, true);
    expect(() => parseLlama2cTokenizer(bytes, 'x.bin')).to.throw(FormatError, 'max_token_length is 1073741824, more than the');
    expect(() => parseLlama2cTokenizer(llama2cFile([]), 'x.bin', { vocabSize: 2 ** 30 })).to.throw(FormatError, 'vocab size 1073741824 needs at least');
  });

  it('a tokenizer.json whose ids leave a huge gap is refused (the vocabulary size comes from the largest id)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tokenizer-ids-'));
    try {
      const json = JSON.parse(readFileSync(fixture('small-wordpiece/tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
      json.model.vocab['zzz'] = 1e12;
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
      expect(() => loadHfTokenizer(join(dir, 'tokenizer.json'))).to.throw(FormatError, 'ids go up to 1000000000000 for 1608 tokens');
      json.model.vocab['zzz'] = 1607;
      (json as Record<string, unknown>)['normalizer'] = [[[[1]]]];
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
      expect(() => loadHfTokenizer(join(dir, 'tokenizer.json'))).to.throw(FormatError, 'normalizer is a list of 1, expected null or an object with a "type"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
