// attentionRelationKd (batch-chunked, hand-written backward; on the native engine also its fused kernel) against
// the same loss written with tf autograd.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng, setFusedOps } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { attentionRelationKd, type QKV, type Relation } from '@bitdistill/losses';
import { RELATION_KD_KERNEL, autoBatchChunk } from '../src/attention-relation-kd.ts';
import { stopGradient } from '../src/stop-gradient.ts';

/** The autograd formulation (the code before the chunked one). */
function autogradKd(teacher: QKV, student: QKV, R: number, relation: Relation): tf.Scalar {
  const logProbs = (x: tf.Tensor) => {
    const [B, H, T, d] = x.shape as [number, number, number, number];
    const D = (H * d) / R;
    let a = tf.transpose(tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, R, D]), [0, 2, 1, 3]);
    let scores: tf.Tensor;
    if (relation === 'cosine') {
      a = tf.div(a, tf.sqrt(tf.maximum(tf.sum(tf.square(a), -1, true), 1e-24)));
      scores = tf.matMul(a, a, false, true);
    } else {
      scores = tf.div(tf.matMul(a, a, false, true), Math.sqrt(D));
    }
    return tf.log(tf.maximum(tf.softmax(scores), 1e-8));
  };
  let total: tf.Tensor = tf.scalar(0);
  for (const p of ['q', 'k', 'v'] as const) {
    const logPT = logProbs(stopGradient(teacher[p]));
    const logPS = logProbs(student[p]);
    const rows = logPT.size / (logPT.shape[3] as number);
    total = tf.add(total, tf.div(tf.sum(tf.mul(tf.exp(logPT), tf.sub(logPT, logPS))), rows));
  }
  return tf.div(total, R) as tf.Scalar;
}

const B = 5;
const T = 6;

function inputs(seed: number, scale: number, zeroRows = false, len = T): { teacher: QKV; student: QKV } {
  const rng = new Rng(seed);
  const t = (shape: number[]) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * scale);
    // A few all-zero rows of the student's projections: their relation vectors are zero (the cosine norm's floor).
    if (zeroRows && shape[3] === 16) for (const r of [0, 7, 13]) data.fill(0, r * 16, r * 16 + 16);
    return tf.tensor(data, shape);
  };
  // Teacher 4 x 8 query heads, 2 x 8 key/value heads; the student splits the same widths 2 x 16 and 1 x 16.
  return {
    teacher: { q: t([B, 4, len, 8]), k: t([B, 2, len, 8]), v: t([B, 2, len, 8]) },
    student: { q: t([B, 2, len, 16]), k: t([B, 1, len, 16]), v: t([B, 1, len, 16]) },
  };
}

function lossAndGrads(f: (s: QKV) => tf.Scalar, student: QKV): { value: number; grads: Float32Array[] } {
  return tf.tidy(() => {
    const { value, grads } = tf.valueAndGrads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => f({ q, k, v }))([student.q, student.k, student.v]);
    return { value: value.dataSync()[0] as number, grads: grads.map((g) => g.dataSync() as Float32Array) };
  });
}

