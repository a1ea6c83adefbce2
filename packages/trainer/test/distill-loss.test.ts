// The distill stage's loss (stages.ts distillLoss: hidden rows + fusedHeadLoss, teacher off the tape) against
// the unfused computation it replaced (full logits, answerCrossEntropy, logitKd, attentionRelationKd, teacher
// on the tape): same loss terms and the same gradient for every student parameter, on a tiny Qwen3.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel, type Decoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { answerCrossEntropy, attentionRelationKd, logitKd } from '@bitdistill/losses';
import { answerCe, distillLoss, type DistillLossSettings } from '../src/stages.ts';
import type { SftMicroBatch } from '../src/streams.ts';

const FIXTURE = 'test/fixtures/tiny-qwen3';
const B = 2;
const T = 6;

function batch(): SftMicroBatch {
  const inputIds = Int32Array.from([1, 5, 9, 2, 7, 3, 4, 4, 8, 6, 1, 0]);
  const labels = Int32Array.from([5, 9, 2, 7, 3, -100, 4, 8, 6, 1, -100, -100]);
  const answerMask = Float32Array.from([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]);
  const valid = Float32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  return { tokens: 11, B, T, inputIds, labels, answerMask, valid };
}

/** The distill loss as stages.ts computed it before fusedHeadLoss (kept here verbatim as the reference). */
function oldDistillLoss(student: Decoder, teacher: Decoder, b: SftMicroBatch, s: DistillLossSettings): { total: tf.Scalar; terms: Record<string, tf.Scalar> } {
  const ids = tf.tensor2d(b.inputIds, [B, T], 'int32');
  const labels = tf.tensor2d(b.labels, [B, T], 'int32');
  const answerMask = tf.tensor2d(b.answerMask, [B, T]);
  const valid = tf.tensor2d(b.valid, [B, T]);
  let rows: { rows: tf.Tensor1D; labels: tf.Tensor2D; mask: tf.Tensor2D } | null = null;
  if (!(s.logit && s.logitPositions === 'all')) {
    const r: number[] = [];
    const l: number[] = [];
    b.answerMask.forEach((m, i) => {
      if (m !== 0) {
        r.push(i);
        l.push(b.labels[i] as number);
      }
    });
    rows = { rows: tf.tensor1d(r, 'int32'), labels: tf.tensor2d(l, [1, r.length], 'int32'), mask: tf.ones([1, r.length]) as tf.Tensor2D };
  }
  const fwd = (m: Decoder, l: number) => m.forward(ids, { captureLayers: s.attention ? [l] : [], ...(rows !== null ? { logitRows: rows.rows } : {}) });
  const st = fwd(student, s.studentLayer);
  const te = fwd(teacher, s.teacherLayer);
  const ce = rows === null ? answerCrossEntropy(st.logits, labels, answerMask) : answerCrossEntropy(st.logits, rows.labels, rows.mask);
  const terms: Record<string, tf.Scalar> = { ce };
  let total: tf.Scalar = ce;
  if (s.logit) {
    const ld = logitKd(te.logits, st.logits, rows === null ? valid : rows.mask, s.temperature);
    terms['logitKd'] = ld;
    total = tf.add(total, tf.mul(ld, s.lambdaLogit));
  }
  if (s.attention) {
    const ad = attentionRelationKd(te.captured.get(s.teacherLayer)!, st.captured.get(s.studentLayer)!, {
      relationHeads: s.relationHeads,
      relation: s.relation,
    });
    terms['attnKd'] = ad;
    total = tf.add(total, tf.mul(ad, s.gammaAttn));
  }
  return { total, terms };
}

interface Result {
  total: number;
  terms: Record<string, number>;
  grads: Map<string, Float32Array>;
}

function run(student: Decoder, loss: () => { total: tf.Scalar; terms: Record<string, tf.Scalar> }): Result {
  const trainable = [...student.params].filter(([, v]) => v.trainable);
  const terms: Record<string, number> = {};
  const { value, grads } = tf.variableGrads(
    () => {
      const r = loss();
      for (const [k, t] of Object.entries(r.terms)) terms[k] = t.dataSync()[0] as number;
      return r.total;
    },
    trainable.map(([, v]) => v),
  );
  const out = new Map<string, Float32Array>();
  for (const [name, v] of trainable) {
    const g = grads[v.name];
    if (g !== undefined) out.set(name, g.dataSync() as Float32Array);
  }
  const total = value.dataSync()[0] as number;
  tf.dispose([value, ...Object.values(grads)]);
  return { total, terms, grads: out };
}

function expectSame(got: Result, want: Result): void {
  expect(Math.abs(got.total - want.total), `total ${got.total} vs ${want.total}`).to.be.at.most(1e-5 * Math.abs(want.total) + 1e-7);
  expect(Object.keys(got.terms).sort()).to.deep.equal(Object.keys(want.terms).sort());
  for (const [k, w] of Object.entries(want.terms)) {
    expect(Math.abs((got.terms[k] as number) - w), `${k}: ${got.terms[k]} vs ${w}`).to.be.at.most(1e-5 * Math.abs(w) + 1e-7);
  }
  expect([...got.grads.keys()].sort()).to.deep.equal([...want.grads.keys()].sort());
  for (const [name, w] of want.grads) {
    const g = got.grads.get(name) as Float32Array;
    let scale = 0;
    for (const x of w) scale = Math.max(scale, Math.abs(x));
    let err = 0;
    for (let i = 0; i < w.length; i++) err = Math.max(err, Math.abs((g[i] as number) - (w[i] as number)));
    expect(err, `${name}: max |diff| ${err}, max |grad| ${scale}`).to.be.at.most(1e-4 * scale + 1e-7);
  }
}

