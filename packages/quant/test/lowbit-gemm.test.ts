// Low-bit float training GEMMs: the operand rounding maps onto the golden-tested formats, the projection's value
// and gradients equal the formulas over rounded operands (float64 loops here), and the teacher stage trains with
// them end to end.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@bitdistill/backend';
import { formatConfig, validateConfig, type GemmFormat } from '@bitdistill/config';
import { ArgumentError, Rng, silentLogger } from '@bitdistill/core';
import { loadModel } from '@bitdistill/model';
import { runTraining } from '@bitdistill/trainer';
import { LOWBIT_FORMATS, fakeQuantLowBit, fakeQuantNvfp4, lowBitTensorScale } from '../src/lowbit.ts';
import { applyLowBitGemm, fakeQuantGemmOperand, lowBitLinear, prepareStudent } from '../src/index.ts';

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/** a [m, k] times b^T [n, k] -> [m, n], float64 sums. */
function matmulT(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += (a[i * k + t] as number) * (b[j * k + t] as number);
      out[i * n + j] = s;
    }
  return out;
}

function transpose(a: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j] as number;
  return out;
}

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i] as number));
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs((got[i] as number) - (want[i] as number)));
  return m / Math.max(scale, 1e-30);
}

describe('low-bit float training GEMMs', function () {
  this.timeout(300_000);
  const rng = new Rng(11);
  before(() => initBackend('native', silentLogger));

  it('FP8 / FP4 operands are the per-tensor fake quantization of the golden-tested formats; none is the identity', () => {
    const x = randn(rng, 7 * 13, 3);
    for (const [format, name] of [
      ['fp8-e4m3', 'e4m3'],
      ['fp8-e5m2', 'e5m2'],
      ['fp4-e2m1', 'e2m1'],
    ] as const) {
      const fmt = LOWBIT_FORMATS[name];
      expect([...fakeQuantGemmOperand(x, 7, 13, format)]).to.deep.equal([...fakeQuantLowBit(x, fmt, lowBitTensorScale(x, fmt))]);
    }
    expect(fakeQuantGemmOperand(x, 7, 13, 'none')).to.equal(x);
  });

  it('NVFP4 rows of 20: each row is blocked as if padded with zero columns to 32', () => {
    const x = randn(rng, 3 * 20);
    const padded = new Float32Array(3 * 32);
    for (let r = 0; r < 3; r++) padded.set(x.subarray(r * 20, (r + 1) * 20), r * 32);
    const want = fakeQuantNvfp4(padded);
    const got = fakeQuantGemmOperand(x, 3, 20, 'nvfp4');
    for (let r = 0; r < 3; r++) expect([...got.subarray(r * 20, (r + 1) * 20)]).to.deep.equal([...want.subarray(r * 32, r * 32 + 20)]);
    expect(got.some((v, i) => v !== x[i])).to.equal(true);
  });

  for (const [fwd, bwd] of [
    ['fp8-e4m3', 'fp8-e5m2'],
    ['fp4-e2m1', 'fp8-e4m3'],
    ['nvfp4', 'nvfp4'],
    ['none', 'none'],
  ] as const) {
    it(`forward ${fwd}, backward ${bwd}: y = Xq Wq^T, dX = dYq Wq, dW = dYq^T Xq (odd sizes)`, () => {
      const [m, k, n] = [5, 19, 11];
      const x = randn(rng, m * k);
      const w = randn(rng, n * k, 0.2);
      const g = randn(rng, m * n); // dL/dy
      const lin = lowBitLinear({ forward: fwd as GemmFormat, backward: bwd as GemmFormat });
      const xt = tf.tensor2d(x, [m, k]);
      const wt = tf.tensor2d(w, [n, k]);
      const gt = tf.tensor2d(g, [m, n]);
      const y = lin(xt, wt);
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lin(a as tf.Tensor2D, b as tf.Tensor2D), gt)))([xt, wt]);
      const xq = fakeQuantGemmOperand(x, m, k, fwd);
      const wq = fakeQuantGemmOperand(w, n, k, fwd);
      const gq = fakeQuantGemmOperand(g, m, n, bwd);
      expect(maxRel(y.dataSync(), matmulT(xq, wq, m, k, n))).to.be.below(1e-5);
      expect(maxRel((dx as tf.Tensor).dataSync(), matmulT(gq, transpose(wq, n, k), m, n, k))).to.be.below(1e-5);
      expect(maxRel((dw as tf.Tensor).dataSync(), matmulT(transpose(gq, m, n), transpose(xq, m, k), n, m, k))).to.be.below(1e-5);
      tf.dispose([xt, wt, gt, y, dx as tf.Tensor, dw as tf.Tensor]);
    });
  }

  it('applyLowBitGemm covers the seven projections of every layer and refuses a ternary student', () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    expect(applyLowBitGemm(model, { forward: 'fp8-e4m3', backward: 'fp8-e5m2' })).to.equal(7 * model.config.numLayers);
    model.dispose();
    const student = loadModel('test/fixtures/tiny-qwen3').model;
    prepareStudent(student, { subln: 'none', weightQuant: 'absmean' });
    expect(() => applyLowBitGemm(student, { forward: 'fp8-e4m3', backward: 'none' })).to.throw(ArgumentError, /full-precision stages/);
    student.dispose();
  });

  it('the teacher stage trains end to end with FP8 GEMMs (config lowbitGemm), its losses close to full precision', async () => {
    const root = mkdtempSync(join(tmpdir(), 'bitdistill-lowbit-'));
    try {
      const losses: Record<string, number[]> = {};
      for (const fwd of ['none', 'fp8-e4m3'] as const) {
        const config = validateConfig({
          name: fwd,
          backend: 'native',
          outputDir: root,
          model: { path: 'models/stories260K', maxSeqLen: 48 },
          task: { name: 'sst2', train: 'datasets/glue/SST-2/train.tsv', dev: 'datasets/glue/SST-2/dev.tsv', trainLimit: 32, devLimit: 8 },
          stages: ['teacher'],
          optim: { lr: 1e-3, batchSize: 8, maxSteps: 4 },
          log: { every: 1 },
          lowbitGemm: { forward: fwd, backward: fwd === 'none' ? 'none' : 'fp8-e5m2' },
        });
        const [row] = await runTraining(config, formatConfig(config), { resume: 'none', logger: silentLogger });
        expect(row?.steps).to.equal(4);
        losses[fwd] = readFileSync(join(root, fwd, 'teacher', 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { type: string; loss?: number })
          .filter((r) => r.type === 'train')
          .map((r) => r.loss as number);
      }
      const [a, b] = [losses['none'] as number[], losses['fp8-e4m3'] as number[]];
      expect(a.length).to.equal(4);
      expect(b.every((v) => Number.isFinite(v))).to.equal(true);
      expect(b.some((v, i) => v !== a[i])).to.equal(true); // the rounding is really there
      for (let i = 0; i < a.length; i++) expect(Math.abs((b[i] as number) - (a[i] as number)), `step ${i + 1}`).to.be.below(0.05 * (a[i] as number));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
