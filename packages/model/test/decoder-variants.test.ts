import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel } from '@bitdistill/model';

interface Golden {
  ids: number[][];
  shape: number[];
  logits: number[];
}

for (const name of ['tiny-qwen3', 'tiny-qwen2']) {
  describe(`decoder ${name} vs the numpy reference (scripts/reference/hf_decoder_forward.py)`, () => {
    const golden = JSON.parse(readFileSync(`test/golden/${name}.json`, 'utf8')) as Golden;

    for (const backend of ['wasm', 'cpu'] as const) {
      it(`logits match on ${backend} (q/k-norm, GQA, biases, tied/untied head)`, async () => {
        await initBackend(backend);
        const { model } = loadModel(`test/fixtures/${name}`, { trainable: false });
        const [B, T] = [golden.ids.length, (golden.ids[0] as number[]).length];
        const out = tf.tidy(() => model.forward(tf.tensor2d(golden.ids, [B, T], 'int32')).logits.dataSync());
        expect(out.length).to.equal(golden.logits.length);
        let maxErr = 0;
        for (let i = 0; i < out.length; i++) maxErr = Math.max(maxErr, Math.abs((out[i] as number) - (golden.logits[i] as number)));
        expect(maxErr).to.be.lessThan(2e-4);
        model.dispose();
      });
    }

    it('returns Q, K, V of a captured layer as [B, heads, T, d] without expanding GQA heads', async () => {
      await initBackend('wasm');
      const { model } = loadModel(`test/fixtures/${name}`, { trainable: false });
      const c = model.config;
      tf.tidy(() => {
        const { captured } = model.forward(tf.tensor2d(golden.ids, [2, 8], 'int32'), { captureLayers: [1] });
        const qkv = captured.get(1);
        expect(qkv?.q.shape).to.deep.equal([2, c.numHeads, 8, c.headDim]);
        expect(qkv?.k.shape).to.deep.equal([2, c.numKvHeads, 8, c.headDim]);
        expect(qkv?.v.shape).to.deep.equal([2, c.numKvHeads, 8, c.headDim]);
      });
      expect(() => model.forward(tf.tensor2d([[1, 2]], [1, 2], 'int32'), { captureLayers: [5] })).to.throw(/out of range/);
      model.dispose();
    });
  });
}
