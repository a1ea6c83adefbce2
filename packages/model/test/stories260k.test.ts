import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel, saveModel, generateGreedy, sequenceNll } from '@bitdistill/model';

/** Written by scripts/reference/llama2c_forward.py (an independent float64 numpy port of llama2.c run.c). */
interface Golden {
  greedy: { promptIds: number[]; newIds: number[]; text: string };
  teacherForced: { text: string; ids: number[]; logprobs: number[]; meanNll: number; logitsPos0First8: number[] };
}

const golden = JSON.parse(readFileSync('test/golden/stories260K.json', 'utf8')) as Golden;
const LILY = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

describe('stories260K (real llama2.c weights) on wasm', () => {
  before(async () => {
    await initBackend('wasm');
  });

  it('greedy generation continues "Once upon a time" with the Lily story, as the reference C code does', async () => {
    const { model, tokenizer } = loadModel('models/stories260K', { trainable: false });
    const prompt = tokenizer.encode('Once upon a time', { addBos: true });
    expect(prompt).to.deep.equal(golden.greedy.promptIds);
    const ids = await generateGreedy(model, prompt, { maxNewTokens: 40, eosId: tokenizer.eosId });
    const text = tokenizer.decode([...prompt, ...ids]);
    expect(text.startsWith(LILY)).to.equal(true, text);
    expect(ids).to.deep.equal(golden.greedy.newIds.slice(0, ids.length));
    model.dispose();
  });

  it('teacher-forced mean NLL is within 0.02 of the independent numpy forward pass', async () => {
    const { model, tokenizer } = loadModel('models/stories260K', { trainable: false });
    const ids = tokenizer.encode(golden.teacherForced.text, { addBos: true });
    expect(ids).to.deep.equal(golden.teacherForced.ids);
    const { logprobs, meanNll } = await sequenceNll(model, ids);
    expect(meanNll).to.be.closeTo(golden.teacherForced.meanNll, 0.02);
    for (let i = 0; i < logprobs.length; i++) expect(logprobs[i]).to.be.closeTo(golden.teacherForced.logprobs[i] as number, 1e-3);
    model.dispose();
  });

  it('the llama2.c .bin and the shipped HF folder give identical logits', () => {
    const a = loadModel('models/stories260K', { trainable: false });
    const b = loadModel('models/stories260K/source/stories260K.bin', { trainable: false });
    const ids = tf.tensor2d([[1, 403, 407, 261, 378]], [1, 5], 'int32');
    const la = tf.tidy(() => a.model.forward(ids).logits.dataSync());
    const lb = tf.tidy(() => b.model.forward(ids).logits.dataSync());
    expect(Buffer.from(la.buffer).equals(Buffer.from(lb.buffer))).to.equal(true);
    ids.dispose();
    a.model.dispose();
    b.model.dispose();
  });

  it('save -> load of an HF folder is bit-exact (weights, config, tokenizer)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bitdistill-rt-'));
    try {
      const a = loadModel('models/stories260K', { trainable: false });
      await saveModel(a.model, dir, { tokenizerFrom: 'models/stories260K' });
      const b = loadModel(dir, { trainable: false });
      expect([...b.model.params.keys()].sort()).to.deep.equal([...a.model.params.keys()].sort());
      for (const [name, p] of a.model.params) {
        const q = b.model.params.get(name) as tf.Variable;
        expect(Buffer.from(p.dataSync().buffer).equals(Buffer.from(q.dataSync().buffer)), name).to.equal(true);
      }
      expect(b.model.config.raw).to.deep.equal(a.model.config.raw);
      expect(b.tokenizer.encode('Once upon a time', { addBos: true })).to.deep.equal(a.tokenizer.encode('Once upon a time', { addBos: true }));
      a.model.dispose();
      b.model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
