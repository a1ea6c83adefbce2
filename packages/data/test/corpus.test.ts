import { expect } from 'chai';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BitDistillError, NotFoundError } from '@bitdistill/core';
import { CorpusStream, expandCorpusPaths, sampleCorpusSets } from '../src/corpus.ts';
import type { CorpusCursor } from '../src/corpus.ts';
import { loadTokenizer } from '../src/load-tokenizer.ts';
import { ByteTokenizer, WordTokenizer } from './fixtures/fake-tokenizers.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const EOS = 2;

async function take(stream: CorpusStream, n: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) out.push(Array.from(await stream.next()));
  return out;
}

/** The token stream that the sequences cover: the first whole, then all but the (overlapping) first token. */
function unpack(seqs: number[][]): number[] {
  return seqs.flatMap((s, i) => (i === 0 ? s : s.slice(1)));
}

async function rejection(p: Promise<unknown>): Promise<BitDistillError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(BitDistillError);
    return e as BitDistillError;
  }
  throw new Error('expected a rejection');
}

describe('continual pre-training corpus', () => {
  const tok = new ByteTokenizer();
  const docs = readFileSync(fixture('corpus.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { text: string }).text)
    .filter((t) => t.length > 0);
  const expected = docs.flatMap((d) => [...tok.encode(d), EOS]); // one pass over the fixture corpus

  it('packs seqLen + 1 tokens per sequence, overlapping by one, documents ended by EOS', async () => {
    const s = new CorpusStream(fixture('corpus.jsonl'), tok, 16);
    const seqs = await take(s, 8);
    expect(seqs.every((q) => q.length === 17)).to.equal(true);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]?.[0]).to.equal(seqs[i - 1]?.[16]);
    expect(unpack(seqs)).to.deep.equal(expected.slice(0, 8 * 16 + 1));
    const batch = await s.nextBatch(3);
    expect([batch.B, batch.T, batch.inputs.length]).to.deep.equal([3, 16, 48]);
    expect(Array.from(batch.targets.subarray(0, 15))).to.deep.equal(Array.from(batch.inputs.subarray(1, 16)));
  });

  for (const name of ['corpus.parquet', 'corpus.arrow']) {
    it(`${name} gives the same token stream as the JSONL copy (empty rows skipped)`, async () => {
      const s = new CorpusStream(fixture(name), tok, 10, null, { chunkRows: 2 });
      expect(unpack(await take(s, Math.ceil(expected.length / 10))).slice(0, expected.length)).to.deep.equal(expected);
    });
  }

  it('cycles over the files and counts epochs', async () => {
    const s = new CorpusStream(fixture('corpus.jsonl'), tok, 32);
    const flat = unpack(await take(s, Math.ceil((2.5 * expected.length) / 32)));
    expect(flat.slice(0, 2 * expected.length)).to.deep.equal([...expected, ...expected]);
    expect(flat.slice(2 * expected.length)).to.deep.equal(expected.slice(0, flat.length - 2 * expected.length));
    expect(s.cursor().epoch).to.equal(2);
  });

  it('resumes exactly from a saved cursor (10 sequences, save, 5 more), across chunks of a real corpus', async () => {
    const path = repo('datasets/corpus/tinyshakespeare');
    const a = new CorpusStream(path, tok, 300, null, { chunkBytes: 1024 });
    await take(a, 10);
    const saved = JSON.parse(JSON.stringify(a.cursor())) as CorpusCursor;
    const more = await take(a, 5);
    const b = new CorpusStream(path, tok, 300, saved, { chunkBytes: 1024 });
    expect(await take(b, 5)).to.deep.equal(more);
    expect(b.cursor()).to.deep.equal(a.cursor());
    // and the packed bytes are the file's bytes
    const text = readFileSync(join(path, 'input.txt'));
    expect(unpack(await take(new CorpusStream(path, tok, 300, null, { chunkBytes: 1024 }), 15))).to.deep.equal(
      Array.from(text.subarray(0, 15 * 300 + 1), (x) => x + 3),
    );
  });

  it('resumes exactly from every position, over file, chunk and epoch boundaries, for each format', async () => {
    // a word tokenizer, so chunk boundaries would show if a resumed stream cut chunks differently
    const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
    try {
      writeFileSync(join(dir, 'a.txt'), 'one two three\nfour five\n\nsix seven eight nine\n');
      writeFileSync(join(dir, 'b.txt'), 'ten eleven');
      for (const paths of [[dir], [fixture('corpus.jsonl'), fixture('corpus.parquet'), fixture('corpus.arrow')]]) {
        const opts = { chunkBytes: 16, chunkRows: 2 };
        const wt = new WordTokenizer();
        const ref = new CorpusStream(paths, wt, 3, null, opts);
        const all = await take(ref, 130);
        const cursors: CorpusCursor[] = [];
        const walk = new CorpusStream(paths, wt, 3, null, opts);
        for (let k = 0; k < 120; k++) {
          cursors.push(JSON.parse(JSON.stringify(walk.cursor())) as CorpusCursor);
          await walk.next();
        }
        for (let k = 0; k < 120; k++) {
          const resumed = new CorpusStream(paths, wt, 3, cursors[k], opts);
          expect(await take(resumed, 8), `resume after ${k}`).to.deep.equal(all.slice(k, k + 8));
        }
        expect(walk.cursor().epoch).to.be.greaterThan(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resumes exactly with the stories260K tokenizer over small chunks of two Gutenberg books', async () => {
    const real = loadTokenizer(repo('models/stories260K'));
    const paths = [repo('datasets/corpus/gutenberg-nltk/blake-poems.txt'), repo('datasets/corpus/gutenberg-nltk/shakespeare-macbeth.txt')];
    const opts = { chunkBytes: 4096 };
    const a = new CorpusStream(paths, real, 128, null, opts);
    await take(a, 10);
    const saved = JSON.parse(JSON.stringify(a.cursor())) as CorpusCursor;
    const more = await take(a, 5);
    expect(await take(new CorpusStream(paths, real, 128, saved, opts), 5)).to.deep.equal(more);
    expect(more.flat().every((id) => id >= 0 && id < real.vocabSize)).to.equal(true);
  });

  it('cuts text chunks at character boundaries when a chunk has no newline', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
    try {
      const text = 'héllo wörld ✓ naïve 𝄞 café '.repeat(20);
      writeFileSync(join(dir, 'u.txt'), text);
      const s = new CorpusStream(dir, tok, 50, null, { chunkBytes: 16 });
      const bytes = Buffer.from(text, 'utf8');
      const n = Math.ceil((bytes.length + 1) / 50);
      expect(unpack(await take(s, n)).slice(0, bytes.length + 1)).to.deep.equal([...Array.from(bytes, (x) => x + 3), EOS]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('expands folders recursively to their corpus files sorted by name, skipping README and .md', () => {
    const files = expandCorpusPaths(repo('datasets/corpus/us-presidential-speeches'));
    expect(files.length).to.be.greaterThan(100);
    expect(files.every((f) => f.endsWith('.txt'))).to.equal(true);
    expect(files[0]).to.match(/inaugural\/1789-Washington\.txt$/);
    const inaugural = files.filter((f) => f.includes('/inaugural/'));
    expect(inaugural).to.deep.equal([...inaugural].sort());
    expect(files.findIndex((f) => f.includes('/state_union/'))).to.equal(inaugural.length);
  });

  it('the close()d stream continues from where it was', async () => {
    const a = new CorpusStream(fixture('corpus.arrow'), tok, 7);
    const b = new CorpusStream(fixture('corpus.arrow'), tok, 7);
    await take(a, 3);
    await take(b, 3);
    await a.close();
    expect(await take(a, 4)).to.deep.equal(await take(b, 4));
  });

  describe('bad input', () => {
    it('an empty corpus is an E_DATA error', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
      try {
        writeFileSync(join(dir, 'empty.txt'), '');
        writeFileSync(join(dir, 'blank.jsonl'), '{"text": ""}\n\n');
        const e = await rejection(new CorpusStream(dir, tok, 8).next());
        expect(e.code).to.equal('E_DATA');
        expect(e.message).to.include('no text');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a missing path, a folder without corpus files, a wrong text column', async () => {
      expect(() => new CorpusStream('/no/such/corpus', tok, 8)).to.throw(NotFoundError);
      const dir = mkdtempSync(join(tmpdir(), 'corpus-'));
      try {
        mkdirSync(join(dir, 'sub'));
        writeFileSync(join(dir, 'sub', 'README.md'), '# notes\n');
        expect(() => new CorpusStream(dir, tok, 8)).to.throw(/holds no .txt/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      for (const name of ['corpus.jsonl', 'corpus.parquet', 'corpus.arrow']) {
        const e = await rejection(new CorpusStream(fixture(name), tok, 8, null, { textColumn: 'content' }).next());
        expect(e.message, name).to.include("no 'content' column");
      }
    });

    it('a cursor from another corpus is refused', () => {
      const cursor = new CorpusStream(fixture('corpus.jsonl'), tok, 8).cursor();
      expect(() => new CorpusStream(fixture('corpus.arrow'), tok, 8, cursor)).to.throw(/corpus changed|cursor points at/);
    });
    it('a cursor past the end of its (changed) file is refused', async () => {
      const cursor = { ...new CorpusStream(fixture('corpus.jsonl'), tok, 8).cursor(), offset: 1_000_000 };
      const e = await rejection(new CorpusStream(fixture('corpus.jsonl'), tok, 8, cursor).next());
      expect(e.message).to.include('ends before the cursor position');
    });
  });

  describe('calibration / held-out sets (sampleCorpusSets)', () => {
    it('disjoint sets of the asked sizes, no token shared; the same seed gives the same sets, another seed others', async () => {
      // the fixture corpus is ~360 byte tokens: 44 packed sequences of 9 tokens, 22 of them disjoint
      const [a, b] = await sampleCorpusSets(fixture('corpus.jsonl'), tok, 8, [5, 6], { seed: 1 });
      expect([a?.length, b?.length]).to.deep.equal([5, 6]);
      expect([...(a ?? []), ...(b ?? [])].every((q) => q.length === 9)).to.equal(true);
      // every sequence is a 9-token window of the one-pass token stream at an even sequence index (start 16k)
      const starts = [...(a ?? []), ...(b ?? [])].map((q) => {
        const k = [...Array(expected.length).keys()].find((i) => i % 16 === 0 && Array.from(q).every((t, j) => expected[i + j] === t));
        expect(k, Array.from(q).join(',')).to.not.equal(undefined);
        return k as number;
      });
      expect(new Set(starts).size).to.equal(11);
      const [a2] = await sampleCorpusSets(fixture('corpus.jsonl'), tok, 8, [5, 6], { seed: 1 });
      expect(a2?.map((q) => Array.from(q))).to.deep.equal(a?.map((q) => Array.from(q)));
      const [a3] = await sampleCorpusSets(fixture('corpus.jsonl'), tok, 8, [5, 6], { seed: 2 });
      expect(a3?.map((q) => Array.from(q))).to.not.deep.equal(a?.map((q) => Array.from(q)));
    });

    it('a corpus too short for the sets is a data error naming it; bad sizes an ArgumentError', async () => {
      const e = await rejection(sampleCorpusSets(fixture('corpus.jsonl'), tok, 8, [20, 20], { seed: 0 }));
      expect(e.code).to.equal('E_DATA');
      expect(e.message).to.match(/corpus\.jsonl: \d+ disjoint sequences of 9 tokens, 40 asked for/);
      expect((await rejection(sampleCorpusSets(fixture('corpus.jsonl'), tok, 8, [0, 0], { seed: 0 }))).code).to.equal('E_ARGUMENT');
    });
  });
});
