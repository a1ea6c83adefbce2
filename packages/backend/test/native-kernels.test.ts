// The native kernels against the stock kernels of each backend they serve (tfjs wasm; tfjs cpu under the native engine): every replaced kernel on shapes that cover its cases, then a
// whole training graph (stories260K as a ternary student with SubLN): loss and every gradient must agree
// within float32 tolerance, and the tensor count must stay flat.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '@bitdistill/core';
import { initBackend } from '@bitdistill/backend';
import { nativeStatus } from '@bitdistill/kernels-cpu/engine';
import { loadModel, rmsNorm } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { activeBackend } from '../src/backend.ts';
import { NATIVE_HOSTS, NATIVE_KERNEL_NAMES, nativeKernelsEnabled, setNativeKernels } from '../src/native-kernels.ts';

type Outputs = { values: Float32Array | Int32Array | Uint8Array; shape: number[]; dtype: string }[];

/** Runs f with the native kernels on or off and returns every output's data. */
function run(native: boolean, f: () => tf.Tensor | tf.Tensor[]): Outputs {
  setNativeKernels(native);
  return tf.tidy(() => {
    const r = f();
    return (Array.isArray(r) ? r : [r]).map((t) => ({ values: t.dataSync() as Float32Array | Int32Array | Uint8Array, shape: [...t.shape], dtype: t.dtype }));
  });
}

/** Native vs stock: same shapes and dtypes; values within rtol * (1 + |stock|) (0: bit-identical). Inputs must be made outside f. */
function expectSame(what: string, f: () => tf.Tensor | tf.Tensor[], rtol = 0): void {
  const stock = run(false, f);
  const native = run(true, f);
  expect(native.length, what).to.equal(stock.length);
  stock.forEach((s, j) => {
    const n = native[j] as Outputs[number];
    expect(n.shape, `${what} output ${j} shape`).to.deep.equal(s.shape);
    expect(n.dtype, `${what} output ${j} dtype`).to.equal(s.dtype);
    for (let i = 0; i < s.values.length; i++) {
      const a = n.values[i] as number;
      const b = s.values[i] as number;
      if (Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)) || a === b) continue;
      if (!(Math.abs(a - b) <= rtol * (1 + Math.abs(b)))) expect.fail(`${what} output ${j} element ${i}: native ${a}, stock ${b}`);
    }
  });
}

