import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng, isBitDistillError } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { answerCrossEntropy, attentionRelationKd, logitKd, type QKV, type RefQKV, type RefTensor } from '@bitdistill/losses';
import { answerCrossEntropyRef, attentionRelationKdRef, logitKdRef } from '../src/reference.ts';
import { RELATIONS } from '../src/attention-relation-kd.ts';

function randn(rng: Rng, shape: number[], scale = 1): RefTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, () => rng.normal() * scale), shape };
}

function toTensor(t: RefTensor): tf.Tensor {
  return tf.tensor(Float32Array.from(t.data), [...t.shape]);
}

/** |got - want| <= rel * |want| + abs. */
function expectClose(got: number, want: number, rel: number, abs = 1e-7, what = ''): void {
  expect(Math.abs(got - want), `${what}: got ${got}, want ${want}`).to.be.at.most(rel * Math.abs(want) + abs);
}

function lossValue(f: () => tf.Scalar): number {
  return tf.tidy(() => f().dataSync()[0] as number);
}

/** Throws `fn`, a BitDistillError with `code`, whose message matches every pattern. */
function expectError(fn: () => unknown, code: string, ...patterns: RegExp[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isBitDistillError(caught), `expected a BitDistillError, got ${String(caught)}`).to.equal(true);
  if (!isBitDistillError(caught)) return;
  expect(caught.code).to.equal(code);
  for (const p of patterns) expect(caught.message).to.match(p);
}

// A [B, T] 0/1 mask with some zeros, and labels that are -100 (ignored) where the mask is 0.
const B = 2;
const T = 5;
const V = 11;
const MASK = Float32Array.from([0, 0, 1, 1, 1, 0, 1, 1, 0, 0]);
const maskRef: RefTensor = { data: MASK, shape: [B, T] };

function labelsFor(rng: Rng): Int32Array {
  return Int32Array.from(MASK, (m) => (m === 1 ? rng.int(V) : -100));
}

// Teacher with 4 query heads of 8 and 2 key/value heads (GQA); student splits the same widths 2 x 16, 1 x 16.
function qkvPair(rng: Rng, Tq = 6): { teacher: RefQKV; student: RefQKV } {
  return {
    teacher: { q: randn(rng, [B, 4, Tq, 8]), k: randn(rng, [B, 2, Tq, 8]), v: randn(rng, [B, 2, Tq, 8]) },
    student: { q: randn(rng, [B, 2, Tq, 16]), k: randn(rng, [B, 1, Tq, 16]), v: randn(rng, [B, 1, Tq, 16]) },
  };
}

function qkvTensors(x: RefQKV): QKV {
  return { q: toTensor(x.q), k: toTensor(x.k), v: toTensor(x.v) };
}

