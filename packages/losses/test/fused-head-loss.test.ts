// fusedHeadLoss (chunked head + CE + logit KD with a hand-written backward) against the unfused path:
// logits = h W^T in full, then answerCrossEntropy and logitKd, differentiated by tfjs autograd.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng, isBitDistillError, setFusedOps } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { answerCrossEntropy, fusedHeadLoss, logitKd, untaped, type FusedHeadLossOptions } from '@bitdistill/losses';
import { autoChunkRows } from '../src/fused-head-loss.ts';

const N = 14; // rows (B * T = 2 * 7)
const C = 8;
const CT = 6; // the teacher's hidden size differs: only the vocabulary must match
const V = 13;
// CE on "answer" rows, KD on every "valid" row (right padding at the end of each sequence).
const CE_MASK = Float32Array.from([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0]);
const KD_MASK = Float32Array.from([1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]);

interface Case {
  h: Float32Array;
  w: Float32Array;
  ht: Float32Array;
  wt: Float32Array;
  labels: Int32Array;
}

function randn(rng: Rng, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function makeCase(seed: number): Case {
  const rng = new Rng(seed);
  return {
    h: randn(rng, N * C, 1),
    w: randn(rng, V * C, 0.8),
    ht: randn(rng, N * CT, 1),
    wt: randn(rng, V * CT, 1.2),
    labels: Int32Array.from(CE_MASK, (m) => (m === 1 ? rng.int(V) : -100)),
  };
}

interface Weights {
  ce: number | null;
  kd: number | null;
  tau: number;
}

/** The unfused path: full logits, answerCrossEntropy and logitKd, weighted sum. */
function unfused(x: Case, wts: Weights, h: tf.Tensor, w: tf.Tensor): tf.Scalar {
  const logits = tf.reshape(tf.matMul(h, w, false, true), [1, N, V]);
  let total: tf.Scalar = tf.scalar(0);
  if (wts.ce !== null) total = tf.add(total, tf.mul(answerCrossEntropy(logits, tf.tensor2d(x.labels, [1, N], 'int32'), tf.tensor2d(CE_MASK, [1, N])), wts.ce));
  if (wts.kd !== null) {
    const tl = tf.reshape(tf.matMul(tf.tensor2d(x.ht, [N, CT]), tf.tensor2d(x.wt, [V, CT]), false, true), [1, N, V]);
    total = tf.add(total, tf.mul(logitKd(tl, logits, tf.tensor2d(KD_MASK, [1, N]), wts.tau), wts.kd));
  }
  return total;
}

function fusedOptions(x: Case, wts: Weights, chunkRows: number | null, teacher?: { ht: tf.Tensor; wt: tf.Tensor }): FusedHeadLossOptions {
  return {
    chunkRows,
    ...(wts.ce !== null ? { ce: { labels: tf.tensor1d(x.labels, 'int32'), mask: tf.tensor1d(CE_MASK), weight: wts.ce } } : {}),
    ...(wts.kd !== null
      ? {
          kd: {
            teacherHidden: teacher?.ht ?? tf.tensor2d(x.ht, [N, CT]),
            teacherWeight: teacher?.wt ?? tf.tensor2d(x.wt, [V, CT]),
            mask: tf.tensor1d(KD_MASK),
            temperature: wts.tau,
            weight: wts.kd,
          },
        }
      : {}),
  };
}

/** Loss value and gradients (h, W) of a loss function of (h, W). */
function valueAndGrads(x: Case, f: (h: tf.Tensor, w: tf.Tensor) => tf.Scalar): { value: number; gh: Float32Array; gw: Float32Array } {
  return tf.tidy(() => {
    const h = tf.tensor2d(x.h, [N, C]);
    const w = tf.tensor2d(x.w, [V, C]);
    const { value, grads } = tf.valueAndGrads(f)([h, w]);
    return { value: value.dataSync()[0] as number, gh: grads[0]!.dataSync() as Float32Array, gw: grads[1]!.dataSync() as Float32Array };
  });
}

/** Elementwise |got - want| <= rel * max|want| + abs. */
function expectAllClose(got: Float32Array, want: Float32Array, rel: number, what: string, abs = 1e-7): void {
  expect(got.length, what).to.equal(want.length);
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) {
    expect(Math.abs((got[i] as number) - (want[i] as number)), `${what}[${i}]: got ${got[i]}, want ${want[i]}`).to.be.at.most(rel * scale + abs);
  }
}

function expectClose(got: number, want: number, rel: number, what: string): void {
  expect(Math.abs(got - want), `${what}: got ${got}, want ${want}`).to.be.at.most(rel * Math.abs(want) + 1e-7);
}

const CHUNKS = [1, 3, 5, 14, 64, null]; // 5 does not divide the 13 active rows; 14 and 64 are >= N; null = auto

