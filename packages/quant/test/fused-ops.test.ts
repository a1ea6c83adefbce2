// The fused training ops on the native engine (issue 15) against their op-by-op twins and an independent loop
// reference: the student's BitLinear (forward value, dx, dW) and SwiGLU (value, dgate, dup) on random shapes
// with odd sizes, then a whole student training graph of stories260K with the fused ops on and off, and the
// tensor count across steps.
// Tolerances: BitLinear forward within 1e-6 relative (~8 float32 ulps) of the twin (the twin's scale d is a
// float32 tf.mean, a few ulps off; ours is a float64 sum rounded once; the integer product is exact on both
// sides) and within 1e-6 of max|y| of the float64 loop reference; gradients within 1e-5 of max|twin| (float32 GEMMs in different blockings); SwiGLU value and
// gradients within 1e-6 (1 + |twin|).
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { matmulF32Ref, nativeStatus } from '@bitdistill/kernels-cpu/engine';
import { int8QuantRef, ternaryQuantRef } from '@bitdistill/arch';
import { fusedKernel, loadModel, setFusedOps, swiglu } from '@bitdistill/model';
import { bitMatmulInt, prepareStudent } from '@bitdistill/quant';
import { bitMatmulIntTwin } from '../src/quantizers.ts';

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [5, 7, 3],
  [33, 65, 17],
  [128, 256, 96],
  [129, 300, 257],
  [40, 777, 31], // k not a multiple of 4, rows past a 12-row block of the int8 GEMM (avx512vnni / amx)
];

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

function expectClose(got: Float32Array, want: Float32Array, tol: (w: number) => number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i] as number, want[i] as number];
    if (!(Math.abs(g - w) <= tol(w))) expect.fail(`${what}[${i}]: fused ${g}, twin ${w}, tolerance ${tol(w)}`);
  }
}

