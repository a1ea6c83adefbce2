// Quantizers vs the independent numpy golden numbers of scripts/reference/golden_quant_losses.py
// (test/golden/quant_losses.json): exact rounding ties, all-zero tensors/tokens, ragged block256 blocks.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { ternaryQuantRef, int8QuantRef, WEIGHT_QUANT_MODES } from '@bitdistill/arch';
import { ternaryQuant, int8Quant } from '@bitdistill/quant';

interface T {
  shape: number[];
  data: number[];
}
interface Golden {
  weightQuant: { cases: { name: string; w: T; modes: Record<string, { scales: number[]; codes: number[]; wq: T | number[] }> }[] };
  activationQuant: { cases: { name: string; x: T; scales: number[]; codes: T | number[]; xq: T | number[] }[] };
}
const golden = JSON.parse(readFileSync('test/golden/quant_losses.json', 'utf8')) as Golden;
const flat = (t: T | number[]) => (Array.isArray(t) ? t : t.data);

function expectRel(got: ArrayLike<number>, want: readonly number[], rel: number, what: string): void {
  expect(got.length).to.equal(want.length, what);
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number;
    expect(Math.abs((got[i] as number) - w)).to.be.at.most(rel * Math.abs(w) + 1e-30, `${what}[${i}]: ${got[i]} vs ${w}`);
  }
}

describe('quantizer golden numbers (numpy)', () => {
  for (const c of golden.weightQuant.cases) {
    for (const mode of WEIGHT_QUANT_MODES) {
      const g = c.modes[mode];
      if (g === undefined) continue;
      const cols = c.w.shape[c.w.shape.length - 1] as number;
      it(`ternary ${mode} ${c.name}: the reference twin gives the same codes and scales`, () => {
        const ref = ternaryQuantRef(Float32Array.from(c.w.data), cols, mode);
        expect([...ref.codes]).to.deep.equal(flat(g.codes as T | number[]));
        expectRel(ref.scales, g.scales, 1e-7, 'scales');
        expectRel(ref.values, flat(g.wq), 1e-7, 'wq');
      });
      for (const backend of ['cpu', 'wasm'] as const) {
        it(`ternary ${mode} ${c.name} on ${backend} (rel. error <= 1e-5)`, async () => {
          await initBackend(backend);
          const got = tf.tidy(() => ternaryQuant(tf.tensor(c.w.data, c.w.shape), mode).dataSync());
          expectRel(got, flat(g.wq), 1e-5, 'wq');
        });
      }
    }
  }
  for (const c of golden.activationQuant.cases) {
    const cols = c.x.shape[c.x.shape.length - 1] as number;
    it(`int8 ${c.name}: the reference twin matches`, () => {
      expectRel(int8QuantRef(Float32Array.from(c.x.data), cols), flat(c.xq), 1e-7, 'xq');
    });
    for (const backend of ['cpu', 'wasm'] as const) {
      it(`int8 ${c.name} on ${backend} (rel. error <= 1e-5)`, async () => {
        await initBackend(backend);
        const got = tf.tidy(() => int8Quant(tf.tensor(c.x.data, c.x.shape)).dataSync());
        expectRel(got, flat(c.xq), 1e-5, 'xq');
      });
    }
  }
});