for (const [backend, fused] of [
  ['cpu', false],
  ['native', false],
  ['native', true],
] as const) {
  describe(`attentionRelationKd, ${fused ? 'fused kernel' : 'batch-chunked'}, on ${backend}`, () => {
    let prevFused = true;
    before(async function () {
      await initBackend(backend);
      prevFused = setFusedOps(fused);
      if (fused && tf.getKernel(RELATION_KD_KERNEL, backend) === undefined) this.skip();
    });
    after(() => setFusedOps(prevFused));

    const CASES: [Relation, string, number, boolean][] = [
      ['cosine', 'random rows', 1, false],
      ['cosine', 'some all-zero student rows (the norm floor)', 1, true],
      ['scaled', 'moderate scores', 1, false],
      ['scaled', 'saturated scores (probabilities under the 1e-8 floor)', 6, false],
    ];
    for (const [relation, what, scale, zeroRows] of CASES) {
      it(`${relation}, ${what}: loss and student gradients equal autograd's at batch chunks 1, 2, 5, 8, auto`, () => {
        const { teacher, student } = inputs(relation === 'cosine' ? 1 : 2, scale, zeroRows);
        for (const R of [1, 4, 8]) {
          const want = lossAndGrads((s) => autogradKd(teacher, s, R, relation), student);
          expect(want.value).to.be.greaterThan(0);
          for (const batchChunk of [1, 2, 5, 8, null]) {
            const got = lossAndGrads((s) => attentionRelationKd(teacher, s, { relationHeads: R, relation, batchChunk }), student);
            const tag = `R ${R}, chunk ${batchChunk}`;
            expect(Math.abs(got.value - want.value), `${tag}: loss ${got.value} vs ${want.value}`).to.be.at.most(1e-5 * want.value + 1e-8);
            got.grads.forEach((g, i) => {
              const w = want.grads[i] as Float32Array;
              let scaleW = 0;
              for (const x of w) scaleW = Math.max(scaleW, Math.abs(x));
              let err = 0;
              for (let j = 0; j < w.length; j++) err = Math.max(err, Math.abs((g[j] as number) - (w[j] as number)));
              expect(err, `${tag}: grad ${'qkv'[i]} max |diff| ${err}, max |grad| ${scaleW}`).to.be.at.most(1e-4 * scaleW + 1e-9);
            });
          }
        }
        if (scale > 1 && relation === 'scaled') {
          // The floor is really in play in this case.
          const under = tf.tidy(() => {
            const a = tf.transpose(tf.reshape(tf.transpose(student.q, [0, 2, 1, 3]), [B, T, 4, 8]), [0, 2, 1, 3]);
            return tf.sum(tf.cast(tf.less(tf.softmax(tf.div(tf.matMul(a, a, false, true), Math.sqrt(8))), 1e-8), 'int32')).dataSync()[0] as number;
          });
          expect(under).to.be.greaterThan(0);
        }
        tf.dispose([...Object.values(teacher), ...Object.values(student)]);
      });
    }

    // T = 37: three groups of 16 rows with a partial one (the native kernel's lane form for relation heads up
    // to 16 wide: R = 4 and 8 here; R = 1 takes its GEMM form).
    for (const relation of ['cosine', 'scaled'] as const) {
      it(`${relation}, T = 37: loss and student gradients equal autograd's`, () => {
        const { teacher, student } = inputs(5, 1, false, 37);
        for (const R of [1, 4, 8]) {
          const want = lossAndGrads((s) => autogradKd(teacher, s, R, relation), student);
          const got = lossAndGrads((s) => attentionRelationKd(teacher, s, { relationHeads: R, relation }), student);
          expect(Math.abs(got.value - want.value), `R ${R}: loss ${got.value} vs ${want.value}`).to.be.at.most(1e-5 * want.value + 1e-8);
          got.grads.forEach((g, i) => {
            const w = want.grads[i] as Float32Array;
            let scaleW = 0;
            let err = 0;
            for (let j = 0; j < w.length; j++) {
              scaleW = Math.max(scaleW, Math.abs(w[j] as number));
              err = Math.max(err, Math.abs((g[j] as number) - (w[j] as number)));
            }
            expect(err, `R ${R}: grad ${'qkv'[i]} max |diff| ${err}, max |grad| ${scaleW}`).to.be.at.most(1e-4 * scaleW + 1e-9);
          });
        }
        tf.dispose([...Object.values(teacher), ...Object.values(student)]);
      });
    }

    it('keeps far fewer [B, R, T, T] tensors alive than autograd (tf.profile peak)', async () => {
      const rng = new Rng(3);
      const t = (shape: number[]) =>
        tf.tensor(
          Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()),
          shape,
        );
      const b = 4;
      const tt = 32;
      const R = 8;
      const teacher = { q: t([b, 4, tt, 16]), k: t([b, 2, tt, 16]), v: t([b, 2, tt, 16]) };
      const student = { q: t([b, 4, tt, 16]), k: t([b, 2, tt, 16]), v: t([b, 2, tt, 16]) };
      const block = b * R * tt * tt * 4;
      const base = tf.memory().numBytes;
      const peak = async (f: (s: QKV) => tf.Scalar) =>
        (await tf.profile(() => tf.dispose(tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => f({ q, k, v }))([student.q, student.k, student.v]))))
          .peakBytes - base;
      const oneChunk = await peak((s) => attentionRelationKd(teacher, s, { relationHeads: R, relation: 'cosine', batchChunk: b }));
      const chunked = await peak((s) => attentionRelationKd(teacher, s, { relationHeads: R, relation: 'cosine', batchChunk: 1 }));
      const autograd = await peak((s) => autogradKd(teacher, s, R, 'cosine'));
      if (fused) {
        // The fused kernel forms no [B, R, T, T] tensor at all: only the student-sized gradients.
        // (tf.profile's peak: the three gradients, their copies scaled by dy, and the teacher's zeros.)
        const grads = 4 * (student.q.size + student.k.size + student.v.size);
        expect(oneChunk, `fused: ${oneChunk} bytes, gradients ${grads}`).to.be.at.most(4 * grads + 64);
        expect(oneChunk, `fused ${oneChunk} vs autograd ${autograd}`).to.be.below(autograd / 8);
      } else {
        expect(oneChunk, `one chunk: ${oneChunk / block} blocks, autograd ${autograd / block}`).to.be.below(autograd / 4);
        expect(chunked, `chunks of 1: ${chunked / block} blocks`).to.be.below(oneChunk / 2);
      }
      tf.dispose([...Object.values(teacher), ...Object.values(student)]);
    });

    it('treats the teacher as a constant (no gradient path), leaves no tensor behind, and works with the tape off', () => {
      const { teacher, student } = inputs(4, 1);
      const before = tf.memory().numTensors;
      const loss = (tq: tf.Tensor, sq: tf.Tensor) =>
        attentionRelationKd({ ...teacher, q: tq }, { ...student, q: sq }, { relationHeads: 4, relation: 'cosine', batchChunk: 2 });
      // The teacher's q, k, v are constants of the loss (as under stopGradient): no gradient is formed for them.
      expect(() => tf.grads(loss)([teacher.q, student.q])).to.throw(/Cannot compute gradient/);
      const g = tf.grads((sq: tf.Tensor) => loss(teacher.q, sq))([student.q]);
      expect([...g[0]!.dataSync()].some((x) => x !== 0)).to.equal(true);
      tf.dispose(g);
      const off = tf.tidy(() => attentionRelationKd(teacher, student, { relationHeads: 4, relation: 'cosine', batchChunk: 2 }).dataSync()[0] as number);
      const on = tf.tidy(() => autogradKd(teacher, student, 4, 'cosine').dataSync()[0] as number);
      expect(Math.abs(off - on)).to.be.at.most(1e-5 * on);
      expect(tf.memory().numTensors).to.equal(before);
      expect(() => attentionRelationKd(teacher, student, { relationHeads: 4, relation: 'cosine', batchChunk: 0 })).to.throw(
        /batchChunk must be an integer >= 1/,
      );
      tf.dispose([...Object.values(teacher), ...Object.values(student)]);
    });
  });
}

describe('autoBatchChunk', () => {
  it('aims at 64 MiB [chunk, R, T, T] blocks', () => {
    expect(autoBatchChunk(32, 128)).to.equal(32);
    expect(autoBatchChunk(32, 512)).to.equal(2);
    expect(autoBatchChunk(32, 4096)).to.equal(1);
  });
});
