// Compares the losses (tfjs on cpu and wasm, and the loop twins) with numbers written by an independent numpy
// script: python3 scripts/reference/golden_quant_losses.py > test/golden/quant_losses.json
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { answerCrossEntropy, attentionRelationKd, logitKd, type Relation, type RefQKV, type RefTensor } from '@bitdistill/losses';
import { answerCrossEntropyRef, attentionRelationKdRef, logitKdRef } from '../src/reference.ts';

interface GoldenTensor {
  shape: number[];
  data: number[];
}
interface GoldenQKV {
  q: GoldenTensor;
  k: GoldenTensor;
  v: GoldenTensor;
}
interface Golden {
  answerCrossEntropy: {
    cases: { name: string; logits: GoldenTensor; labels: number[]; answerMask: number[]; perPositionNll: number[]; loss: number }[];
  };
  logitKd: {
    cases: {
      name: string;
      temperature: number;
      teacherLogits: GoldenTensor;
      studentLogits: GoldenTensor;
      mask: number[];
      perPositionKl: number[];
      loss: number;
    }[];
  };
  attentionRelationKd: {
    cases: {
      name: string;
      relationHeads: number;
      relation: Relation;
      teacher: GoldenQKV;
      student: GoldenQKV;
      loss: number;
      clampActive: boolean;
    }[];
  };
}

const GOLDEN_PATH = new URL('../../../test/golden/quant_losses.json', import.meta.url);
const REL = 1e-4;

function loadGolden(): Golden {
  try {
    return JSON.parse(readFileSync(GOLDEN_PATH, 'utf8')) as Golden;
  } catch (e) {
    throw new Error(
      `cannot read ${GOLDEN_PATH.pathname}: ${String(e)}; regenerate it with ` +
        '`python3 scripts/reference/golden_quant_losses.py > test/golden/quant_losses.json`',
    );
  }
}

function expectRel(got: number, want: number, what: string): void {
  expect(Math.abs(got - want), `${what}: got ${got}, want ${want}`).to.be.at.most(REL * Math.abs(want) + 1e-9);
}

const t = (g: GoldenTensor): tf.Tensor => tf.tensor(g.data, g.shape, 'float32');
const ref = (g: GoldenTensor): RefTensor => ({ data: Float32Array.from(g.data), shape: g.shape });
const refQKV = (g: GoldenQKV): RefQKV => ({ q: ref(g.q), k: ref(g.k), v: ref(g.v) });
const value = (f: () => tf.Scalar): number => tf.tidy(() => f().dataSync()[0] as number);
/** A [B, T] mask that keeps position n only: the loss then equals that position's term. */
const onlyPosition = (n: number, shape: number[]): tf.Tensor =>
  tf
    .oneHot(
      tf.tensor1d([n], 'int32'),
      shape.reduce((a, b) => a * b, 1),
    )
    .reshape(shape)
    .toFloat();

describe('golden losses (numpy reference)', () => {
  const golden = loadGolden();

  it('covers the 1e-8 clamp of the relation probabilities in at least one case', () => {
    expect(golden.attentionRelationKd.cases.some((c) => c.clampActive)).to.equal(true);
  });

  describe('loop twins', () => {
    for (const c of golden.answerCrossEntropy.cases) {
      it(`answerCrossEntropyRef ${c.name}`, () => {
        const bt = c.logits.shape.slice(0, 2);
        expectRel(answerCrossEntropyRef(ref(c.logits), { data: c.labels, shape: bt }, { data: c.answerMask, shape: bt }), c.loss, c.name);
      });
    }
    for (const c of golden.logitKd.cases) {
      it(`logitKdRef ${c.name}`, () => {
        const bt = c.studentLogits.shape.slice(0, 2);
        expectRel(logitKdRef(ref(c.teacherLogits), ref(c.studentLogits), { data: c.mask, shape: bt }, c.temperature), c.loss, c.name);
      });
    }
    for (const c of golden.attentionRelationKd.cases) {
      it(`attentionRelationKdRef ${c.name}`, () => {
        const options = { relationHeads: c.relationHeads, relation: c.relation };
        expectRel(attentionRelationKdRef(refQKV(c.teacher), refQKV(c.student), options), c.loss, c.name);
      });
    }
  });

  for (const backend of ['cpu', 'wasm'] as const) {
    describe(`tfjs on ${backend}`, () => {
      before(async () => {
        await initBackend(backend);
        await tf.setBackend(backend);
      });

      for (const c of golden.answerCrossEntropy.cases) {
        it(`answerCrossEntropy ${c.name}, and the NLL of every position`, () => {
          const bt = c.logits.shape.slice(0, 2);
          const labels = () => tf.tensor(c.labels, bt, 'int32');
          expectRel(
            value(() => answerCrossEntropy(t(c.logits), labels(), tf.tensor(c.answerMask, bt))),
            c.loss,
            c.name,
          );
          c.perPositionNll.forEach((nll, n) => {
            expectRel(
              value(() => answerCrossEntropy(t(c.logits), labels(), onlyPosition(n, bt))),
              nll,
              `${c.name} position ${n}`,
            );
          });
        });
      }

      for (const c of golden.logitKd.cases) {
        it(`logitKd ${c.name}, and the KL of every position`, () => {
          const bt = c.studentLogits.shape.slice(0, 2);
          const tau2 = c.temperature * c.temperature;
          expectRel(
            value(() => logitKd(t(c.teacherLogits), t(c.studentLogits), tf.tensor(c.mask, bt), c.temperature)),
            c.loss,
            c.name,
          );
          c.perPositionKl.forEach((kl, n) => {
            const got = value(() => logitKd(t(c.teacherLogits), t(c.studentLogits), onlyPosition(n, bt), c.temperature));
            expectRel(got / tau2, kl, `${c.name} position ${n}`);
          });
        });
      }

      for (const c of golden.attentionRelationKd.cases) {
        it(`attentionRelationKd ${c.name} (teacher q ${JSON.stringify(c.teacher.q.shape)}, student q ${JSON.stringify(c.student.q.shape)})`, () => {
          const qkv = (g: GoldenQKV) => ({ q: t(g.q), k: t(g.k), v: t(g.v) });
          const options = { relationHeads: c.relationHeads, relation: c.relation };
          expectRel(
            value(() => attentionRelationKd(qkv(c.teacher), qkv(c.student), options)),
            c.loss,
            c.name,
          );
        });
      }
    });
  }
});
