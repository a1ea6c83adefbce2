// Issue 20: every GLUE task's published file format, regression scoring on any tokenizer, tasks from a config
// or a model's record, and the checks run before training. Golden metric values come from
// scripts/reference/golden_metrics.py (numpy), not from the code under test.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, UnsupportedError } from '@bitdistill/core';
import { GLUE_TASKS, defineTask, readAnswer, scoreRange, taskFromConfig, taskRecord } from '../src/tasks.ts';
import { readExamples } from '../src/readers.ts';
import { computeMetrics, f1, matthews, pearson, spearman } from '../src/metrics.ts';
import { labelScoring, predictionFromScores, taskTokenizerProblems, type TokenizerLike } from '../src/prompt.ts';
import { ColonMergingTokenizer } from './fixtures/fake-tokenizers.ts';
import { checkTaskConfig } from '../src/task-check.ts';
import { loadTokenizer } from '../src/load-tokenizer.ts';

const glue = (p: string): string => fileURLToPath(new URL(`./fixtures/glue/${p}`, import.meta.url));
const repo = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const golden = JSON.parse(readFileSync(fileURLToPath(new URL('./golden/metrics.json', import.meta.url)), 'utf8')) as {
  regression: { gold: number[]; pred: number[]; pearson: number; spearman: number };
  classification: { gold: number[]; pred: number[]; f1: number; matthews: number; accuracy: number };
  expectedValue: { scores: number[][]; values: number[] };
};

