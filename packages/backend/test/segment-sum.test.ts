import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { unsortedSegmentSumRef } from '../src/segment-sum.ts';

describe('backend', () => {
  it('initialises native, wasm and cpu, and auto picks the native engine when tfjs-node is absent', async () => {
    const info = await initBackend('auto');
    expect(['tensorflow', 'native']).to.include(info.name);
    if (info.name === 'native') expect(info.skipped.map((s) => s.provider)).to.include('@tensorflow/tfjs-node');
    await initBackend('native');
    expect(tf.getBackend()).to.equal('native');
    await initBackend('cpu');
    expect(tf.getBackend()).to.equal('cpu');
    await initBackend('wasm');
    expect(tf.getBackend()).to.equal('wasm');
  });

  it('rejects an unknown backend name with a hint', async () => {
    try {
      await initBackend('gpu' as never);
      expect.fail('should throw');
    } catch (e) {
      expect((e as Error).message).to.match(/unknown backend 'gpu'/);
    }
  });

  it('wasm UnsortedSegmentSum matches the loop reference and the cpu kernel (embedding gradient)', async () => {
    const rng = new Rng(1);
    const N = 37;
    const D = 5;
    const S = 11;
    const x = Float32Array.from({ length: N * D }, () => rng.normal());
    const ids = Int32Array.from({ length: N }, () => rng.int(S));
    const expected = unsortedSegmentSumRef(x, D, ids, S);
    for (const b of ['wasm', 'cpu']) {
      await tf.setBackend(b);
      const got = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(x, [N, D]), tf.tensor1d(ids, 'int32'), S).dataSync());
      for (let i = 0; i < expected.length; i++) expect(got[i]).to.be.closeTo(expected[i] as number, 1e-5);
    }
    await tf.setBackend('wasm');
    // The gradient of gather is the segment sum: d/dE sum(gather(E, ids)) counts how often each row was used.
    const g = tf.tidy(() =>
      tf
        .grad((e: tf.Tensor) => tf.sum(tf.gather(e, tf.tensor1d(ids, 'int32'))))(tf.zeros([S, 2]))
        .dataSync(),
    );
    const counts = new Array(S).fill(0);
    for (const i of ids) counts[i]++;
    for (let s = 0; s < S; s++) expect(g[s * 2]).to.equal(counts[s]);
  });
});