// On the native engine twice: with its BitDistillHeadLoss kernel (fused ops on) and op by op (off).
for (const [backend, fused] of [
  ['cpu', true],
  ['wasm', true],
  ['native', true],
  ['native', false],
] as const) {
  describe(`fusedHeadLoss on ${backend}${backend === 'native' ? (fused ? ' (BitDistillHeadLoss kernel)' : ' (fused ops off: op by op)') : ''}`, () => {
    let prev = true;
    before(async () => {
      await initBackend(backend);
      await tf.setBackend(backend);
      prev = setFusedOps(fused);
    });
    after(() => {
      setFusedOps(prev);
    });

    const SETTINGS: [string, Weights][] = [
      ['CE + logit KD (lambda 10, tau 5)', { ce: 1, kd: 10, tau: 5 }],
      ['CE only', { ce: 1, kd: null, tau: 1 }],
      ['logit KD only (tau 1, weight 0.5)', { ce: null, kd: 0.5, tau: 1 }],
    ];
    for (const [name, wts] of SETTINGS) {
      it(`${name}: loss and gradients to h and W equal the unfused losses at every chunk size`, () => {
        const x = makeCase(7);
        const want = valueAndGrads(x, (h, w) => unfused(x, wts, h, w));
        expect(want.value).to.be.greaterThan(0);
        for (const chunkRows of CHUNKS) {
          const got = valueAndGrads(x, (h, w) => fusedHeadLoss(h, w, fusedOptions(x, wts, chunkRows)).loss);
          expectClose(got.value, want.value, 1e-5, `loss, chunkRows ${chunkRows}`);
          expectAllClose(got.gh, want.gh, 1e-4, `dh, chunkRows ${chunkRows}`);
          expectAllClose(got.gw, want.gw, 1e-4, `dW, chunkRows ${chunkRows}`);
        }
      });
    }

    it('returns the terms separately (ce, logitKd) as the unfused functions give them, with the tape on or off', () => {
      const x = makeCase(8);
      const wts = { ce: 1, kd: 10, tau: 5 };
      const [ceWant, kdWant] = tf.tidy(() => {
        const logits = tf.reshape(tf.matMul(tf.tensor2d(x.h, [N, C]), tf.tensor2d(x.w, [V, C]), false, true), [1, N, V]);
        const tl = tf.reshape(tf.matMul(tf.tensor2d(x.ht, [N, CT]), tf.tensor2d(x.wt, [V, CT]), false, true), [1, N, V]);
        return [
          answerCrossEntropy(logits, tf.tensor2d(x.labels, [1, N], 'int32'), tf.tensor2d(CE_MASK, [1, N])).dataSync()[0] as number,
          logitKd(tl, logits, tf.tensor2d(KD_MASK, [1, N]), 5).dataSync()[0] as number,
        ];
      });
      for (const taped of [false, true]) {
        const read = (r: ReturnType<typeof fusedHeadLoss>) => [
          r.loss.dataSync()[0] as number,
          r.ce!.dataSync()[0] as number,
          r.logitKd!.dataSync()[0] as number,
        ];
        let got: number[] = [];
        tf.tidy(() => {
          const h = tf.tensor2d(x.h, [N, C]);
          if (!taped) got = read(fusedHeadLoss(h, tf.tensor2d(x.w, [V, C]), fusedOptions(x, wts, 4)));
          else {
            // Inside tf.grad the gradient is formed in the forward pass; the values must not change.
            tf.grad((w: tf.Tensor) => {
              const r = fusedHeadLoss(h, w, fusedOptions(x, wts, 4));
              got = read(r);
              return r.loss;
            })(tf.tensor2d(x.w, [V, C]));
          }
        });
        expectClose(got[1] as number, ceWant, 1e-5, `ce (tape ${taped})`);
        expectClose(got[2] as number, kdWant, 1e-5, `logitKd (tape ${taped})`);
        expectClose(got[0] as number, ceWant + 10 * kdWant, 1e-5, `loss (tape ${taped})`);
      }
    });

    it('is 0 with zero gradients when no row is kept by either mask', () => {
      const x = makeCase(9);
      const zeros = new Float32Array(N);
      const { value, gh, gw } = valueAndGrads(
        x,
        (h, w) =>
          fusedHeadLoss(h, w, {
            chunkRows: 4,
            ce: { labels: tf.tensor1d(x.labels, 'int32'), mask: tf.tensor1d(zeros) },
            kd: { teacherHidden: tf.tensor2d(x.ht, [N, CT]), teacherWeight: tf.tensor2d(x.wt, [V, CT]), mask: tf.tensor1d(zeros), temperature: 5 },
          }).loss,
      );
      expect(value).to.equal(0);
      expect(gh.every((g) => g === 0)).to.equal(true);
      expect(gw.every((g) => g === 0)).to.equal(true);
    });

    it('rows kept by neither mask get zero gradient; the others the unfused gradient', () => {
      const x = makeCase(10);
      const wts = { ce: 1, kd: 2, tau: 3 };
      const got = valueAndGrads(x, (h, w) => fusedHeadLoss(h, w, fusedOptions(x, wts, 3)).loss);
      const want = valueAndGrads(x, (h, w) => unfused(x, wts, h, w));
      for (let c = 0; c < C; c++) expect(got.gh[6 * C + c]).to.equal(0); // row 6: both masks 0
      expectAllClose(got.gh, want.gh, 1e-4, 'dh');
    });

    it('sends no gradient to the teacher hidden rows or head, and none through ce / logitKd', () => {
      const x = makeCase(11);
      const h = tf.variable(tf.tensor2d(x.h, [N, C]));
      const w = tf.variable(tf.tensor2d(x.w, [V, C]));
      const ht = tf.variable(tf.tensor2d(x.ht, [N, CT]));
      const wt = tf.variable(tf.tensor2d(x.wt, [V, CT]));
      const { value, grads } = tf.variableGrads(() => fusedHeadLoss(h, w, fusedOptions(x, { ce: 1, kd: 10, tau: 5 }, 4, { ht, wt })).loss, [h, w, ht, wt]);
      expect(Object.keys(grads).sort()).to.deep.equal([h.name, w.name].sort());
      // ce and logitKd are read-outs: differentiating them gives zero gradient.
      const g2 = tf.variableGrads(() => {
        const r = fusedHeadLoss(h, w, fusedOptions(x, { ce: 1, kd: 10, tau: 5 }, 4, { ht, wt }));
        return tf.add(tf.add(r.ce!, r.logitKd!), tf.mul(r.loss, 0)) as tf.Scalar;
      }, [h, w]);
      for (const g of Object.values(g2.grads)) expect(g.dataSync().every((v) => v === 0)).to.equal(true);
      tf.dispose([value, ...Object.values(grads), g2.value, ...Object.values(g2.grads), h, w, ht, wt]);
    });

    it('leaves no tensor behind, with the tape on and off', () => {
      const x = makeCase(12);
      const h = tf.tensor2d(x.h, [N, C]);
      const w = tf.tensor2d(x.w, [V, C]);
      const opts = fusedOptions(x, { ce: 1, kd: 10, tau: 5 }, 3);
      const before = tf.memory().numTensors;
      tf.tidy(() => fusedHeadLoss(h, w, opts).loss.dataSync());
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => fusedHeadLoss(a, b, opts).loss)([h, w]);
      tf.dispose(g);
      expect(tf.memory().numTensors).to.equal(before);
    });

    it('peak memory: no [N, V] tensor, a few [chunk, V] blocks (tf.profile)', async () => {
      const n = 512;
      const v = 2000;
      const c = 4;
      const chunk = 16;
      const rng = new Rng(13);
      const h = tf.tensor2d(randn(rng, n * c, 1), [n, c]);
      const w = tf.tensor2d(randn(rng, v * c, 1), [v, c]);
      const ht = tf.tensor2d(randn(rng, n * c, 1), [n, c]);
      const labels = tf.tensor1d(
        Int32Array.from({ length: n }, () => rng.int(v)),
        'int32',
      );
      const ones = tf.ones([n]);
      const block = chunk * v * 4;
      const full = n * v * 4;
      const head = v * c * 4;
      const base = tf.memory().numBytes;
      // peakBytes counts every tensor object (a reshape or clone counts again), so this overstates a little.
      const peak =
        (
          await tf.profile(() => {
            const g = tf.grads(
              (a: tf.Tensor, b: tf.Tensor) =>
                fusedHeadLoss(a, b, { chunkRows: chunk, ce: { labels, mask: ones }, kd: { teacherHidden: ht, teacherWeight: w, mask: ones, temperature: 5 } })
                  .loss,
            )([h, w]);
            tf.dispose(g);
          })
        ).peakBytes - base;
      // dW, its accumulation temporaries and dh, plus the live blocks of one chunk (five, see the source).
      expect(peak, `peak ${peak} B above the inputs, block ${block} B`).to.be.at.most(7 * block + 6 * head + 16 * n * c);
      expect(peak).to.be.below(full / 4);
      tf.dispose([h, w, ht, labels, ones]);
    });

    it('rejects what it cannot compute, naming the argument', () => {
      const x = makeCase(14);
      const h = tf.tensor2d(x.h, [N, C]);
      const w = tf.tensor2d(x.w, [V, C]);
      const expectError = (fn: () => unknown, code: string, re: RegExp) => {
        let caught: unknown;
        try {
          fn();
        } catch (e) {
          caught = e;
        }
        expect(isBitDistillError(caught), String(caught)).to.equal(true);
        if (isBitDistillError(caught)) {
          expect(caught.code).to.equal(code);
          expect(caught.message).to.match(re);
        }
      };
      const bad = Int32Array.from(x.labels);
      bad[3] = V;
      expectError(
        () => fusedHeadLoss(h, w, { ce: { labels: tf.tensor1d(bad, 'int32'), mask: tf.tensor1d(CE_MASK) } }),
        'E_ARGUMENT',
        /ce\.labels\[3\] = 13 is outside \[0, V\)/,
      );
      expectError(() => fusedHeadLoss(h, w, {}), 'E_ARGUMENT', /give ce, kd or both/);
      expectError(
        () => fusedHeadLoss(h, tf.zeros([V, C + 1]), { ce: { labels: tf.tensor1d(x.labels, 'int32'), mask: tf.tensor1d(CE_MASK) } }),
        'E_SHAPE',
        /weight must be \[V, C\]/,
      );
      expectError(() => fusedHeadLoss(h, w, { ce: { labels: tf.tensor1d(x.labels, 'int32'), mask: tf.ones([N + 1]) } }), 'E_SHAPE', /ce\.mask has 15 entries/);
      expectError(
        () => fusedHeadLoss(h, w, { chunkRows: 0, ce: { labels: tf.tensor1d(x.labels, 'int32'), mask: tf.tensor1d(CE_MASK) } }),
        'E_ARGUMENT',
        /chunkRows must be an integer >= 1/,
      );
      expectError(
        () =>
          fusedHeadLoss(h, w, { kd: { teacherHidden: tf.zeros([N, CT]), teacherWeight: tf.zeros([V + 1, CT]), mask: tf.tensor1d(KD_MASK), temperature: 5 } }),
        'E_SHAPE',
        /teacherWeight \[14, 6\]|kd\.teacherHidden/,
      );
      expectError(
        () => fusedHeadLoss(h, w, { kd: { teacherHidden: tf.zeros([N, CT]), teacherWeight: tf.zeros([V, CT]), mask: tf.tensor1d(KD_MASK), temperature: 0 } }),
        'E_ARGUMENT',
        /temperature/,
      );
      tf.dispose([h, w]);
    });
  });
}

