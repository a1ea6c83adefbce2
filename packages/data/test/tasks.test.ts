import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ArgumentError, ConfigError, isBitDistillError } from '@bitdistill/core';
import {
  GLUE_TASKS,
  GLUE_TASK_NAMES,
  answerIndex,
  defineTask,
  getTask,
  matchLabelWord,
  predictionValue,
  renderPrompt,
  templatePlaceholders,
} from '../src/tasks.ts';
import { answerTokenIds, encodeExample, evalPrompt, labelWordIds, makeSftBatch, truncatePrompt } from '../src/prompt.ts';
import { loadTokenizer } from '../src/load-tokenizer.ts';
import { ByteTokenizer, ColonMergingTokenizer, WordTokenizer } from './fixtures/fake-tokenizers.ts';

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('GLUE task registry', () => {
  it('has the nine GLUE tasks with HF fields, label order and metrics', () => {
    expect(GLUE_TASK_NAMES).to.deep.equal(['cola', 'sst2', 'mrpc', 'stsb', 'qqp', 'mnli', 'qnli', 'rte', 'wnli']);
    expect(GLUE_TASKS.sst2.fields).to.deep.equal(['sentence']);
    expect(GLUE_TASKS.qnli.fields).to.deep.equal(['question', 'sentence']);
    expect(GLUE_TASKS.mnli.fields).to.deep.equal(['premise', 'hypothesis']);
    expect(GLUE_TASKS.qqp.fields).to.deep.equal(['question1', 'question2']);
    expect(GLUE_TASKS.mnli.labelNames).to.deep.equal(['entailment', 'neutral', 'contradiction']);
    expect(GLUE_TASKS.qnli.labelNames).to.deep.equal(['entailment', 'not_entailment']);
    expect(GLUE_TASKS.wnli.labelNames).to.deep.equal(['not_entailment', 'entailment']);
    expect(GLUE_TASKS.sst2.labelWords).to.deep.equal(['negative', 'positive']);
    expect(GLUE_TASKS.mnli.labelWords).to.deep.equal(['yes', 'maybe', 'no']);
    expect(GLUE_TASKS.cola.metrics[0]).to.equal('matthews');
    expect(GLUE_TASKS.mrpc.metrics).to.deep.equal(['f1', 'accuracy']);
    expect(GLUE_TASKS.qqp.metrics).to.deep.equal(['f1', 'accuracy']);
    expect(GLUE_TASKS.stsb.metrics).to.deep.equal(['pearson', 'spearman']);
    expect(GLUE_TASKS.mnli.devSplits.map((s) => s.tsv)).to.deep.equal(['dev_matched.tsv', 'dev_mismatched.tsv']);
  });

  for (const name of GLUE_TASK_NAMES) {
    it(`${name}: template uses exactly its fields; label words are distinct single words; it passes defineTask`, () => {
      const t = GLUE_TASKS[name];
      expect(templatePlaceholders(t.template)).to.deep.equal([...t.fields]);
      expect(new Set(t.labelWords).size).to.equal(t.labelWords.length);
      for (const w of t.labelWords) expect(w).to.match(/^\S+$/);
      if (t.kind === 'classification') expect(t.labelWords.length).to.equal(t.labelNames.length);
      const again = defineTask({
        name: t.name,
        kind: t.kind,
        fields: [...t.fields],
        template: t.template,
        labelWords: [...t.labelWords],
        ...(t.kind === 'classification' ? { labels: [...t.labelNames] } : {}),
        metrics: [...t.metrics],
      });
      expect(again.template).to.equal(t.template);
    });
  }

  it('TASKS.md shows every template, version and label word', () => {
    const doc = readFileSync(fileURLToPath(new URL('../TASKS.md', import.meta.url)), 'utf8');
    for (const name of GLUE_TASK_NAMES) {
      const t = GLUE_TASKS[name];
      expect(doc, `${name} template`).to.include(t.template);
      expect(doc, `${name} heading`).to.include(`### ${name} (template ${t.templateVersion})`);
      t.labelWords.forEach((w, i) => {
        const row = t.kind === 'classification' ? `| ${i} | ${t.labelNames[i]} | \`${w}\` |` : `\`${w}\``;
        expect(doc, `${name} label ${i}`).to.include(row);
      });
    }
  });

  it('getTask accepts GLUE spellings and names the known tasks otherwise', () => {
    expect(getTask('SST-2')).to.equal(GLUE_TASKS.sst2);
    expect(getTask('sts-b')).to.equal(GLUE_TASKS.stsb);
    const e = thrown(() => getTask('boolq'));
    expect(e).to.be.instanceOf(ArgumentError);
    expect((e as ArgumentError).hint).to.include('mnli');
  });

  it('renders a prompt with trimmed field text', () => {
    const p = renderPrompt(GLUE_TASKS.sst2, { sentence: 'a charming journey . ' });
    expect(p).to.equal('Review: a charming journey .\nIs the sentiment of this review positive or negative?\nAnswer:');
    expect(() => renderPrompt(GLUE_TASKS.qnli, { question: 'q' })).to.throw(/no field 'sentence'/);
  });

  it('STS-B: the answer is the score rounded to the nearest integer word; the word reads back as a number', () => {
    const t = GLUE_TASKS.stsb;
    expect([0, 0.49, 0.5, 2.5, 3.2, 4.75, 5].map((s) => answerIndex(t, s))).to.deep.equal([0, 0, 1, 3, 3, 5, 5]);
    expect(predictionValue(t, 4)).to.equal(4);
    expect(matchLabelWord(t, ' 3')).to.equal(3);
  });

  it('matchLabelWord: exact trimmed match, else the first word, else -1', () => {
    const t = GLUE_TASKS.mnli;
    expect(matchLabelWord(t, ' maybe')).to.equal(1);
    expect(matchLabelWord(t, 'no no no')).to.equal(2);
    expect(matchLabelWord(t, 'Yes')).to.equal(-1);
  });

  it('defineTask builds a custom task from config values', () => {
    const t = defineTask({
      name: 'toxicity',
      fields: ['comment'],
      template: 'Comment: {comment}\nIs it toxic?\nAnswer:',
      labels: ['clean', 'toxic'],
      labelWords: ['no', 'yes'],
      metric: 'f1',
    });
    expect(t.labelNames).to.deep.equal(['clean', 'toxic']);
    expect(t.metrics).to.deep.equal(['f1']);
    expect(t.templateVersion).to.equal('v1');
    expect(t.labelColumn).to.equal('label');
    expect(defineTask({ name: 'x', fields: ['a'], template: '{a}?', labelWords: ['n', 'y'], metrics: ['accuracy'] }).labelNames).to.deep.equal(['n', 'y']);
  });

  it('defineTask reports every problem of a bad task at once, with its path', () => {
    const e = thrown(() =>
      defineTask(
        {
          name: 'bad',
          fields: ['text', 'unused'],
          template: 'Text: {txt}\nAnswer:',
          labelWords: ['very good', 'bad'],
          labels: ['a'],
          metric: 'bleu',
          colour: 'red',
        },
        { file: 'configs/custom.yaml', path: 'task' },
      ),
    );
    expect(e).to.be.instanceOf(ConfigError);
    const paths = (e as ConfigError).issues.map((i) => i.path);
    expect(paths).to.include.members(['task.colour', 'task.template', 'task.fields', 'task.labelWords[0]', 'task.labels', 'task.metric']);
    expect(e.message).to.include('configs/custom.yaml');
    expect(e.message).to.include('placeholder {txt} is not one of fields');
    expect(thrown(() => defineTask({ name: 'r', kind: 'regression', fields: ['a'], template: '{a}:', labelWords: ['low', '1'], metric: 'accuracy' })).message)
      .to.include("'low' must be a number")
      .and.include('accuracy does not apply to a regression task');
    expect(thrown(() => defineTask('sst2'))).to.be.instanceOf(ConfigError);
  });
});

