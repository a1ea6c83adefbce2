// Seeded fuzzing of the parquet readers (issue 21: of 2,000 mutated parquet files 190 escaped as raw hyparquet
// errors, e.g. "internal error"). Every mutated file must read into plausible rows or raise a BitDistillError,
// quickly; two hand-made cases pin the allocations that used to come from a corrupt header or run.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BitDistillError, FormatError } from '@bitdistill/core';
import { CorpusStream } from '../src/corpus.ts';
import { readExamples } from '../src/readers.ts';
import { GLUE_TASKS } from '../src/tasks.ts';
import { ByteTokenizer } from './fixtures/fake-tokenizers.ts';
import { BINARY_MUTATORS, runFuzz } from './fixtures/fuzz.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const SEED = 20250122;

async function failure(p: Promise<unknown>): Promise<BitDistillError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).to.be.instanceOf(BitDistillError);
  return e as BitDistillError;
}

describe('parquet fuzz', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'parquet-fuzz-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const base = (name: string): Uint8Array => Uint8Array.from(readFileSync(fixture(name)));

  it('readExamples: every mutated SST-2 file gives plausible rows or a BitDistillError (seeded, 700 cases)', async () => {
    const file = join(dir, 'case.parquet');
    const r = await runFuzz(SEED, 700, [base('sst2.parquet')], BINARY_MUTATORS, async (bytes) => {
      writeFileSync(file, bytes);
      const rows = await readExamples(file, GLUE_TASKS.sst2);
      expect(rows.length).to.be.at.most(6);
      for (const row of rows) {
        expect(row.fields['sentence']).to.be.a('string');
        expect([0, 1]).to.include(row.label);
      }
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(350);
    expect(r.accepted, 'accepted').to.be.greaterThan(50);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('CorpusStream: every mutated corpus file gives token sequences or a BitDistillError (seeded, 400 cases)', async () => {
    const file = join(dir, 'corpus.parquet');
    const r = await runFuzz(SEED + 1, 400, [base('corpus.parquet')], BINARY_MUTATORS, async (bytes) => {
      writeFileSync(file, bytes);
      const s = new CorpusStream(file, new ByteTokenizer(), 16, null, { chunkRows: 3 });
      try {
        for (let i = 0; i < 30; i++) expect((await s.next()).length).to.equal(17);
      } finally {
        await s.close();
      }
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(150);
    expect(r.accepted, 'accepted').to.be.greaterThan(30);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('an RLE run of 2^31 definition levels (a heap OOM in hyparquet) is a FormatError naming the page', async () => {
    // sst2.parquet: the first page's data starts at byte 23 (snappy literal); its definition levels are
    // [int32 length 2][RLE header 0x0c = 6 values][value 1] at bytes 28..33. An RLE header of 2^31 - 2.
    const bytes = base('sst2.parquet');
    expect(Array.from(bytes.subarray(28, 34))).to.deep.equal([2, 0, 0, 0, 0x0c, 1]);
    bytes.set([0xfe, 0xff, 0xff, 0xff, 0x07], 32);
    const file = join(dir, 'rle.parquet');
    writeFileSync(file, bytes);
    const e = await failure(readExamples(file, GLUE_TASKS.sst2));
    expect(e).to.be.instanceOf(FormatError);
    expect(e.message).to.include(file).and.include('column sentence, page 0').and.include('RLE run of 1073741823 values where 6 remain');
  });

  it('num_rows larger than the row groups (the corpus would loop over empty reads) is a FormatError', async () => {
    const bytes = base('corpus.parquet');
    // FileMetaData field 3 (num_rows, i64): header byte 0x16 then zigzag varint 14 (= 7 rows).
    const meta = bytes.length - 8 - new DataView(bytes.buffer).getUint32(bytes.length - 8, true);
    const at = bytes.indexOf(0x16, meta);
    expect(bytes[at + 1]).to.equal(14);
    bytes[at + 1] = 0x7e; // 63 rows
    const file = join(dir, 'rows.parquet');
    writeFileSync(file, bytes);
    const e = await failure(new CorpusStream(file, new ByteTokenizer(), 8).next());
    expect(e.message).to.include(file).and.include('num_rows is 63 but the row groups hold 7');
  });
});