describe('fused training ops on the native engine', () => {
  const rng = new Rng(21);
  const rand = (shape: number[], scale = 1) =>
    tf.tensor(
      Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * scale),
      shape,
    );

  before(async function () {
    await initBackend('native');
    if (!nativeStatus().native) this.skip();
  });
  after(() => setFusedOps(true));

  it('the native engine registers the fused kernels, and setFusedOps(false) routes to the twins', () => {
    expect(fusedKernel('BitDistillBitLinear')).to.equal(true);
    expect(fusedKernel('BitDistillSwiglu')).to.equal(true);
    expect(fusedKernel('BitDistillNormBitLinear')).to.equal(true);
    setFusedOps(false);
    expect(fusedKernel('BitDistillBitLinear')).to.equal(false);
    setFusedOps(true);
  });

  for (const mode of ['absmean', 'perRow'] as const) {
    it(`bitLinear (${mode}): value and gradients equal the op-by-op twin; value equals the float64 loop reference`, () => {
      for (const [m, k, n] of SHAPES) {
        const x = rand([m, k]);
        const w = rand([n, k], 0.02);
        const dy = rand([m, n]);
        const what = `${mode} m=${m} k=${k} n=${n}`;
        const run = (f: typeof bitMatmulInt) =>
          tf.tidy(() => {
            const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a as tf.Tensor2D, b as tf.Tensor2D, mode))([x, w], dy);
            return [f(x as tf.Tensor2D, w as tf.Tensor2D, mode), ...g].map((t) => t.dataSync() as Float32Array);
          });
        const [y, dx, dw] = run(bitMatmulInt) as [Float32Array, Float32Array, Float32Array];
        const [yT, dxT, dwT] = run(bitMatmulIntTwin) as [Float32Array, Float32Array, Float32Array];
        expectClose(y, yT, (v) => 1e-6 * Math.abs(v) + 1e-30, `y ${what}`);
        const [tx, tw] = [1e-5 * maxAbs(dxT), 1e-5 * maxAbs(dwT)];
        expectClose(dx, dxT, () => tx, `dx ${what}`);
        expectClose(dw, dwT, () => tw, `dw ${what}`);
        // Independent reference: the fake-quantized operands of packages/quant's loop quantizers, float64 products.
        const xq = int8QuantRef(x.dataSync() as Float32Array, k);
        const wq = ternaryQuantRef(w.dataSync() as Float32Array, k, mode).values;
        const ref = Float32Array.from(matmulF32Ref(xq, wq, m, k, n, false, true));
        const tr = 1e-6 * maxAbs(ref) + 1e-30;
        expectClose(y, ref, () => tr, `y vs reference ${what}`);
        tf.dispose([x, w, dy]);
      }
    });
  }

  it('swiglu: value and gradients equal the op-by-op composite', () => {
    for (const shape of [[1], [7, 3], [129, 688]]) {
      const g = rand(shape, 3);
      const u = rand(shape);
      const dy = rand(shape);
      const run = (on: boolean) => {
        setFusedOps(on);
        try {
          return tf.tidy(() => [swiglu(g, u), ...tf.grads((a: tf.Tensor, b: tf.Tensor) => swiglu(a, b))([g, u], dy)].map((t) => t.dataSync() as Float32Array));
        } finally {
          setFusedOps(true);
        }
      };
      const fused = run(true);
      const twin = run(false);
      ['y', 'dgate', 'dup'].forEach((name, i) =>
        expectClose(fused[i] as Float32Array, twin[i] as Float32Array, (v) => 1e-6 * (1 + Math.abs(v)), `${name} [${shape}]`),
      );
      tf.dispose([g, u, dy]);
    }
  });

  /** Loss and every gradient of one CE step of stories260K as a ternary student with SubLN. */
  async function studentStep(fused: boolean): Promise<{ loss: number; grads: Float32Array[]; tensorsAfter: number[]; kernels: Set<string> }> {
    const { model } = loadModel('models/stories260K');
    const prev = setFusedOps(fused);
    try {
      prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
      const r = new Rng(3);
      const [B, T, V] = [2, 24, model.config.vocabSize];
      const ids = tf.tensor2d(
        Int32Array.from({ length: B * T }, () => r.int(V)),
        [B, T],
        'int32',
      );
      const labels = tf.oneHot(
        tf.tensor1d(
          Int32Array.from({ length: B * T }, () => r.int(V)),
          'int32',
        ),
        V,
      );
      const vars = [...model.params.values()];
      const step = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(
            () => tf.losses.softmaxCrossEntropy(labels, tf.reshape(model.forward(ids).logits, [B * T, V])) as tf.Scalar,
            vars,
          );
          return { loss: value.dataSync()[0] as number, grads: vars.map((v) => (grads[v.name] as tf.Tensor).dataSync() as Float32Array) };
        });
      const first = step();
      const tensorsAfter: number[] = [];
      for (let i = 0; i < 3; i++) {
        step();
        tensorsAfter.push(tf.memory().numTensors);
      }
      // The kernels a step runs (names only).
      const kernels = new Set((await tf.profile(() => void step())).kernelNames);
      tf.dispose([ids, labels]);
      return { ...first, tensorsAfter, kernels };
    } finally {
      setFusedOps(prev);
      model.dispose();
    }
  }

  it('stories260K ternary student: loss and every gradient with the fused ops equal the twins; tensor count flat', async () => {
    const fused = await studentStep(true);
    const twin = await studentStep(false);
    // allnorm SubLN: every projection runs its norm inside the fused BitLinear, both ways.
    expect([...fused.kernels]).to.include.members(['BitDistillNormBitLinear', 'BitDistillNormBitLinearGrad']);
    expect([...twin.kernels]).not.to.include('BitDistillNormBitLinear');
    expect(fused.loss).to.be.closeTo(twin.loss, 1e-4 * Math.abs(twin.loss));
    // A code flip at a rounding boundary (float32 vs float64 scale) moves a gradient a little; bound the
    // relative L2 difference of each parameter's gradient.
    fused.grads.forEach((g, i) => {
      const t = twin.grads[i] as Float32Array;
      let num = 0;
      let den = 0;
      for (let j = 0; j < t.length; j++) {
        num += ((g[j] as number) - (t[j] as number)) ** 2;
        den += (t[j] as number) ** 2;
      }
      expect(Math.sqrt(num / Math.max(den, 1e-30)), `gradient ${i}`).to.be.below(1e-3);
    });
    expect(new Set(fused.tensorsAfter).size, `tensors after each step: ${fused.tensorsAfter}`).to.equal(1);
  });
});