describe('prompt encoding and SFT batches', () => {
  const sst2 = GLUE_TASKS.sst2;
  const example = { fields: { sentence: 'a charming journey . ' }, label: 1 };

  it('encodes BOS + prompt, and the label word after one space + EOS', () => {
    const tok = new WordTokenizer();
    const enc = encodeExample(tok, sst2, example);
    expect(enc.promptIds[0]).to.equal(tok.bosId);
    expect(tok.decode(enc.promptIds)).to.equal(renderPrompt(sst2, example.fields));
    expect(enc.answerIds).to.have.length(2);
    expect(tok.decode(enc.answerIds)).to.equal(' positive');
    expect(enc.answerIds[1]).to.equal(tok.eosId);
    // prompt + answer ids are exactly the tokenization of prompt + ' ' + word
    expect([...enc.promptIds, ...enc.answerIds.slice(0, -1)]).to.deep.equal(tok.encode(`${renderPrompt(sst2, example.fields)} positive`, { addBos: true }));
  });

  it('a SentencePiece-style dummy prefix does not leak a lone space token into the answer', () => {
    const tok = new WordTokenizer(true);
    const answers = answerTokenIds(tok, GLUE_TASKS.mnli);
    expect(answers.map((ids) => tok.decode(ids))).to.deep.equal([' yes', ' maybe', ' no']);
    expect(answers.every((ids) => ids.length === 2)).to.equal(true);
  });

  it('labelWordIds gives the first answer token per label, and refuses label words that share it', () => {
    const tok = new WordTokenizer();
    const ids = labelWordIds(tok, GLUE_TASKS.mnli);
    expect(ids.map((i) => tok.decode([i]))).to.deep.equal([' yes', ' maybe', ' no']);
    const e = thrown(() => labelWordIds(new ByteTokenizer(), sst2));
    expect(isBitDistillError(e) && e.code).to.equal('E_DATA');
    expect(e.message).to.match(/'negative' and 'positive' start with the same token/);
  });

  it('a tokenizer that merges the template end with the answer is refused with a hint', () => {
    const e = thrown(() => answerTokenIds(new ColonMergingTokenizer(), sst2));
    expect(e.message).to.include('merges the end of the template');
  });

  it('a tokenizer without EOS gives the bare label word', () => {
    const tok = new ByteTokenizer({ eos: false });
    expect(tok.decode(encodeExample(tok, sst2, example).answerIds)).to.equal(' positive');
  });

  it('with the stories260K tokenizer, prompt + answer ids are the tokenization of the whole text', () => {
    const tok = loadTokenizer(fileURLToPath(new URL('../../../models/stories260K', import.meta.url)));
    const enc = encodeExample(tok, sst2, example);
    const whole = tok.encode(`${renderPrompt(sst2, example.fields)} positive`, { addBos: true });
    expect([...enc.promptIds, ...enc.answerIds]).to.deep.equal([...whole, tok.eosId]);
    for (const name of ['sst2', 'qnli', 'mnli', 'cola', 'mrpc', 'qqp', 'rte', 'wnli'] as const) {
      expect(new Set(labelWordIds(tok, GLUE_TASKS[name])).size, name).to.equal(GLUE_TASKS[name].labelWords.length);
    }
  });

  it('makeSftBatch right-pads and aligns next-token labels and the answer mask', () => {
    // prompt [1, 10, 11] answer [20, 2]  -> inputs 1 10 11 20, targets 10 11 20 2, answer targets at t = 2, 3
    // prompt [1, 12]     answer [21, 2]  -> inputs 1 12 21,    targets 12 21 2,    answer targets at t = 1, 2
    const b = makeSftBatch(
      [
        { promptIds: [1, 10, 11], answerIds: [20, 2] },
        { promptIds: [1, 12], answerIds: [21, 2] },
      ],
      16,
      0,
    );
    expect([b.B, b.T]).to.deep.equal([2, 4]);
    expect(Array.from(b.inputIds)).to.deep.equal([1, 10, 11, 20, 1, 12, 21, 0]);
    expect(Array.from(b.labels)).to.deep.equal([10, 11, 20, 2, 12, 21, 2, 0]);
    expect(Array.from(b.answerMask)).to.deep.equal([0, 0, 1, 1, 0, 1, 1, 0]);
    expect(Array.from(b.attentionMask)).to.deep.equal([1, 1, 1, 1, 1, 1, 1, 0]);
    expect(makeSftBatch([{ promptIds: [1, 5], answerIds: [6] }], 8, 0, { padTo: 'max' }).T).to.equal(8);
  });

  it('truncation keeps the whole answer and BOS and cuts the prompt from the left', () => {
    const b = makeSftBatch([{ promptIds: [1, 10, 11, 12, 13, 14], answerIds: [20, 2] }], 4, 0, { bosId: 1 });
    // maxLen 4 -> sequence of 5 tokens: BOS, the last 2 prompt tokens, the answer
    expect(b.T).to.equal(4);
    expect(Array.from(b.inputIds)).to.deep.equal([1, 13, 14, 20]);
    expect(Array.from(b.labels)).to.deep.equal([13, 14, 20, 2]);
    expect(Array.from(b.answerMask)).to.deep.equal([0, 0, 1, 1]);
    expect(truncatePrompt([1, 10, 11, 12], 3)).to.deep.equal([10, 11, 12]);
    // evaluation cuts prompts as batching does: the leading BOS stays, the rest is cut from the left
    const tok = new WordTokenizer();
    const task = GLUE_TASKS.sst2;
    const ex = { fields: { sentence: 'a b c d e f g h' }, label: 1 };
    const full = encodeExample(tok, task, ex).promptIds;
    expect(full[0]).to.equal(tok.bosId);
    const cut = evalPrompt(tok, task, ex, 5);
    expect(cut).to.deep.equal([tok.bosId, ...full.slice(full.length - 4)]);
    expect(evalPrompt(tok, task, ex, 1000)).to.deep.equal(full);
    expect(() => makeSftBatch([{ promptIds: [1, 2], answerIds: [3, 4, 5] }], 2, 0)).to.throw(/no room for a prompt/);
  });

  it('every GLUE task encodes with a word tokenizer and has distinct label word ids', () => {
    const tok = new WordTokenizer();
    for (const name of GLUE_TASK_NAMES) {
      const t = GLUE_TASKS[name];
      const fields = Object.fromEntries(t.fields.map((f) => [f, `some ${f} text`]));
      const enc = encodeExample(tok, t, { fields, label: t.kind === 'regression' ? 3.6 : 0 });
      expect(tok.decode(enc.answerIds.slice(0, -1))).to.equal(` ${t.labelWords[t.kind === 'regression' ? 4 : 0]}`);
      expect(new Set(labelWordIds(tok, t)).size).to.equal(t.labelWords.length);
    }
  });
});
