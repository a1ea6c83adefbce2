import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { BitDistillError, FormatError, NotFoundError, UnsupportedError } from '@bitdistill/core';
import { GLUE_TASKS, defineTask } from '../src/tasks.ts';
import { normaliseLabel, readExamples } from '../src/readers.ts';
import type { Example } from '../src/readers.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

async function rejection(p: Promise<unknown>): Promise<BitDistillError> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(BitDistillError);
    return e as BitDistillError;
  }
  throw new Error('expected a rejection');
}

function countLabels(rows: Example[]): number[] {
  const counts: number[] = [];
  for (const r of rows) counts[r.label] = (counts[r.label] ?? 0) + 1;
  return counts;
}

describe('dataset readers', () => {
  it('reads the shipped SST-2 dev TSV: 872 rows, 428 negative / 444 positive', async () => {
    const rows = await readExamples(repo('datasets/glue/SST-2/dev.tsv'), GLUE_TASKS.sst2);
    expect(rows).to.have.length(872);
    expect(countLabels(rows)).to.deep.equal([428, 444]);
    expect(rows[0]).to.deep.equal({ fields: { sentence: "it 's a charming and often affecting journey . " }, label: 1 });
  });

  it('reads the shipped QNLI dev TSV with string labels: 5,463 rows, 2,702 entailment / 2,761 not', async () => {
    const rows = await readExamples(repo('datasets/glue/QNLI/dev.tsv'), GLUE_TASKS.qnli);
    expect(rows).to.have.length(5463);
    expect(countLabels(rows)).to.deep.equal([2702, 2761]);
    expect(rows[0]?.fields['question']).to.equal('What came into force after the new constitution was herald?');
    expect(rows[1]?.label).to.equal(1);
  });

  it('limit reads only the first rows', async () => {
    const rows = await readExamples(repo('datasets/glue/SST-2/train.tsv'), GLUE_TASKS.sst2, { limit: 5 });
    expect(rows).to.have.length(5);
  });

  it('reads each GLUE TSV layout into HF column names', async () => {
    const cola = await readExamples(fixture('cola.tsv'), GLUE_TASKS.cola);
    expect(cola.map((r) => r.label)).to.deep.equal([1, 0, 1]);
    expect(cola[1]?.fields).to.deep.equal({ sentence: 'They drank the pub.' });

    const mrpc = await readExamples(fixture('mrpc.tsv'), GLUE_TASKS.mrpc);
    expect(mrpc.map((r) => r.label)).to.deep.equal([1, 0]);
    expect(mrpc[0]?.fields['sentence1']).to.equal('He said the "foodservice" pie business doesn\'t fit.');

    const stsb = await readExamples(fixture('stsb.tsv'), GLUE_TASKS.stsb);
    expect(stsb.map((r) => r.label)).to.deep.equal([5, 4.75, 0.5]);
    expect(stsb[2]?.fields).to.deep.equal({ sentence1: 'A man is feeding a mouse to a snake.', sentence2: 'The man is playing the guitar.' });

    const qqp = await readExamples(fixture('qqp.tsv'), GLUE_TASKS.qqp);
    expect(qqp.map((r) => r.label)).to.deep.equal([0, 1]);

    const mnli = await readExamples(fixture('mnli-dev_matched.tsv'), GLUE_TASKS.mnli);
    expect(mnli.map((r) => r.label)).to.deep.equal([1, 2, 0]);
    expect(mnli[0]?.fields).to.deep.equal({ premise: 'The new rights are nice enough', hypothesis: 'Everyone really likes the newest benefits ' });

    const rte = await readExamples(fixture('rte.tsv'), GLUE_TASKS.rte);
    expect(rte.map((r) => r.label)).to.deep.equal([1, 0]);
    const wnli = await readExamples(fixture('wnli.tsv'), GLUE_TASKS.wnli);
    expect(wnli.map((r) => r.label)).to.deep.equal([0, 1]);
    const qnli = await readExamples(fixture('qnli.tsv'), GLUE_TASKS.qnli);
    expect(qnli.map((r) => r.label)).to.deep.equal([0, 1]);
  });

  it('TSV, JSONL, parquet and Arrow copies of the same rows read identically (BigInt labels included)', async () => {
    const tsv = await readExamples(fixture('sst2.tsv'), GLUE_TASKS.sst2);
    expect(tsv).to.have.length(6);
    for (const name of ['sst2.jsonl', 'sst2.parquet', 'sst2.arrow']) {
      expect(await readExamples(fixture(name), GLUE_TASKS.sst2), name).to.deep.equal(tsv);
      expect(await readExamples(fixture(name), GLUE_TASKS.sst2, { limit: 2 }), name).to.deep.equal(tsv.slice(0, 2));
    }
  });

  it('a custom task reads its own column names', async () => {
    const task = defineTask({
      name: 'mini',
      fields: ['sentence'],
      template: '{sentence}:',
      labels: ['neg', 'pos'],
      labelWords: ['bad', 'good'],
      metric: 'accuracy',
    });
    expect((await readExamples(fixture('sst2.parquet'), task)).map((r) => r.label)).to.deep.equal([1, 0, 1, 0, 0, 1]);
  });

  describe('bad input', () => {
    it('a malformed TSV row names the file and the 1-based line', async () => {
      const e = await rejection(readExamples(fixture('bad-row.tsv'), GLUE_TASKS.sst2));
      expect(e).to.be.instanceOf(FormatError);
      expect(e.message).to.include(fixture('bad-row.tsv')).and.include('line 3: expected 2 tab-separated columns, found 1');
    });

    it('a label outside the set names file, line, value and the allowed labels', async () => {
      const e = await rejection(readExamples(fixture('bad-label.tsv'), GLUE_TASKS.qnli));
      expect(e.code).to.equal('E_DATA');
      expect(e.message).to.include(`${fixture('bad-label.tsv')}:line 3`);
      expect(e.message).to.include('"contradiction"').and.include('entailment, not_entailment');
    });

    it('an MNLI file read as SST-2 lists the columns found and expected', async () => {
      const e = await rejection(readExamples(fixture('mnli-dev_matched.tsv'), GLUE_TASKS.sst2));
      expect(e.code).to.equal('E_DATA');
      expect(e.message).to.include('missing columns sentence, label').and.include('expected sentence, label').and.include('found index, promptID');
    });

    it('missing columns in JSONL, parquet and Arrow are reported the same way', async () => {
      for (const name of ['sst2.jsonl', 'sst2.parquet', 'sst2.arrow']) {
        const e = await rejection(readExamples(fixture(name), GLUE_TASKS.qnli));
        expect(e.message, name).to.include('missing column question').and.include('found sentence, label, idx');
      }
    });

    it('bad JSON names the line', async () => {
      const e = await rejection(readExamples(fixture('bad-json.jsonl'), GLUE_TASKS.sst2));
      expect(e).to.be.instanceOf(FormatError);
      expect(e.message).to.include('line 2: not valid JSON');
    });

    it('a missing path is a NotFoundError whose hint lists the data files next to it', async () => {
      const e = await rejection(readExamples(repo('datasets/glue/SST-2/validation.tsv'), GLUE_TASKS.sst2));
      expect(e).to.be.instanceOf(NotFoundError);
      expect(e.hint).to.include('dev.tsv').and.include('train.tsv');
      const e2 = await rejection(readExamples('/no/such/dir/train.parquet', GLUE_TASKS.sst2));
      expect(e2).to.be.instanceOf(NotFoundError);
      expect(e2.hint).to.include('check the path');
    });

    it('a broken parquet file and an unknown extension are refused', async () => {
      expect(await rejection(readExamples(fixture('not-a.parquet'), GLUE_TASKS.sst2))).to.be.instanceOf(FormatError);
      expect(await rejection(readExamples(fixture('fake-tokenizers.ts'), GLUE_TASKS.sst2))).to.be.instanceOf(UnsupportedError);
    });

    it('label -1 (an unlabelled test split) says so', () => {
      let err: unknown;
      try {
        normaliseLabel(GLUE_TASKS.sst2, -1n, 'test.parquet', 'row 1');
      } catch (e) {
        err = e;
      }
      expect((err as BitDistillError).hint).to.include('unlabelled test split');
    });
  });
});
