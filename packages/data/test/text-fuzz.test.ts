// Seeded fuzzing of the TSV and JSON Lines readers (issue 21, item 3): byte mutations (cuts, invalid UTF-8, NUL
// bytes), structural edits (tabs, newlines, quotes, brackets), deep nesting, odd label values and long lines must
// give plausible rows or a BitDistillError naming the file and line, never another exception.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BitDistillError, FormatError } from '@bitdistill/core';
import { CorpusStream } from '../src/corpus.ts';
import { MAX_LINE_BYTES, readExamples } from '../src/readers.ts';
import { GLUE_TASKS, type TaskSpec } from '../src/tasks.ts';
import { ByteTokenizer } from './fixtures/fake-tokenizers.ts';
import { BINARY_MUTATORS, TEXT_MUTATORS, enc, latin1, pick, runFuzz, splice, type Mutator } from './fixtures/fuzz.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const SEED = 20250123;
const LABELS = ['"positive"', '-1', '1e400', '[[[1]]]', '{}', 'null', 'true', '"0"', '1.5', '99999999999999999999', '"entailment"', '""', 'x'.repeat(5000)];

const LABEL_MUTATOR: Mutator = (rng, base) => {
  // A label value replaced: after "label": in JSON, or the last column of a TSV line.
  const text = latin1.decode(base);
  const spots = [...text.matchAll(/"label": ?(-?\d+)|\t([^\t\n]*)\n/g)];
  if (spots.length === 0) return { what: 'no label', bytes: base.slice() };
  const m = pick(rng, spots);
  const value = m[1] ?? m[2] ?? '';
  const start = (m.index as number) + m[0].lastIndexOf(value);
  const v = pick(rng, LABELS);
  return { what: `label ${JSON.stringify(v.slice(0, 20))}`, bytes: splice(base, start, value.length, enc.encode(v)) };
};

const MUTATORS = [...TEXT_MUTATORS, LABEL_MUTATOR, ...TEXT_MUTATORS, LABEL_MUTATOR, ...BINARY_MUTATORS];

function checkRows(rows: Awaited<ReturnType<typeof readExamples>>, task: TaskSpec, bytes: Uint8Array): void {
  expect(rows.length).to.be.at.most(bytes.length);
  for (const row of rows) {
    for (const f of task.fields) expect(row.fields[f], f).to.be.a('string');
    if (task.kind === 'regression') expect(Number.isFinite(row.label)).to.equal(true);
    else expect(Number.isInteger(row.label) && row.label >= 0 && row.label < task.labelNames.length).to.equal(true);
  }
}

describe('TSV / JSON Lines fuzz', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'text-fuzz-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const bytes = (path: string): Uint8Array => Uint8Array.from(readFileSync(path));
  const head = (path: string, lines: number): Uint8Array => enc.encode(readFileSync(path, 'utf8').split('\n').slice(0, lines).join('\n') + '\n');

  it('readExamples on mutated GLUE TSVs: plausible rows or a BitDistillError (seeded, 600 cases)', async () => {
    const bases: [Uint8Array, TaskSpec][] = [
      [head(repo('datasets/glue/SST-2/dev.tsv'), 40), GLUE_TASKS.sst2],
      [head(repo('datasets/glue/QNLI/dev.tsv'), 20), GLUE_TASKS.qnli],
      [bytes(fixture('mnli-dev_matched.tsv')), GLUE_TASKS.mnli],
      [bytes(fixture('stsb.tsv')), GLUE_TASKS.stsb],
      [bytes(fixture('cola.tsv')), GLUE_TASKS.cola],
    ];
    const file = join(dir, 'case.tsv');
    const r = await runFuzz(
      SEED,
      600,
      bases.map(([b]) => b),
      MUTATORS,
      async (b, i) => {
        writeFileSync(file, b);
        const task = (bases[i] as [Uint8Array, TaskSpec])[1];
        checkRows(await readExamples(file, task), task, b);
      },
    );
    expect(r.rejected, 'rejected').to.be.greaterThan(150);
    expect(r.accepted, 'accepted').to.be.greaterThan(150);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('readExamples on mutated JSON Lines: plausible rows or a BitDistillError (seeded, 600 cases)', async () => {
    const file = join(dir, 'case.jsonl');
    const r = await runFuzz(SEED + 1, 600, [bytes(fixture('sst2.jsonl'))], MUTATORS, async (b) => {
      writeFileSync(file, b);
      checkRows(await readExamples(file, GLUE_TASKS.sst2), GLUE_TASKS.sst2, b);
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(200);
    expect(r.accepted, 'accepted').to.be.greaterThan(100);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('CorpusStream on mutated JSON Lines: sequences or a BitDistillError (seeded, 400 cases)', async () => {
    const file = join(dir, 'corpus.jsonl');
    const r = await runFuzz(SEED + 2, 400, [bytes(fixture('corpus.jsonl'))], MUTATORS, async (b) => {
      writeFileSync(file, b);
      const s = new CorpusStream(file, new ByteTokenizer(), 16, null, { chunkBytes: 64 });
      try {
        for (let i = 0; i < 40; i++) expect((await s.next()).length).to.equal(17);
      } finally {
        await s.close();
      }
    });
    expect(r.rejected, 'rejected').to.be.greaterThan(100);
    expect(r.accepted, 'accepted').to.be.greaterThan(100);
    expect(r.maxMs, `slowest: ${r.slowest}`).to.be.below(2000);
  });

  it('errors name the line; values in messages are cut short', async () => {
    const file = join(dir, 'bad.jsonl');
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    writeFileSync(file, `{"sentence": "ok", "label": 1}\n{"sentence": "a", "label": ${deep}}\n`);
    let e = (await readExamples(file, GLUE_TASKS.sst2).catch((err: unknown) => err)) as BitDistillError;
    expect(e).to.be.instanceOf(BitDistillError);
    expect(e.message).to.include(`${file}:line 2: label a list of 1 is not one of the sst2 labels`);
    writeFileSync(file, `{"sentence": "ok", "label": 1}\n{"sentence": "${'y'.repeat(1_000_000)}", "label": "${'z'.repeat(1_000_000)}"}\n`);
    e = (await readExamples(file, GLUE_TASKS.sst2).catch((err: unknown) => err)) as BitDistillError;
    expect(e.message).to.include('line 2: label "zzzz');
    expect(e.message.length).to.be.below(file.length + 200);
    writeFileSync(file, '[1, 2]\n');
    e = (await readExamples(file, GLUE_TASKS.sst2).catch((err: unknown) => err)) as BitDistillError;
    expect(e).to.be.instanceOf(FormatError);
    expect(e.message).to.include('line 1: expected a JSON object, found an array');
  });

  it(`a line longer than ${MAX_LINE_BYTES / 2 ** 20} MiB is a FormatError, for readExamples and the corpus`, async () => {
    const file = join(dir, 'long.jsonl');
    writeFileSync(file, `{"sentence": "ok", "label": 1, "text": "ok"}\n{"text": "${'x'.repeat(MAX_LINE_BYTES)}"}\n`);
    const e = (await readExamples(file, GLUE_TASKS.sst2).catch((err: unknown) => err)) as BitDistillError;
    expect(e).to.be.instanceOf(FormatError);
    expect(e.message).to.include('line 2 is longer than 64 MiB');
    const s = new CorpusStream(file, new ByteTokenizer(), 4);
    const e2 = (await s
      .next()
      .then(() => s.next())
      .catch((err: unknown) => err)) as BitDistillError;
    expect(e2).to.be.instanceOf(FormatError);
    expect(e2.message).to.include('line at byte 45 is longer than 64 MiB');
  });
});
