import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { ternaryQuantRef, int8QuantRef, roundHalfEven, WEIGHT_QUANT_MODES } from '@bitdistill/arch';
import { ternaryQuant, int8Quant } from '@bitdistill/quant';

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`quantizers on ${backend}`, () => {
    before(async () => {
      await initBackend(backend);
    });

    it('roundHalfEven rounds ties to even', () => {
      expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 1.51].map(roundHalfEven)).to.deep.equal([0, 2, 2, -0, -2, -2, 0, 2]);
    });

    for (const mode of WEIGHT_QUANT_MODES) {
      it(`ternaryQuant(${mode}) equals the loop reference and takes <= 3 values per scale group`, () => {
        const rng = new Rng(7);
        const rows = 7;
        const cols = 300;
        const w = randn(rng, rows * cols, 0.02);
        const ref = ternaryQuantRef(w, cols, mode);
        const got = tf.tidy(() => ternaryQuant(tf.tensor2d(w, [rows, cols]), mode).dataSync());
        for (let i = 0; i < w.length; i++) {
          const e = ref.values[i] as number;
          expect(Math.abs((got[i] as number) - e)).to.be.at.most(1e-5 * Math.abs(e) + 1e-12, `index ${i}`);
        }
        const groups = mode === 'absmean' ? 1 : mode === 'perRow' ? rows : Math.ceil((rows * cols) / 256);
        expect(ref.scales.length).to.equal(groups);
      });
    }

    it('ternaryQuant floors the scale at 1e-5 for an all-zero tensor', () => {
      const got = tf.tidy(() => ternaryQuant(tf.zeros([4, 4]), 'absmean').dataSync());
      expect([...got].every((v) => v === 0)).to.equal(true);
    });

    it('int8Quant equals the loop reference, with an all-zero token', () => {
      const rng = new Rng(3);
      const x = randn(rng, 3 * 16);
      x.fill(0, 16, 32);
      const ref = int8QuantRef(x, 16);
      const got = tf.tidy(() => int8Quant(tf.tensor2d(x, [3, 16])).dataSync());
      for (let i = 0; i < x.length; i++) expect(got[i]).to.be.closeTo(ref[i] as number, 1e-6 * Math.abs(ref[i] as number) + 1e-9);
      for (let i = 16; i < 32; i++) expect(got[i]).to.equal(0);
    });

    it('STE: gradients are exactly the incoming gradient', () => {
      const rng = new Rng(5);
      const w = tf.tensor2d(randn(rng, 6 * 10), [6, 10]);
      const up = tf.tensor2d(randn(rng, 6 * 10), [6, 10]);
      const upData = up.dataSync();
      for (const mode of WEIGHT_QUANT_MODES) {
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(ternaryQuant(t, mode), up)))(w);
        expect([...g.dataSync()]).to.deep.equal([...upData]);
        g.dispose();
      }
      const g2 = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(int8Quant(t), up)))(w);
      expect([...g2.dataSync()]).to.deep.equal([...upData]);
      tf.dispose([w, up, g2]);
    });

    it('rejects an unknown mode', () => {
      expect(() => ternaryQuant(tf.zeros([2, 2]), 'perColumn' as never)).to.throw(/unknown weight quantizer mode 'perColumn'/);
    });
  });
}
