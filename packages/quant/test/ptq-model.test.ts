// quantizeDecoder on stories260K: which tensors change and how (RTN: exactly rtnQuantize of each projection), and
// GPTQ's captured inputs (layer 0's q/k/v read RMSNorm(embedding) x gain, recomputed here in plain float64).
import { expect } from 'chai';
import { initBackend } from '@bitdistill/backend';
import { PROJECTIONS, projectionName } from '@bitdistill/arch';
import { Rng } from '@bitdistill/core';
import { lmNll, loadModel } from '@bitdistill/model';
import { quantizeDecoder } from '../src/ptq-model.ts';
import { gptqQuantize, hessianError, rtnQuantize } from '../src/ptq.ts';

const rng = new Rng(5);
const CALIB = Array.from({ length: 6 }, () => Int32Array.from({ length: 25 }, () => 3 + rng.int(509)));

describe('quantizeDecoder on stories260K', function () {
  this.timeout(60_000);
  before(async () => {
    await initBackend('wasm');
  });

  it('RTN: every projection becomes rtnQuantize of itself; embeddings and norms stay bit for bit', () => {
    const before = loadModel('models/stories260K', { trainable: false }).model;
    const model = loadModel('models/stories260K', { trainable: false }).model;
    const report = quantizeDecoder(model, { method: 'rtn', bits: 3, group: 32 });
    expect(report.map((r) => r.name)).to.deep.equal([...Array(5).keys()].flatMap((l) => PROJECTIONS.map((p) => `${projectionName(l, p)}.weight`)));
    for (const [name, v] of before.params) {
      const w = v.dataSync() as Float32Array;
      const got = Array.from(model.param(name).dataSync());
      const r = report.find((x) => x.name === name);
      if (r === undefined) expect(got, name).to.deep.equal(Array.from(w));
      else {
        expect(got, name).to.deep.equal(Array.from(rtnQuantize(w, r.shape[0], r.shape[1], { bits: 3, group: 32 })));
        expect(r.outputRelErr).to.equal(null);
      }
    }
    before.dispose();
    model.dispose();
  });

  it("GPTQ: layer 0's q_proj Hessian is 2/n sum x x^T of RMSNorm(embedding) x gain over the calibration tokens", () => {
    const model = loadModel('models/stories260K', { trainable: false }).model;
    const w = Float32Array.from(model.param('model.layers.0.self_attn.q_proj.weight').dataSync());
    const emb = model.param('model.embed_tokens.weight').dataSync();
    const gain = model.param('model.layers.0.input_layernorm.weight').dataSync();
    const C = 64;
    const h = new Float64Array(C * C);
    let n = 0;
    for (const s of CALIB)
      for (const id of s.subarray(0, s.length - 1)) {
        const e = emb.subarray(id * C, id * C + C);
        let ms = 0;
        for (const v of e) ms += v * v;
        const inv = 1 / Math.sqrt(ms / C + model.config.rmsNormEps);
        const x = Float64Array.from(e, (v, i) => v * inv * (gain[i] as number));
        for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) h[i * C + j] = (h[i * C + j] as number) + (x[i] as number) * (x[j] as number);
        n++;
      }
    for (let i = 0; i < h.length; i++) h[i] = ((h[i] as number) * 2) / n;
    const nllBefore = lmNll(model, CALIB).nll;
    const report = quantizeDecoder(model, { method: 'gptq', bits: 4, group: null, calibration: CALIB });
    const q = model.param('model.layers.0.self_attn.q_proj.weight').dataSync() as Float32Array;
    const ref = gptqQuantize(w, 64, 64, h, { bits: 4, group: null });
    // H is accumulated in float32 by tfjs: a weight near a rounding boundary may land on the neighbouring level
    let same = 0;
    for (let i = 0; i < q.length; i++) if (Math.abs((q[i] as number) - (ref[i] as number)) <= 1e-6) same++;
    expect(same / q.length).to.be.above(0.99);
    const rel = hessianError(w, q, 64, 64, h) / hessianError(w, new Float32Array(w.length), 64, 64, h);
    expect(report[0]?.outputRelErr).to.be.closeTo(rel, 1e-3 * rel);
    for (const r of report) expect(Number.isFinite(r.outputRelErr) && (r.outputRelErr as number) > 0, r.name).to.equal(true);
    // the calibration text itself: 4-bit GPTQ moves its NLL by little
    expect(Math.abs(lmNll(model, CALIB).nll - nllBefore)).to.be.below(0.2);
    model.dispose();
  });

  it('GPTQ without calibration text is refused', () => {
    const model = loadModel('models/stories260K', { trainable: false }).model;
    expect(() => quantizeDecoder(model, { method: 'gptq', bits: 4, group: null })).to.throw(/GPTQ needs calibration sequences/);
    model.dispose();
  });
});
