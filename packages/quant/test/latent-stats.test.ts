import { expect } from 'chai';
import { initBackend } from '@bitdistill/backend';
import { loadModel } from '@bitdistill/model';
import { latentWeightStats, prepareStudent } from '@bitdistill/quant';

describe('latentWeightStats', () => {
  before(async () => {
    await initBackend('wasm');
  });

  it('is null for a plain model', async () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3', { trainable: false });
    expect(await latentWeightStats(model)).to.equal(null);
    model.dispose();
  });

  it('matches a direct computation: relative error, weights near the d/2 boundary, zeros, per type', async () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3', { trainable: false });
    prepareStudent(model, { subln: 'none', weightQuant: 'absmean' });
    const got = await latentWeightStats(model);
    expect(got).to.not.equal(null);
    // Independent loop: per tensor d = mean |W|, Q(W) = d * clamp(round(W / d), -1, 1).
    let err = 0;
    let norm = 0;
    let near = 0;
    let zeros = 0;
    let n = 0;
    const byType: Record<string, [number, number]> = {};
    for (const [name, p] of model.params) {
      const m = /\.(\w+_proj)\.weight$/.exec(name);
      if (m === null) continue;
      const w = p.dataSync();
      let s = 0;
      for (const x of w) s += Math.abs(x);
      const d = s / w.length;
      const t = (byType[m[1] as string] ??= [0, 0]);
      for (const x of w) {
        const q = Math.max(-1, Math.min(1, Math.round(x / d)));
        err += (x - q * d) ** 2;
        norm += x * x;
        t[0] += (x - q * d) ** 2;
        t[1] += x * x;
        if (Math.abs(Math.abs(x) / d - 0.5) < 0.05) near++;
        if (q === 0) zeros++;
        n++;
      }
    }
    const st = got as NonNullable<typeof got>;
    expect(st.relErr).to.be.closeTo(err / norm, 1e-5);
    expect(st.nearBoundary).to.be.closeTo(near / n, 2 / n);
    expect(st.zeroFrac).to.be.closeTo(zeros / n, 2 / n);
    expect(Object.keys(st.relErrByType).sort()).to.deep.equal(Object.keys(byType).sort());
    for (const [k, [e, w]] of Object.entries(byType)) expect(st.relErrByType[k]).to.be.closeTo(e / w, 1e-5);
    // Sanity of the quantity itself: a ternary quantizer of a Gaussian-like tensor loses a good part of it.
    expect(st.relErr).to.be.within(0.05, 0.8);
    model.dispose();
  });
});
