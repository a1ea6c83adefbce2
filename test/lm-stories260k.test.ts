// The LM task of scripts/experiments/lm-stories260k.ts (issue 19): stories encoded as prompt = BOS, answer =
// the story, through the trainer's SftStream, answerCe and distillLoss, must be plain language modelling: CE on
// every token equals the per-sequence NLL computed independently (model's sequenceNll), logit KD and the
// held-out KL of the teacher against itself are 0.
import { expect } from 'chai';
import { initBackend } from '@bitdistill/backend';
import { silentLogger } from '@bitdistill/core';
import { loadModel, sequenceNll } from '@bitdistill/model';
import { answerCe, distillLoss, SftStream } from '@bitdistill/trainer';
import { heldoutMetrics, lmExamples, type Story } from '../scripts/experiments/lm-stories260k.ts';

const TEACHER = 'models/stories260K';
const TEXTS = ['Once upon a time, there was a little dog.', 'Lily went to the park with her mom. She saw a big tree.', 'Tom was sad.'];

describe('lm-stories260k: the LM task through the trainer losses', () => {
  before(async () => {
    await initBackend('wasm', silentLogger);
  });

  it('answerCe over [BOS] + story examples is the mean NLL of every token; the teacher against itself has KL 0', async () => {
    const { model, tokenizer } = loadModel(TEACHER, { trainable: false, logger: silentLogger });
    const stories: Story[] = TEXTS.map((t) => ({ prompt: t, ids: tokenizer.encode(t, { addBos: true }) }));
    let nllSum = 0;
    let tokens = 0;
    for (const s of stories) {
      const r = await sequenceNll(model, s.ids);
      nllSum += r.meanNll * (s.ids.length - 1);
      tokens += s.ids.length - 1;
    }
    const reference = nllSum / tokens;

    const b = new SftStream(lmExamples(stories), stories.length, 127, 0, 0).next();
    let answerTokens = 0;
    for (const m of b.answerMask) answerTokens += m;
    expect(answerTokens).to.equal(tokens);
    const ce = answerCe(model, b);
    expect((await ce.data())[0]).to.be.closeTo(reference, 1e-4);
    ce.dispose();

    const terms = distillLoss(model, model, b, {
      logit: true,
      attention: false,
      logitPositions: 'all',
      lambdaLogit: 10,
      gammaAttn: 0,
      temperature: 5,
      relation: 'cosine',
      relationHeads: 8,
      studentLayer: 3,
      teacherLayer: 3,
      chunkRows: null,
    });
    expect((await terms.terms['ce']!.data())[0]).to.be.closeTo(reference, 1e-4);
    expect((await terms.terms['logitKd']!.data())[0]).to.be.closeTo(0, 1e-5);

    const m = await heldoutMetrics(model, model, stories);
    expect(m.tokens).to.equal(tokens);
    expect(m.nll).to.be.closeTo(reference, 1e-4);
    expect(m.kl).to.be.closeTo(0, 1e-5);
    model.dispose();
  });
});
