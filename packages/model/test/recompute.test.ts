// Activation recomputation (Decoder.recompute, optim.recompute): the loss and every parameter gradient equal
// the plain forward's (the same kernels run on the same values, so equal to float32 noise at most), with
// GQA and q/k-norm (tiny Qwen3) and as a ternary student with SubLN (stories260K); the captured layer still
// hands out its Q/K/V; no tensor leaks across steps.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { PROJECTIONS, projectionName } from '@bitdistill/arch';
import { denseLinear, loadModel, setFusedOps, type Decoder, type LinearFn } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';

function lossAndGrads(model: Decoder, ids: tf.Tensor2D, capture: number[]): { loss: number; grads: Map<string, Float32Array>; q: Float32Array | null } {
  const vars = [...model.params.values()].filter((v) => v.trainable);
  let q: Float32Array | null = null;
  const { value, grads } = tf.variableGrads(() => {
    const out = model.forward(ids, { captureLayers: capture });
    const c = capture[0] === undefined ? undefined : out.captured.get(capture[0]);
    if (c !== undefined) q = c.q.dataSync().slice() as Float32Array;
    // A loss that reaches every logit and, when captured, the Q of that layer.
    const base = tf.mean(tf.square(out.logits));
    return (c === undefined ? base : tf.add(base, tf.mean(tf.square(c.q)))) as tf.Scalar;
  }, vars);
  const names = new Map([...model.params].map(([n, v]) => [v.name, n]));
  const out = new Map<string, Float32Array>();
  for (const [vn, g] of Object.entries(grads)) out.set(names.get(vn) as string, g.dataSync().slice() as Float32Array);
  const loss = value.dataSync()[0] as number;
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: out, q };
}

function expectClose(a: ReturnType<typeof lossAndGrads>, b: ReturnType<typeof lossAndGrads>): void {
  expect(b.loss).to.be.closeTo(a.loss, 1e-6 * Math.abs(a.loss));
  expect([...b.grads.keys()].sort()).to.deep.equal([...a.grads.keys()].sort());
  for (const [name, g] of a.grads) {
    const h = b.grads.get(name) as Float32Array;
    let scale = 0;
    let err = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i] as number));
      err = Math.max(err, Math.abs((g[i] as number) - (h[i] as number)));
    }
    expect(err, `gradient of ${name} (scale ${scale})`).to.be.at.most(1e-5 * scale + 1e-12);
  }
}

describe('activation recomputation', () => {
  before(async () => {
    await initBackend('auto');
  });

  const cases = [
    ['test/fixtures/tiny-qwen3', false, true],
    ['models/stories260K', true, true],
    ['models/stories260K', true, false], // the student's backward through the op-by-op twins (no fused kernels)
  ] as const;
  for (const [name, student, fused] of cases) {
    it(`${name}${student ? ' (ternary student, SubLN)' : ''}${fused ? '' : ', fused ops off'}: loss and gradients equal the plain forward's; captured Q unchanged`, () => {
      const { model } = loadModel(name);
      const prevFused = setFusedOps(fused);
      try {
        if (student) prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
        const r = new Rng(4);
        const ids = tf.tensor2d(
          Int32Array.from({ length: 2 * 12 }, () => r.int(model.config.vocabSize)),
          [2, 12],
          'int32',
        );
        const capture = [model.config.numLayers - 1];
        const plain = lossAndGrads(model, ids, capture);
        model.recompute = true;
        const before = tf.memory().numTensors;
        const again = lossAndGrads(model, ids, capture);
        lossAndGrads(model, ids, []);
        expect(tf.memory().numTensors, 'tensors leaked by a recomputed step').to.equal(before);
        expectClose(plain, again);
        expect(Array.from(again.q as Float32Array)).to.deep.equal(Array.from(plain.q as Float32Array));
        ids.dispose();
      } finally {
        setFusedOps(prevFused);
        model.dispose();
      }
    });
  }

  it('the backward replays the kept projection outputs: each projection runs its forward once per step, and a forward without a tape keeps nothing', () => {
    const { model } = loadModel('models/stories260K');
    try {
      prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
      let calls = 0;
      for (let l = 0; l < model.config.numLayers; l++) {
        for (const proj of PROJECTIONS) {
          const base = projectionName(l, proj);
          const inner = model.linears.get(base) ?? denseLinear;
          const counted: LinearFn = Object.assign(
            (x: tf.Tensor2D, w: tf.Tensor2D) => {
              calls++;
              return inner(x, w);
            },
            { backward: inner.backward, replayable: inner.replayable },
          );
          model.linears.set(base, counted);
        }
      }
      model.recompute = true;
      const r = new Rng(5);
      const ids = tf.tensor2d(
        Int32Array.from({ length: 2 * 12 }, () => r.int(model.config.vocabSize)),
        [2, 12],
        'int32',
      );
      lossAndGrads(model, ids, []); // builds the RoPE and mask caches for this length
      const before = tf.memory().numTensors;
      calls = 0;
      lossAndGrads(model, ids, []);
      expect(tf.memory().numTensors, 'tensors left by a recomputed step').to.equal(before);
      expect(calls, 'projection forwards in one recomputed training step').to.equal(model.config.numLayers * PROJECTIONS.length);
      calls = 0;
      tf.tidy(() => {
        model.forward(ids);
      });
      expect(calls).to.equal(model.config.numLayers * PROJECTIONS.length);
      expect(tf.memory().numTensors, 'tensors left by a forward without gradients').to.equal(before);
      ids.dispose();
    } finally {
      model.dispose();
    }
  });
});
