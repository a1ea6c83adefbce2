// Seeded fuzzing of the Arrow readers (issue 21: a 987-byte mutated .arrow file spun 47 s in tableFromIPC and
// died of a heap OOM). Every mutated file must read into plausible rows or raise a BitDistillError, quickly.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tableFromIPC, tableToIPC } from 'apache-arrow';
import { FormatError } from '@bitdistill/core';
import { CorpusStream } from '../src/corpus.ts';
import { readExamples } from '../src/readers.ts';
import { GLUE_TASKS } from '../src/tasks.ts';
import { ByteTokenizer } from './fixtures/fake-tokenizers.ts';
import { BINARY_MUTATORS, runFuzz } from './fixtures/fuzz.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const SEED = 20250121;

describe('Arrow fuzz', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'arrow-fuzz-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // The fixtures are IPC streams; the same tables as IPC files (footer + blocks) exercise the file format.
  const stream = (name: string): Uint8Array => readFileSync(fixture(name));
  const asFile = (name: string): Uint8Array => tableToIPC(tableFromIPC(stream(name)), 'file');

  it('the IPC file copies of the fixtures read like the streams', async () => {
    const file = join(dir, 'sst2-file.arrow');
    writeFileSync(file, asFile('sst2.arrow'));
    expect(await readExamples(file, GLUE_TASKS.sst2)).to.deep.equal(await readExamples(fixture('sst2.arrow'), GLUE_TASKS.sst2));
  });

  it('readExamples: every mutated SST-2 file gives plausible rows or a BitDistillError (seeded, 600 cases)', async () => {
    const file = join(dir, 'case.arrow');
    const bases = [stream('sst2.arrow'), asFile('sst2.arrow')];
    const r = await runFuzz(SEED, 600, bases, BINARY_MUTATORS, async (bytes) => {
      writeFileSync(file, bytes);
      const rows = await readExamples(file, GLUE_TASKS.sst2);
      expect(rows.length).to.be.at.most(bytes.length * 8);
      for (const row of rows) {
        expect(row.fields['sentence']).to.be.a('string');
        expect([0, 1]).to.include(row.label);
      }
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(300);
    expect(r.accepted, 'accepted').to.be.greaterThan(20);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('CorpusStream: every mutated corpus file gives token sequences or a BitDistillError (seeded, 400 cases)', async () => {
    const file = join(dir, 'corpus.arrow');
    const bases = [stream('corpus.arrow'), asFile('corpus.arrow')];
    const r = await runFuzz(SEED + 1, 400, bases, BINARY_MUTATORS, async (bytes) => {
      writeFileSync(file, bytes);
      const s = new CorpusStream(file, new ByteTokenizer(), 16);
      try {
        for (let i = 0; i < 30; i++) expect((await s.next()).length).to.equal(17);
      } finally {
        await s.close();
      }
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(150);
    expect(r.accepted, 'accepted').to.be.greaterThan(20);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('errors name the file and say what is wrong', async () => {
    const file = join(dir, 'bad.arrow');
    const good = stream('sst2.arrow');
    writeFileSync(file, good.subarray(0, 600));
    const e = await readExamples(file, GLUE_TASKS.sst2).then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).to.be.instanceOf(FormatError);
    expect((e as FormatError).message)
      .to.include(file)
      .and.include('body length');
  });
});