describe('autoChunkRows', () => {
  it('aims at 64 MiB blocks: 110 rows at the Qwen3 vocabulary, at least 1 row', () => {
    expect(autoChunkRows(151936)).to.equal(110);
    expect(autoChunkRows(512)).to.equal(32768);
    expect(autoChunkRows(1e9)).to.equal(1);
  });
});

describe('untaped', () => {
  before(async () => {
    await initBackend('cpu');
    await tf.setBackend('cpu');
  });

  it('gives the same outputs, saves nothing for backward and passes no gradient', () => {
    const a = tf.variable(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    );
    const b = tf.variable(
      tf.tensor2d([
        [0.5, -1],
        [2, 0.25],
      ]),
    );
    const deep = (x: tf.Tensor) => {
      let y = x;
      for (let i = 0; i < 20; i++) y = tf.tanh(tf.matMul(y, b));
      return y;
    };
    let taped = 0;
    let notTaped = 0;
    const direct = tf.variableGrads(() => {
      const before = tf.memory().numTensors;
      const y = deep(a);
      taped = tf.memory().numTensors - before;
      return tf.sum(y) as tf.Scalar;
    }, [a, b]);
    const viaUntaped = tf.variableGrads(() => {
      const before = tf.memory().numTensors;
      const [y] = untaped(() => [deep(a)]);
      notTaped = tf.memory().numTensors - before;
      // Only b gets gradient, through the taped product below.
      return tf.sum(tf.matMul(y!, b)) as tf.Scalar;
    }, [a, b]);
    expect(notTaped).to.equal(1); // just the output
    expect(taped).to.be.greaterThan(40); // outputs plus every tensor saved for backward
    expect(Object.keys(viaUntaped.grads)).to.deep.equal([b.name]);
    const same = tf.tidy(() => tf.max(tf.abs(tf.sub(deep(a), untaped(() => [deep(a)])[0]!))).dataSync()[0] as number);
    expect(same).to.equal(0);
    tf.dispose([direct.value, ...Object.values(direct.grads), viaUntaped.value, ...Object.values(viaUntaped.grads), a, b]);
  });

  it('leaves no tensor behind, with the tape on and off', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      untaped(() => [tf.exp(tf.mul(x, 2)), tf.sum(x)]);
    });
    const g = tf.grad((v: tf.Tensor) => tf.add(tf.sum(v), tf.sum(untaped(() => [tf.exp(tf.mul(x, 2))])[0]!)))(x);
    g.dispose();
    expect(tf.memory().numTensors).to.equal(before);
    x.dispose();
  });
});