describe('distill stage loss: fused head + untaped teacher vs the unfused path', () => {
  let student: Decoder;
  let teacher: Decoder;
  before(async () => {
    await initBackend('cpu');
    teacher = loadModel(FIXTURE, { trainable: false }).model;
    student = loadModel(FIXTURE).model;
    prepareStudent(student, { subln: 'allnorm', weightQuant: 'absmean', quantizeActivations: true });
  });
  after(() => {
    student.dispose();
    teacher.dispose();
  });

  const base: DistillLossSettings = {
    logit: true,
    attention: true,
    logitPositions: 'all',
    lambdaLogit: 10,
    gammaAttn: 1000,
    temperature: 5,
    relation: 'cosine',
    relationHeads: 8,
    studentLayer: 1,
    teacherLayer: 1,
    chunkRows: 5,
  };
  const cases: [string, Partial<DistillLossSettings>][] = [
    ['logit KD at every valid position, attention KD, chunks of 5 rows', {}],
    ['one chunk (auto size)', { chunkRows: null }],
    ['logit KD at the answer positions only, chunks of 1 row', { logitPositions: 'answer', chunkRows: 1 }],
    ['logit KD only, temperature 1', { attention: false, temperature: 1 }],
    ['attention KD only (CE at the answer rows)', { logit: false, relation: 'scaled' }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: same terms and student gradients`, () => {
      const s = { ...base, ...over };
      const b = batch();
      const want = run(student, () => oldDistillLoss(student, teacher, b, s));
      const got = run(student, () => distillLoss(student, teacher, b, s));
      expect(want.terms['ce']).to.be.greaterThan(0);
      if (s.logit) expect(want.terms['logitKd']).to.be.greaterThan(0);
      expectSame(got, want);
    });
  }

  it('with both KD terms off the teacher is not run: the loss is the answer CE alone', () => {
    const b = batch();
    const s = { ...base, logit: false, attention: false };
    const forward = teacher.forward.bind(teacher);
    let calls = 0;
    teacher.forward = ((...a: Parameters<typeof forward>) => {
      calls++;
      return forward(...a);
    }) as typeof teacher.forward;
    try {
      const got = run(student, () => distillLoss(student, teacher, b, s));
      const want = run(student, () => {
        const ce = answerCe(student, b, base.chunkRows);
        return { total: ce, terms: { ce } };
      });
      expect(calls).to.equal(0);
      expectSame(got, want);
    } finally {
      teacher.forward = forward;
    }
  });

  it('answerCe (teacher / bitnet-sft stages) equals answerCrossEntropy over the full logits', () => {
    const b = batch();
    const want = run(student, () => {
      const logits = student.forward(tf.tensor2d(b.inputIds, [B, T], 'int32')).logits;
      const ce = answerCrossEntropy(logits, tf.tensor2d(b.labels, [B, T], 'int32'), tf.tensor2d(b.answerMask, [B, T]));
      return { total: ce, terms: { ce } };
    });
    const got = run(student, () => {
      const ce = answerCe(student, b, 1);
      return { total: ce, terms: { ce } };
    });
    expectSame(got, want);
  });

  it('the teacher forward leaves nothing on the tape: only its outputs outlive it', () => {
    // Tensors alive at the end of the loss closure (inside tf.variableGrads): what the tape holds until backward.
    const b = batch();
    const trainable = [...student.params.values()].filter((v) => v.trainable);
    const aliveAfter = (loss: () => tf.Scalar): number => {
      let n = 0;
      const { value, grads } = tf.variableGrads(() => {
        const before = tf.memory().numTensors;
        const l = loss();
        n = tf.memory().numTensors - before;
        return l;
      }, trainable);
      tf.dispose([value, ...Object.values(grads)]);
      return n;
    };
    const s = { ...base, attention: false };
    const ceOnly = aliveAfter(() => answerCe(student, b, 5));
    const distill = aliveAfter(() => distillLoss(student, teacher, b, s).total);
    // For scale: the student's CE plus a teacher forward on the tape.
    const tapedTeacher = aliveAfter(() => {
      teacher.forward(tf.tensor2d(b.inputIds, [B, T], 'int32'), { output: 'hidden' });
      return answerCe(student, b, 5);
    });
    // The distill loss adds the teacher's hidden rows, the masks and the KD read-outs: a handful of tensors.
    expect(distill - ceOnly, `distill ${distill}, ce only ${ceOnly}, ce + taped teacher ${tapedTeacher}`).to.be.below(20);
    expect(tapedTeacher - ceOnly).to.be.above(60);
  });
});