for (const host of NATIVE_HOSTS)
  describe(`native kernels vs stock kernels on ${host}`, function () {
    // The stock kernels are tfjs wasm's on wasm and tfjs cpu's on the native engine (its storage is cpu's).
    const other = host === 'wasm' ? 'cpu' : 'wasm';
    const rng = new Rng(5);
    const rand = (shape: number[], scale = 1): tf.Tensor =>
      tf.tensor(
        Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * scale),
        shape,
      );
    const randInt = (shape: number[], n: number): tf.Tensor =>
      tf.tensor(
        Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.int(n)),
        shape,
        'int32',
      );

    before(async function () {
      // 'auto' first: the cached BackendInfo then records the skipped candidates, as segment-sum.test.ts expects.
      await initBackend('auto');
      if (!nativeStatus().native) this.skip();
      const info = await initBackend(host);
      expect(info.name).to.equal(host);
      expect(info.provider).to.match(host === 'wasm' ? /^@tensorflow\/tfjs-backend-wasm \+ @bitdistill\/kernels-cpu$/ : /native engine/);
      expect(info.nativeKernels?.active).to.equal(true);
      expect(nativeKernelsEnabled()).to.equal(true);
      expect(activeBackend()?.nativeKernels?.kernels).to.include('BatchMatMul');
    });
    after(() => setNativeKernels(true, host));

    it('BatchMatMul: ranks 2-4, every transpose, batch broadcasting', () => {
      const cases: [number[], number[]][] = [
        [
          [7, 5],
          [5, 9],
        ],
        [
          [64, 300],
          [300, 70],
        ],
        [
          [32, 17, 8],
          [32, 8, 19],
        ],
        [
          [4, 6, 5],
          [5, 3],
        ],
        [
          [6, 5],
          [3, 5, 4],
        ],
        [
          [3, 1, 0],
          [3, 0, 2],
        ],
      ];
      for (const [sa, sb] of cases) {
        for (const ta of [false, true]) {
          for (const tb of [false, true]) {
            const a = rand(ta ? [...sa.slice(0, -2), sa[sa.length - 1] as number, sa[sa.length - 2] as number] : sa);
            const b = rand(tb ? [...sb.slice(0, -2), sb[sb.length - 1] as number, sb[sb.length - 2] as number] : sb);
            // Sums of k products of N(0, 1) values in another order: error ~ k * 2^-24 * |terms|.
            expectSame(`matMul ${sa} x ${sb} tA=${ta} tB=${tb}`, () => tf.matMul(a, b, ta, tb), 2e-7 * (a.shape[ta ? a.rank - 2 : a.rank - 1] as number));
          }
        }
      }
      expect(() => tf.matMul(rand([3, 4]), rand([5, 6]))).to.throw(/inner shapes/);
      // Full broadcasting ([2, 1] x [1, 3] batch dims), which stock wasm gets wrong (it returns 3 matrices, not
      // 6): against a float64 loop.
      const a = rand([2, 1, 6, 5]);
      const b = rand([1, 3, 5, 4]);
      const got = tf.tidy(() => tf.matMul(a, b));
      expect(got.shape).to.deep.equal([2, 3, 6, 4]);
      const [av, bv, gv] = [a.dataSync(), b.dataSync(), got.dataSync()];
      for (let i = 0; i < 2; i++) {
        for (let j = 0; j < 3; j++) {
          for (let r = 0; r < 6; r++) {
            for (let c = 0; c < 4; c++) {
              let want = 0;
              for (let k = 0; k < 5; k++) want += (av[i * 30 + r * 5 + k] as number) * (bv[j * 20 + k * 4 + c] as number);
              expect(gv[((i * 3 + j) * 6 + r) * 4 + c]).to.be.closeTo(want, 1e-5);
            }
          }
        }
      }
      got.dispose();
    });

    it('binary ops, compares and casts with broadcasting', () => {
      const pairs: [number[], number[]][] = [
        [
          [33, 65],
          [33, 65],
        ],
        [[300, 257], []],
        [[64, 130], [130]],
        [
          [64, 130],
          [64, 1],
        ],
        [
          [8, 1, 33],
          [1, 5, 1],
        ],
        [[0, 4], [4]],
      ];
      for (const [sa, sb] of pairs) {
        const a = rand(sa);
        const b = rand(sb);
        for (const op of [tf.add, tf.sub, tf.mul, tf.div, tf.maximum, tf.minimum]) expectSame(`${op.name} ${sa} x ${sb}`, () => op(a, b));
        // Small whole numbers, so that equal pairs are common.
        const ar = tf.round(tf.mul(a, 2));
        const br = tf.round(tf.mul(b, 2));
        for (const op of [tf.equal, tf.notEqual, tf.less, tf.lessEqual, tf.greater, tf.greaterEqual]) {
          expectSame(`${op.name} ${sa} x ${sb}`, () => op(ar, br));
          const [ai, bi] = [randInt(sa, 3), randInt(sb, 3)];
          expectSame(`${op.name} int32 ${sa} x ${sb}`, () => op(ai, bi));
        }
      }
      // The cross-entropy's one-hot: labels [B, T, 1] == range(V).
      const labels = randInt([4, 16], 50);
      expectSame('equal labels x range', () => tf.cast(tf.equal(tf.expandDims(labels, -1), tf.range(0, 50, 1, 'int32')), 'float32'));
      const [i1, i2, i3, f1, f2] = [randInt([40, 50], 1000), randInt([5, 6], 9), randInt([6], 9), rand([3, 4]), rand([30, 40], 100)];
      expectSame('cast int32 -> float32', () => tf.cast(i1, 'float32'));
      expectSame('cast float32 -> float32, identity', () => [tf.cast(f1, 'float32'), tf.clone(f1)]);
      expectSame('cast float32 -> int32 (stock path)', () => tf.cast(f2, 'int32'));
      expectSame('int32 add (stock path)', () => tf.add(i2, i3));
    });

    it('unary ops within a few ulps', () => {
      const x = tf.concat([rand([5000], 10), tf.tensor1d([0, -0, 0.5, 1.5, 2.5, -2.5, 88, -88, -1e9, 1e9])]);
      const pos = tf.add(tf.abs(x), 1e-3);
      for (const op of [tf.exp, tf.neg, tf.abs, tf.square, tf.sigmoid, tf.round, tf.reciprocal]) expectSame(op.name, () => op(x), 1e-6);
      for (const op of [tf.log, tf.sqrt, tf.rsqrt]) expectSame(op.name, () => op(pos), 1e-6);
      expectSame('clipByValue', () => tf.clipByValue(x, -1, 1));
    });

    it('reductions over any axes, keepDims; transpose, concat, split, gather', () => {
      const x = rand([6, 7, 8, 9]);
      const axesList: (number | number[])[] = [-1, 0, 1, [1, 2], [0, 1, 2, 3], [2, 3], [0, 2]];
      for (const axes of axesList) {
        for (const keep of [false, true]) {
          for (const op of [tf.sum, tf.mean, tf.max, tf.min]) expectSame(`${op.name} axes ${axes} keepDims ${keep}`, () => op(x, axes, keep), 1e-5);
        }
      }
      for (const perm of [
        [0, 2, 1, 3],
        [3, 2, 1, 0],
        [1, 0, 2, 3],
        [0, 1, 3, 2],
        [2, 0, 3, 1],
        [0, 1, 2, 3],
      ])
        expectSame(`transpose ${perm}`, () => tf.transpose(x, perm));
      // Permutations that move only size-1 axes share the data (no copy): values and shapes as stock.
      const x1 = rand([5, 1, 4, 1]);
      for (const perm of [
        [1, 0, 2, 3],
        [0, 2, 1, 3],
        [3, 0, 1, 2],
        [0, 1, 2, 3],
      ])
        expectSame(`transpose (size-1 axes) ${perm}`, () => tf.transpose(x1, perm));
      const [ti, tb] = [randInt([30, 20], 100), rand([3, 5])];
      expectSame('transpose int32', () => tf.transpose(ti));
      expectSame('transpose bool (stock path)', () => tf.transpose(tf.greater(tb, 0)));
      for (const axis of [0, 1, 3, -1]) {
        expectSame(`concat axis ${axis}`, () => tf.concat([x, tf.mul(x, 2)], axis));
        expectSame(`split axis ${axis}`, () => tf.split(x, [2, 1, (x.shape[axis < 0 ? 3 : axis] as number) - 3], axis));
      }
      const [tx, ti2, tb2] = [rand([3, 1, 4]), randInt([2, 3], 9), tf.greater(rand([2, 2]), 0)];
      expectSame('tile', () => tf.tile(tx, [2, 5, 3]));
      expectSame('broadcastTo', () => tf.broadcastTo(tx, [2, 3, 6, 4]));
      expectSame('tile int32', () => tf.tile(ti2, [3, 1]));
      expectSame('tile bool (stock path)', () => tf.tile(tb2, [2, 2]));
      const [table, rows, small, cols] = [rand([50, 16]), randInt([7, 9], 50), rand([5, 16]), randInt([4], 16)];
      expectSame('gather rows', () => tf.gather(table, rows));
      expectSame('gather axis 1 (stock path)', () => tf.gather(small, cols, 1));
      expect(() => tf.gather(rand([5, 3]), tf.tensor1d([7], 'int32'))).to.throw(/not in \[0, 4\]/);
    });

    it('softmax over the last axis, and the embedding gradient (UnsortedSegmentSum)', () => {
      for (const shape of [
        [32, 128, 128],
        [7, 1],
        [3, 0],
        [5, 4097],
      ]) {
        const x = rand(shape, 4);
        expectSame(`softmax ${shape}`, () => tf.softmax(x), 1e-6);
        expectSame(`softmax grad ${shape}`, () => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.softmax(a), x)))(x), 1e-5);
      }
      const table = rand([50, 16]);
      const ids = randInt([7, 9], 50);
      const dy = rand([7, 9, 16]);
      expectSame('gather gradient', () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), dy)))(table), 1e-6);
    });

    it('Sum and Mean gradients (broadcast dy instead of ones) are bit-identical to stock', () => {
      const x = rand([4, 6, 50]);
      for (const axes of [[2], [0, 2], [1], [0, 1, 2]]) {
        // dy = c, a fixed tensor of the reduced shape: the gradient is c broadcast (Sum) or c / count (Mean).
        const c = rand(x.shape.map((n, i) => (axes.includes(i) ? 1 : n)));
        expectSame(`grad of sum over ${axes}`, () => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.sum(a, axes, true), c)))(x));
        expectSame(`grad of mean over ${axes}`, () => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.mean(a, axes, true), c)))(x));
      }
    });

    it('fused RMSNorm: value and gradients equal the composite', () => {
      const x = rand([64, 48]);
      const g = rand([48]);
      const dy = rand([64, 48]);
      const f = (): tf.Tensor[] => {
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, b, 1e-5), dy)))([x, g]);
        return [value, ...grads];
      };
      setNativeKernels(true);
      expect(tf.getKernel('BitDistillRmsNorm', host)).to.not.equal(undefined);
      expectSame('rmsNorm value, dx, dgain', f, 1e-5);
      setNativeKernels(false);
      expect(tf.getKernel('BitDistillRmsNorm', host)).to.equal(undefined);
      setNativeKernels(true);
    });

    /**
     * One training graph of stories260K as a student with SubLN: loss and the gradient of every parameter, on
     * the backend given (wasm with or without the native kernels, or tfjs cpu).
     */
    async function studentStep(quantize: boolean, where: 'native' | 'stock' | 'other'): Promise<{ loss: number; grads: Float32Array[]; names: string[] }> {
      const { model } = loadModel('models/stories260K');
      try {
        prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean', quantize });
        const r = new Rng(3);
        const [B, T, V] = [2, 24, model.config.vocabSize];
        const ids = tf.tensor2d(
          Int32Array.from({ length: B * T }, () => r.int(V)),
          [B, T],
          'int32',
        );
        const labels = tf.tensor1d(
          Int32Array.from({ length: B * T }, () => r.int(V)),
          'int32',
        );
        const vars = [...model.params.values()];
        if (where === 'other') await initBackend(other);
        else setNativeKernels(where === 'native');
        try {
          return tf.tidy(() => {
            const { value, grads } = tf.variableGrads(() => {
              const logits = tf.reshape(model.forward(ids).logits, [B * T, V]);
              const onehot = tf.cast(tf.equal(tf.expandDims(labels, -1), tf.range(0, V, 1, 'int32')), 'float32');
              return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), onehot), -1))) as tf.Scalar;
            }, vars);
            return {
              loss: value.dataSync()[0] as number,
              grads: vars.map((v) => (grads[v.name] as tf.Tensor).dataSync() as Float32Array),
              names: [...model.params.keys()],
            };
          });
        } finally {
          await tf.setBackend(host);
          setNativeKernels(true);
          ids.dispose();
          labels.dispose();
        }
      } finally {
        model.dispose();
      }
    }

    /** sqrt(sum of squared differences / sum of squares) over all gradients. */
    function relL2(a: Float32Array[], b: Float32Array[]): number {
      let num = 0;
      let den = 0;
      a.forEach((g, j) => {
        const h = b[j] as Float32Array;
        for (let i = 0; i < g.length; i++) {
          num += ((g[i] as number) - (h[i] as number)) ** 2;
          den += (g[i] as number) ** 2;
        }
      });
      return Math.sqrt(num / den);
    }

    it('stories260K student with SubLN, dense linears: loss and every gradient equal the stock kernels within float32 noise', async () => {
      const stock = await studentStep(false, 'stock');
      const native = await studentStep(false, 'native');
      expect(native.loss).to.be.closeTo(stock.loss, 1e-6 * Math.abs(stock.loss));
      stock.grads.forEach((s, j) => {
        const n = native.grads[j] as Float32Array;
        let maxErr = 0;
        let scale = 0;
        for (let i = 0; i < s.length; i++) {
          maxErr = Math.max(maxErr, Math.abs((n[i] as number) - (s[i] as number)));
          scale = Math.max(scale, Math.abs(s[i] as number));
        }
        expect(maxErr, `gradient of ${stock.names[j]} (scale ${scale})`).to.be.at.most(1e-4 * scale);
      });
    });

    it(`stories260K ternary student: native deviates from the stock kernels no more than tfjs ${other} does`, async () => {
      // Fake quantization is discontinuous: a last-bit difference before round() flips an int8 or ternary code
      // now and then, so no two backends agree to float32 noise here (stock wasm vs tfjs cpu neither).
      const stock = await studentStep(true, 'stock');
      const native = await studentStep(true, 'native');
      const cpu = await studentStep(true, 'other');
      const baseline = relL2(stock.grads, cpu.grads);
      expect(Math.abs(native.loss - stock.loss)).to.be.at.most(Math.max(3 * Math.abs(cpu.loss - stock.loss), 1e-5 * stock.loss));
      expect(relL2(stock.grads, native.grads)).to.be.at.most(Math.max(3 * baseline, 1e-4));
      expect(baseline).to.be.below(0.05);
    });

    it('the tensor count stays flat across training steps with the native kernels', () => {
      const { model } = loadModel('models/stories260K');
      prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
      const ids = randInt([2, 16], model.config.vocabSize) as tf.Tensor2D;
      const vars = [...model.params.values()];
      const step = (): void => {
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.forward(ids).logits)) as tf.Scalar, vars);
          for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name] as tf.Tensor, 1e-3)));
          value.dataSync();
        });
      };
      step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) step();
      expect(tf.memory().numTensors).to.equal(before);
      ids.dispose();
      model.dispose();
    });

    it('BitDistillGradMatMul with a sum c: c + a^T b, into the storage of c only when nothing else holds it', () => {
      setNativeKernels(true);
      const a = rand([9, 13]);
      const b = rand([9, 7]);
      const c0 = rand([13, 7]);
      const want = tf.tidy(() => tf.add(c0, tf.matMul(a, b, true, false)).dataSync() as Float32Array);
      const grad = (c: tf.Tensor) =>
        tf.engine().runKernel('BitDistillGradMatMul', { a, b, c }, { transposeA: true, transposeB: false } as unknown as tf.NamedAttrMap) as tf.Tensor;
      const close = (got: Float32Array | Int32Array | Uint8Array, what: string) =>
        got.forEach((v, i) => expect(Math.abs(v - (want[i] as number)), `${what} [${i}]`).to.be.below(1e-5 * (1 + Math.abs(want[i] as number))));
      const data = (t: tf.Tensor) => (tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(t.dataId).values;
      // Held only by the caller: summed in place, the result shares c's storage.
      const sole = c0.clone();
      const sole2 = tf.add(sole, 0);
      sole.dispose();
      const storage = host === 'native' ? data(sole2) : null;
      const r1 = grad(sole2);
      close(r1.dataSync(), 'sole');
      if (host === 'native') expect(data(r1), 'same storage').to.equal(storage);
      sole2.dispose();
      r1.dispose();
      // Shared (a clone holds the same data): c is left as it was, the sum goes into new storage.
      const shared = c0.clone();
      const before = Float32Array.from(c0.dataSync());
      const r2 = grad(shared);
      close(r2.dataSync(), 'shared');
      expect(Array.from(c0.dataSync()), 'the shared c is untouched').to.deep.equal(Array.from(before));
      tf.dispose([shared, r2, a, b, c0]);
    });

    it('setNativeKernels(false) restores every stock kernel, (true) puts the native ones back', () => {
      setNativeKernels(true);
      const nativeFns = new Map(NATIVE_KERNEL_NAMES.map((n) => [n, tf.getKernel(n, host)?.kernelFunc]));
      setNativeKernels(false);
      for (const name of NATIVE_KERNEL_NAMES) {
        const k = tf.getKernel(name, host);
        // Kernels tfjs lacks on this backend (ours only) are removed; the others are tfjs's again.
        if (name.startsWith('BitDistill') || (host === 'wasm' && name === 'UnsortedSegmentSum' && k === undefined)) expect(k, name).to.equal(undefined);
        else expect(k !== undefined && k.kernelFunc !== nativeFns.get(name), name).to.equal(true);
      }
      setNativeKernels(true);
      for (const name of NATIVE_KERNEL_NAMES) expect(tf.getKernel(name, host)?.kernelFunc, name).to.equal(nativeFns.get(name));
    });
  });
