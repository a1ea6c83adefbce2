import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel } from '@bitdistill/model';

describe('Decoder.forward logitRows (vocabulary projection at chosen rows only)', () => {
  before(async () => {
    await initBackend('wasm');
  });

  it('equals the full logits at those rows, for every row order and a repeated row', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3', { trainable: false });
    const V = model.config.vocabSize;
    const ids = [
      [1, 5, 9, 2, 7, 3],
      [4, 4, 8, 6, 1, 0],
    ];
    const rows = [11, 0, 5, 6, 5];
    tf.tidy(() => {
      const x = tf.tensor2d(ids, [2, 6], 'int32');
      const full = model.forward(x).logits.dataSync();
      const part = model.forward(x, { logitRows: tf.tensor1d(rows, 'int32') }).logits;
      expect(part.shape).to.deep.equal([1, rows.length, V]);
      const got = part.dataSync();
      rows.forEach((r, i) => {
        for (let v = 0; v < V; v++) expect(Math.abs((got[i * V + v] as number) - (full[r * V + v] as number))).to.be.lessThan(1e-5, `row ${r} token ${v}`);
      });
    });
    model.dispose();
  });

  it('gives the same parameter gradients as the full-logit loss restricted to those rows', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const V = model.config.vocabSize;
    const x = tf.tensor2d([[1, 5, 9, 2, 7, 3]], [1, 6], 'int32');
    const rows = [2, 5];
    const target = [3, 8];
    const vars = [...model.params.values()];
    const a = tf.variableGrads(() => {
      const full = tf.reshape(model.forward(x).logits, [6, V]);
      return tf.neg(tf.sum(tf.mul(tf.gather(tf.logSoftmax(full), tf.tensor1d(rows, 'int32')), tf.oneHot(tf.tensor1d(target, 'int32'), V)))) as tf.Scalar;
    }, vars);
    const b = tf.variableGrads(() => {
      const part = tf.reshape(model.forward(x, { logitRows: tf.tensor1d(rows, 'int32') }).logits, [2, V]);
      return tf.neg(tf.sum(tf.mul(tf.logSoftmax(part), tf.oneHot(tf.tensor1d(target, 'int32'), V)))) as tf.Scalar;
    }, vars);
    expect(Math.abs((a.value.dataSync()[0] as number) - (b.value.dataSync()[0] as number))).to.be.lessThan(1e-5);
    for (const k of Object.keys(a.grads)) {
      const ga = (a.grads[k] as tf.Tensor).dataSync();
      const gb = (b.grads[k] as tf.Tensor).dataSync();
      let maxErr = 0;
      for (let i = 0; i < ga.length; i++) maxErr = Math.max(maxErr, Math.abs((ga[i] as number) - (gb[i] as number)));
      expect(maxErr, k).to.be.lessThan(1e-5);
    }
    tf.dispose([a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads), x]);
    model.dispose();
  });

  it('rejects float or 2-D rows', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3', { trainable: false });
    const x = tf.tensor2d([[1, 2]], [1, 2], 'int32');
    expect(() => model.forward(x, { logitRows: tf.tensor1d([0, 1]) })).to.throw(/logitRows must be int32/);
    x.dispose();
    model.dispose();
  });
});