function softmaxRows(x: Float32Array, cols: number, temperature = 1): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += cols) {
    let max = -Infinity;
    for (let i = r; i < r + cols; i++) max = Math.max(max, (x[i] as number) / temperature);
    let sum = 0;
    for (let i = r; i < r + cols; i++) sum += Math.exp((x[i] as number) / temperature - max);
    for (let i = r; i < r + cols; i++) out[i] = Math.exp((x[i] as number) / temperature - max) / sum;
  }
  return out;
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`losses on ${backend}`, () => {
    before(async () => {
      await initBackend(backend);
      await tf.setBackend(backend);
    });

    describe('answerCrossEntropy', () => {
      it('equals the loop reference, ignoring masked positions and their -100 labels', () => {
        const rng = new Rng(1);
        const logits = randn(rng, [B, T, V], 3);
        const labels = labelsFor(rng);
        const want = answerCrossEntropyRef(logits, { data: labels, shape: [B, T] }, maskRef);
        const got = lossValue(() => answerCrossEntropy(toTensor(logits), tf.tensor2d(labels, [B, T], 'int32'), toTensor(maskRef)));
        expectClose(got, want, 1e-5);
        expect(want).to.be.greaterThan(0);
      });

      it('returns 0 (not NaN) when no position is an answer', () => {
        const got = lossValue(() => answerCrossEntropy(tf.randomNormal([B, T, V]), tf.zeros([B, T], 'int32'), tf.zeros([B, T])));
        expect(got).to.equal(0);
      });

      it('has gradient (softmax - onehot) * mask / count', () => {
        const rng = new Rng(2);
        const logits = randn(rng, [B, T, V], 2);
        const labels = labelsFor(rng);
        const g = tf.tidy(() => {
          const y = tf.tensor2d(labels, [B, T], 'int32');
          const m = toTensor(maskRef);
          return tf
            .grad((x: tf.Tensor) => answerCrossEntropy(x, y, m))(toTensor(logits))
            .dataSync();
        });
        const p = softmaxRows(logits.data as Float32Array, V);
        const count = MASK.reduce((a, b) => a + b, 0);
        for (let n = 0; n < B * T; n++) {
          for (let i = 0; i < V; i++) {
            const want = ((MASK[n] as number) * ((p[n * V + i] as number) - (labels[n] === i ? 1 : 0))) / count;
            expectClose(g[n * V + i] as number, want, 1e-4, 1e-7, `grad[${n}, ${i}]`);
          }
        }
      });
    });

    describe('logitKd', () => {
      for (const temperature of [1, 5]) {
        it(`equals the loop reference at temperature ${temperature}, masked positions excluded`, () => {
          const rng = new Rng(10 + temperature);
          const teacher = randn(rng, [B, T, V], 4);
          const student = randn(rng, [B, T, V], 4);
          const want = logitKdRef(teacher, student, maskRef, temperature);
          const got = lossValue(() => logitKd(toTensor(teacher), toTensor(student), toTensor(maskRef), temperature));
          expectClose(got, want, 1e-5);
          expect(want).to.be.greaterThan(0);
        });
      }

      it('is 0 when student equals teacher, and 0 for an all-zero mask', () => {
        const rng = new Rng(3);
        const z = randn(rng, [B, T, V]);
        expect(Math.abs(lossValue(() => logitKd(toTensor(z), toTensor(z), toTensor(maskRef), 5)))).to.be.below(1e-6);
        expect(lossValue(() => logitKd(toTensor(z), tf.zeros([B, T, V]), tf.zeros([B, T]), 5))).to.equal(0);
      });

      it('sends gradient temperature * (p_s - p_t) * mask / count to the student and none to the teacher', () => {
        const rng = new Rng(4);
        const temperature = 5;
        const teacher = randn(rng, [B, T, V], 4);
        const student = randn(rng, [B, T, V], 4);
        const [gt, gs] = tf.tidy(() => {
          const m = toTensor(maskRef);
          const f = (t: tf.Tensor, s: tf.Tensor) => logitKd(t, s, m, temperature);
          return tf
            .grads(f)([toTensor(teacher), toTensor(student)])
            .map((g) => g.dataSync());
        }) as [Float32Array, Float32Array];
        const pt = softmaxRows(teacher.data as Float32Array, V, temperature);
        const ps = softmaxRows(student.data as Float32Array, V, temperature);
        const count = MASK.reduce((a, b) => a + b, 0);
        let nonZero = 0;
        for (let j = 0; j < gs.length; j++) {
          const want = (temperature * (MASK[Math.floor(j / V)] as number) * ((ps[j] as number) - (pt[j] as number))) / count;
          expectClose(gs[j] as number, want, 1e-4, 1e-7, `student grad[${j}]`);
          if (gs[j] !== 0) nonZero++;
        }
        expect(nonZero).to.be.greaterThan(0);
        expect([...gt].every((x) => x === 0)).to.equal(true);
      });
    });

    describe('attentionRelationKd', () => {
      for (const relation of RELATIONS) {
        for (const relationHeads of [1, 2, 4, 8]) {
          it(`equals the loop reference (${relation}, relationHeads ${relationHeads}, teacher 4x8 heads, student 2x16)`, () => {
            const rng = new Rng(20 + relationHeads);
            const { teacher, student } = qkvPair(rng);
            const want = attentionRelationKdRef(teacher, student, { relationHeads, relation });
            const got = lossValue(() => attentionRelationKd(qkvTensors(teacher), qkvTensors(student), { relationHeads, relation }));
            expectClose(got, want, 1e-4);
            expect(want).to.be.greaterThan(0);
          });
        }
      }

      it('is 0 when the student splits the teacher tensors differently but holds the same values', () => {
        const rng = new Rng(5);
        const { teacher } = qkvPair(rng);
        // [B, 4, T, 8] -> [B, T, 32] -> [B, 2, T, 16]: the same concatenated rows, another head split.
        const resplit = (x: tf.Tensor, H: number) => {
          const [b, h, t, d] = x.shape as [number, number, number, number];
          return tf.transpose(tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, t, H, (h * d) / H]), [0, 2, 1, 3]);
        };
        for (const relation of RELATIONS) {
          const got = lossValue(() => {
            const t = qkvTensors(teacher);
            const s = { q: resplit(t.q, 2), k: resplit(t.k, 1), v: resplit(t.v, 1) };
            return attentionRelationKd(t, s, { relationHeads: 4, relation });
          });
          expect(Math.abs(got), relation).to.be.below(1e-6);
        }
      });

      for (const relation of RELATIONS) {
        it(`sends finite, non-zero gradient to the student that matches finite differences (${relation}), none to the teacher`, () => {
          const rng = new Rng(6);
          const { teacher, student } = qkvPair(rng, 4);
          const options = { relationHeads: 4, relation };
          const t = [teacher.q, teacher.k, teacher.v].map(toTensor);
          const loss = (tq: tf.Tensor, tk: tf.Tensor, tv: tf.Tensor, sq: tf.Tensor, sk: tf.Tensor, sv: tf.Tensor) =>
            attentionRelationKd({ q: tq, k: tk, v: tv }, { q: sq, k: sk, v: sv }, options);
          // The teacher is a constant of the loss: no gradient path to it.
          expect(() => tf.tidy(() => tf.grads(loss)([...t, ...[student.q, student.k, student.v].map(toTensor)]))).to.throw(/Cannot compute gradient/);
          const grads = [
            null,
            null,
            null,
            ...tf.tidy(() =>
              tf
                .grads((sq: tf.Tensor, sk: tf.Tensor, sv: tf.Tensor) => loss(t[0] as tf.Tensor, t[1] as tf.Tensor, t[2] as tf.Tensor, sq, sk, sv))(
                  [student.q, student.k, student.v].map(toTensor),
                )
                .map((g) => g.dataSync()),
            ),
          ];
          tf.dispose(t);
          for (const g of grads.slice(3) as Float32Array[]) {
            expect([...g].every(Number.isFinite)).to.equal(true);
            expect([...g].some((x) => x !== 0)).to.equal(true);
          }
          // Central differences of the float64 twin at a few coordinates of each student tensor.
          const h = 1e-3;
          (['q', 'k', 'v'] as const).forEach((p, pi) => {
            const base = Float64Array.from(student[p].data);
            const g = grads[3 + pi] as Float32Array;
            for (const j of [0, 7, base.length - 1]) {
              const at = (delta: number) => {
                const data = Float64Array.from(base);
                data[j] = (data[j] as number) + delta;
                return attentionRelationKdRef(teacher, { ...student, [p]: { data, shape: student[p].shape } }, options);
              };
              const want = (at(h) - at(-h)) / (2 * h);
              expectClose(g[j] as number, want, 2e-2, 1e-5, `d/d student.${p}[${j}]`);
            }
          });
        });
      }

      it('keeps the cosine gradient finite for an all-zero student vector', () => {
        const rng = new Rng(7);
        const { teacher, student } = qkvPair(rng, 4);
        const g = tf.tidy(() => {
          const t = qkvTensors(teacher);
          const s = qkvTensors(student);
          return tf
            .grad((q: tf.Tensor) => attentionRelationKd(t, { ...s, q }, { relationHeads: 4, relation: 'cosine' }))(tf.zerosLike(s.q))
            .dataSync();
        });
        expect([...g].every(Number.isFinite)).to.equal(true);
      });
    });

    it('keeps the tensor count flat across 20 loss-and-gradient steps inside tf.tidy', () => {
      const rng = new Rng(8);
      const logits = toTensor(randn(rng, [B, T, V]));
      const teacherLogits = toTensor(randn(rng, [B, T, V]));
      const labels = tf.tensor2d(labelsFor(rng), [B, T], 'int32');
      const mask = toTensor(maskRef);
      const pair = qkvPair(rng);
      const teacher = qkvTensors(pair.teacher);
      const student = qkvTensors(pair.student);
      const w = tf.variable(tf.ones([V]));
      const step = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const z = tf.mul(logits, w);
            const ce = answerCrossEntropy(z, labels, mask);
            const ld = logitKd(teacherLogits, z, mask, 5);
            const ad = attentionRelationKd(teacher, { ...student, q: tf.mul(student.q, tf.sum(w)) }, { relationHeads: 8, relation: 'cosine' });
            return tf.addN([ce, tf.mul(ld, 10), tf.mul(ad, 1e5)]) as tf.Scalar;
          });
          expect(Number.isFinite(value.dataSync()[0])).to.equal(true);
          expect(Object.keys(grads)).to.have.length(1);
        });
      step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) step();
      expect(tf.memory().numTensors).to.equal(before);
      tf.dispose([logits, teacherLogits, labels, mask, w, ...Object.values(teacher), ...Object.values(student)]);
    });

    describe('bad input', () => {
      const z = () => tf.zeros([B, T, V]);
      const labels = () => tf.zeros([B, T], 'int32');

      it('answerCrossEntropy: mask or labels of the wrong shape, float labels, labels out of range', () => {
        expectError(
          () => answerCrossEntropy(z(), labels(), tf.zeros([B, T + 1])),
          'E_SHAPE',
          /answerCrossEntropy/,
          /answerMask/,
          /\[2, 5\]/,
          /\[2, 6\]/,
          /logits \[2, 5, 11\]/,
        );
        expectError(() => answerCrossEntropy(z(), tf.zeros([B * T], 'int32'), tf.ones([B, T])), 'E_SHAPE', /labels must be \[B, T\] = \[2, 5\]/, /got \[10\]/);
        expectError(() => answerCrossEntropy(tf.zeros([B, V]), labels(), tf.ones([B, T])), 'E_SHAPE', /logits must be \[B, T, V\]/, /got \[2, 11\]/);
        expectError(() => answerCrossEntropy(z(), tf.zeros([B, T]), tf.ones([B, T])), 'E_ARGUMENT', /labels must be int32, got float32/);
        const bad = tf.tensor2d([0, 0, 0, 11, 0, 0, 0, 0, 0, 0], [B, T], 'int32');
        expectError(() => answerCrossEntropy(z(), bad, tf.ones([B, T])), 'E_ARGUMENT', /labels\[0, 3\] = 11/, /\[0, 11\)/);
        // The same label at a masked position is ignored.
        const m = tf.tensor2d([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], [B, T]);
        expect(lossValue(() => answerCrossEntropy(z(), bad, m))).to.be.closeTo(Math.log(V), 1e-5);
      });

      it('logitKd: teacher/student mismatch, wrong mask, temperature <= 0', () => {
        expectError(
          () => logitKd(z(), tf.zeros([B, T, V + 1]), tf.ones([B, T]), 5),
          'E_SHAPE',
          /teacherLogits \[2, 5, 11\]/,
          /studentLogits \[2, 5, 12\]/,
          /same \[B, T, V\]/,
        );
        expectError(() => logitKd(z(), tf.zeros([B, T - 1, V]), tf.ones([B, T]), 5), 'E_SHAPE', /\[2, 4, 11\]/);
        expectError(() => logitKd(z(), z(), tf.ones([B, T, 1]), 5), 'E_SHAPE', /logitKd: mask must be \[B, T\] = \[2, 5\]/, /got \[2, 5, 1\]/);
        for (const temperature of [0, -1, Number.NaN]) {
          expectError(
            () => logitKd(z(), z(), tf.ones([B, T]), temperature),
            'E_ARGUMENT',
            /logitKd: temperature must be a finite number > 0/,
            new RegExp(`got ${temperature}`),
          );
        }
      });

      it('attentionRelationKd: relation heads that do not divide H*d, H*d / B / T mismatches, bad options', () => {
        const rng = new Rng(9);
        const { teacher, student } = qkvPair(rng);
        const t = () => qkvTensors(teacher);
        const s = () => qkvTensors(student);
        // q and k/v widths are 32 and 16: divisors of 16 fit all three.
        expectError(
          () => attentionRelationKd(t(), s(), { relationHeads: 3, relation: 'cosine' }),
          'E_SHAPE',
          /relationHeads = 3 does not divide H\*d = 32 of q/,
          /teacher\.q \[2, 4, 6, 8\]/,
          /relationHeads that fit q, k and v: 1, 2, 4, 8, 16$/,
        );
        expectError(
          () => attentionRelationKd(t(), s(), { relationHeads: 32, relation: 'scaled' }),
          'E_SHAPE',
          /relationHeads = 32 does not divide H\*d = 16 of k/,
          /1, 2, 4, 8, 16$/,
        );
        expectError(
          () => attentionRelationKd(t(), { ...s(), q: tf.zeros([B, 2, 6, 8]) }, { relationHeads: 4, relation: 'cosine' }),
          'E_SHAPE',
          /teacher\.q \[2, 4, 6, 8\] has H\*d = 32 but student\.q \[2, 2, 6, 8\] has H\*d = 16/,
        );
        expectError(
          () => attentionRelationKd(t(), { ...s(), v: tf.zeros([B, 1, 5, 16]) }, { relationHeads: 4, relation: 'cosine' }),
          'E_SHAPE',
          /student\.v \[2, 1, 5, 16\] does not share B and T/,
          /expected \[2, \*, 6, \*\]/,
        );
        expectError(
          () => attentionRelationKd(t(), { ...s(), k: tf.zeros([1, 1, 6, 16]) }, { relationHeads: 4, relation: 'cosine' }),
          'E_SHAPE',
          /student\.k \[1, 1, 6, 16\]/,
        );
        expectError(
          () => attentionRelationKd(t(), { ...s(), k: tf.zeros([B, 6, 16]) }, { relationHeads: 4, relation: 'cosine' }),
          'E_SHAPE',
          /student\.k must be \[B, H, T, d\]/,
          /got \[2, 6, 16\]/,
        );
        expectError(
          () => attentionRelationKd(t(), s(), { relationHeads: 0, relation: 'cosine' }),
          'E_ARGUMENT',
          /relationHeads must be an integer >= 1, got 0/,
        );
        expectError(() => attentionRelationKd(t(), s(), { relationHeads: 4, relation: 'dot' as never }), 'E_ARGUMENT', /unknown relation 'dot'/);
      });
    });
  });
}