describe('GLUE files in their published formats', () => {
  it('CoLA: no header, 4 columns (source, label, original judgement, sentence)', async () => {
    const rows = await readExamples(glue('CoLA/dev.tsv'), GLUE_TASKS.cola);
    expect(rows.map((r) => r.label)).to.deep.equal([1, 0, 1, 0, 1, 0]);
    expect(rows[1]?.fields).to.deep.equal({ sentence: 'The cat sat mat the on.' });
    // The test split has a header and no label: refused with the columns named.
    const e = await readExamples(glue('CoLA/test.tsv'), GLUE_TASKS.cola).catch((x: Error) => x);
    expect((e as Error).message).to.match(/missing column label/);
  });

  it('SST-2: sentence, label', async () => {
    expect((await readExamples(glue('SST-2/dev.tsv'), GLUE_TASKS.sst2)).map((r) => r.label)).to.deep.equal([1, 0, 1, 0]);
  });

  it('MRPC: the original MSRP .txt (BOM, CRLF) and GLUE dev.tsv (BOM) read alike', async () => {
    const txt = await readExamples(glue('MRPC/msr_paraphrase_train.txt'), GLUE_TASKS.mrpc);
    const tsv = await readExamples(glue('MRPC/dev.tsv'), GLUE_TASKS.mrpc);
    expect(txt).to.deep.equal(tsv);
    expect(txt.map((r) => r.label)).to.deep.equal([1, 0, 1, 0]);
    expect(txt[2]?.fields['sentence1']).to.equal('"We are very pleased," the chairman said.');
    expect(txt[0]?.fields['sentence2']).to.equal('Quarterly profits rose 5 percent, the company said.');
  });

  it('STS-B: 10 columns, the float score last', async () => {
    const rows = await readExamples(glue('STS-B/dev.tsv'), GLUE_TASKS.stsb);
    expect(rows.map((r) => r.label)).to.deep.equal([5, 4.2, 2.6, 1, 0]);
    expect(rows[0]?.fields).to.deep.equal({ sentence1: 'A girl is playing a flute.', sentence2: 'A girl is playing the flute.' });
  });

  it('QQP: id, qid1, qid2, question1, question2, is_duplicate', async () => {
    const rows = await readExamples(glue('QQP/dev.tsv'), GLUE_TASKS.qqp);
    expect(rows.map((r) => r.label)).to.deep.equal([1, 0, 1, 0]);
    expect(rows[1]?.fields).to.deep.equal({ question1: 'Why is the sky blue?', question2: 'How far away is the moon?' });
  });

  it('MNLI: train (12 columns) and dev matched / mismatched (16 columns), gold_label last', async () => {
    expect((await readExamples(glue('MNLI/train.tsv'), GLUE_TASKS.mnli)).map((r) => r.label)).to.deep.equal([0, 1, 2, 0]);
    expect((await readExamples(glue('MNLI/dev_matched.tsv'), GLUE_TASKS.mnli)).map((r) => r.label)).to.deep.equal([0, 1, 2, 0]);
    const mm = await readExamples(glue('MNLI/dev_mismatched.tsv'), GLUE_TASKS.mnli);
    expect(mm[0]?.fields).to.deep.equal({ premise: 'The boat sailed in the morning.', hypothesis: 'The boat left the harbour at dawn.' });
  });

  it('QNLI and RTE: label names; WNLI: 0 / 1 with 1 = entailment', async () => {
    expect((await readExamples(glue('QNLI/dev.tsv'), GLUE_TASKS.qnli)).map((r) => r.label)).to.deep.equal([0, 1, 0, 1]);
    expect((await readExamples(glue('RTE/dev.tsv'), GLUE_TASKS.rte)).map((r) => r.label)).to.deep.equal([0, 1, 0, 1]);
    expect((await readExamples(glue('WNLI/dev.tsv'), GLUE_TASKS.wnli)).map((r) => r.label)).to.deep.equal([1, 0, 1, 0]);
    expect(GLUE_TASKS.wnli.labelNames[1]).to.equal('entailment');
  });

  it('a TSV under another extension reads with an explicit format; without one it is refused with that hint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bitdistill-format-'));
    try {
      const f = join(dir, 'rte.data');
      writeFileSync(f, readFileSync(glue('RTE/dev.tsv')));
      expect(await readExamples(f, GLUE_TASKS.rte, { format: 'tsv' })).to.have.length(4);
      const e = await readExamples(f, GLUE_TASKS.rte).catch((x: Error) => x);
      expect(e).to.be.instanceOf(UnsupportedError);
      expect((e as UnsupportedError).hint).to.match(/task.format/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('regression on any tokenizer', () => {
  const tok = loadTokenizer(repo('models/stories260K'));

  it('STS-B bucket words share their first token on stories260K ("▁" + digit): scored by whole answers', () => {
    const s = labelScoring(tok, GLUE_TASKS.stsb);
    expect(s.mode).to.equal('sequence');
    expect(new Set(s.firstIds).size).to.equal(1);
    expect(new Set(s.answers.map((a) => a.join(','))).size).to.equal(6);
    expect(labelScoring(tok, GLUE_TASKS.mnli).mode).to.equal('first-token');
    expect(taskTokenizerProblems(tok, GLUE_TASKS.stsb, 'generate')).to.deep.equal([]);
  });

  it('the regression prediction is the softmax-weighted mean of the buckets (numpy reference)', () => {
    golden.expectedValue.scores.forEach((sc, i) => {
      expect(predictionFromScores(GLUE_TASKS.stsb, sc)).to.be.closeTo(golden.expectedValue.values[i] as number, 1e-12);
    });
    expect(predictionFromScores(GLUE_TASKS.mrpc, [0.1, 2])).to.equal(1);
  });

  it('a generated answer is read as its first number, clamped to the range; none scores the middle (2.5)', () => {
    const t = GLUE_TASKS.stsb;
    expect([' 3', '4.5 and more', 'about 2', '7', '-1'].map((x) => readAnswer(t, x))).to.deep.equal([3, 4.5, 2, 5, 0]);
    expect(Number.isNaN(readAnswer(t, 'similar'))).to.equal(true);
    const m = computeMetrics(t, [5, NaN, 0, NaN], [4.5, 2, 1, 3]);
    expect(m.pearson).to.be.closeTo(pearson([5, 2.5, 0, 2.5], [4.5, 2, 1, 3]), 1e-12);
    expect(readAnswer(GLUE_TASKS.rte, 'maybe')).to.equal(-1);
  });

  it('Pearson, Spearman (ties), F1, Matthews and accuracy match the numpy reference', () => {
    const r = golden.regression;
    expect(pearson(r.pred, r.gold)).to.be.closeTo(r.pearson, 1e-12);
    expect(spearman(r.pred, r.gold)).to.be.closeTo(r.spearman, 1e-12);
    const c = golden.classification;
    expect(f1(c.pred, c.gold)).to.be.closeTo(c.f1, 1e-12);
    expect(matthews(c.pred, c.gold)).to.be.closeTo(c.matthews, 1e-12);
    expect(computeMetrics(GLUE_TASKS.cola, c.pred, c.gold)).to.deep.include({ accuracy: c.accuracy });
  });
});

describe('tasks from a config or a model record', () => {
  it('a registry regression task takes overrides (the registry has no label names to pass on)', () => {
    const t = taskFromConfig({ name: 'stsb', template: 'A: {sentence1}\nB: {sentence2}\nScore:', templateVersion: 'tiny-v1' });
    expect(t).to.include({ kind: 'regression', templateVersion: 'tiny-v1' });
    expect(t.range).to.deep.equal([0, 5]);
    expect(t.tsv).to.deep.equal(GLUE_TASKS.stsb.tsv);
  });

  it('a custom regression task: range alone gives integer buckets; buckets outside the range are refused', () => {
    const t = defineTask({
      name: 'sim',
      kind: 'regression',
      fields: ['a', 'b'],
      template: '{a} / {b}\nScore:',
      range: [1, 4],
      metrics: ['spearman', 'pearson'],
    });
    expect(t.labelWords).to.deep.equal(['1', '2', '3', '4']);
    expect(scoreRange(t)).to.deep.equal([1, 4]);
    expect(computeMetrics(t, [NaN, 4], [1, 4]).pearson).to.be.closeTo(pearson([2.5, 4], [1, 4]), 1e-12);
    const e = (() => {
      try {
        defineTask({ name: 'sim', kind: 'regression', fields: ['a'], template: '{a}:', range: [0, 1], labelWords: ['0', '2'], metric: 'pearson' });
      } catch (x) {
        return x as ConfigError;
      }
      throw new Error('accepted');
    })();
    expect(e.message).to.include('2 is outside range [0, 1]');
  });

  it('taskRecord round-trips through taskFromConfig (what eval reads from a model)', () => {
    for (const t of [GLUE_TASKS.stsb, GLUE_TASKS.mnli, GLUE_TASKS.cola]) {
      const back = taskFromConfig(taskRecord(t));
      expect(taskRecord(back)).to.deep.equal(taskRecord(t));
      expect(back.devSplits).to.deep.equal(t.devSplits);
    }
  });
});

describe('checkTaskConfig: what validate and train check before a step', () => {
  const tok = loadTokenizer(repo('models/stories260K'));
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-check-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a good config has no problems', async () => {
    const r = await checkTaskConfig({ name: 'stsb', train: glue('STS-B/dev.tsv'), dev: glue('STS-B/dev.tsv') }, tok, 'generate');
    expect(r.issues).to.deep.equal([]);
  });

  it('a wrong path, a header-only dev file, wrong columns and colliding label words are all reported at once', async () => {
    const headerOnly = join(dir, 'dev.tsv');
    writeFileSync(headerOnly, 'index\tsentence1\tsentence2\tlabel\n');
    const r = await checkTaskConfig(
      { name: 'rte', train: join(dir, 'nope.tsv'), dev: [headerOnly, glue('SST-2/dev.tsv')], labelWords: ['ab', 'ab'] },
      tok,
      'label',
    );
    expect(r.task).to.equal(null); // 'ab' twice: the definition itself is refused first
    const again = await checkTaskConfig({ name: 'rte', train: join(dir, 'nope.tsv'), dev: [headerOnly, glue('SST-2/dev.tsv')] }, tok, 'label');
    const byPath = Object.fromEntries(again.issues.map((i) => [i.path, i.message]));
    expect(byPath['task.train']).to.match(/not found/);
    expect(byPath['task.dev[0]']).to.match(/no examples/);
    expect(byPath['task.dev[1]']).to.match(/missing columns/);
  });

  it('a tokenizer that merges the template into the answer, or cannot read an answer back, is refused', async () => {
    const files = { train: glue('RTE/dev.tsv'), dev: glue('RTE/dev.tsv') };
    const merged = await checkTaskConfig({ name: 'rte', ...files }, new ColonMergingTokenizer(), 'label');
    expect(merged.issues.map((i) => i.path)).to.deep.equal(['task.labelWords']);
    expect(merged.issues[0]?.message).to.match(/merges the end of the template/);
    // A lowercasing tokenizer decodes "Yes" as "yes": generate mode could never read it back (label mode can).
    const lower: TokenizerLike = {
      ...tok,
      encode: (t, o) => tok.encode(t.toLowerCase(), o),
      decode: (ids) => tok.decode(ids),
      bosId: tok.bosId,
      eosId: tok.eosId,
      padId: tok.padId,
    };
    const cased = { name: 'rte', ...files, labelWords: ['Yes', 'No'] };
    expect((await checkTaskConfig(cased, lower, 'label')).issues).to.deep.equal([]);
    expect((await checkTaskConfig(cased, lower, 'generate')).issues[0]?.message).to.match(/decodes as "yes"/);
  });
});
