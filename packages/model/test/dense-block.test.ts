// The dense decoder layer as one kernel (BitDistillDenseBlock) where nothing is recorded for a backward pass (a
// frozen teacher's forward, evaluation): bit-identical to the op-by-op forward on the same engine (same native
// calls in the same order), captured q, k, v included; not used while a gradient is being recorded, nor for a
// student's quantized or SubLN layers.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel, type Decoder } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';

const KERNEL = 'BitDistillDenseBlock';

/** Runs f with the dense-block kernel unregistered (the op-by-op layer), then registers it again. */
function withoutKernel<T>(f: () => T): T {
  const config = tf.getKernel(KERNEL, tf.getBackend());
  if (config === undefined) throw new Error(`${KERNEL} is not registered on ${tf.getBackend()}`);
  tf.unregisterKernel(KERNEL, tf.getBackend());
  try {
    return f();
  } finally {
    tf.registerKernel(config);
  }
}

/** f's result and how many times the dense-block kernel ran. */
function counting<T>(f: () => T): { value: T; calls: number } {
  const e = tf.engine() as unknown as { runKernel: (name: string, ...rest: unknown[]) => unknown };
  const runKernel = e.runKernel;
  let calls = 0;
  e.runKernel = function (this: unknown, name: string, ...rest: unknown[]) {
    if (name === KERNEL) calls++;
    return runKernel.call(this, name, ...rest);
  };
  try {
    return { value: f(), calls };
  } finally {
    e.runKernel = runKernel;
  }
}

function forwardAll(model: Decoder, ids: number[][], layer: number): Float32Array[] {
  return tf.tidy(() => {
    const o = model.forward(tf.tensor2d(ids, [ids.length, (ids[0] as number[]).length], 'int32'), { captureLayers: [layer] });
    const c = o.captured.get(layer);
    if (c === undefined) throw new Error('no capture');
    return [o.logits, c.q, c.k, c.v].map((t) => t.dataSync() as Float32Array);
  });
}

const IDS = [
  [1, 403, 407, 261, 378, 300, 42, 17, 99, 5, 8, 301],
  [1, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75],
];

for (const host of ['native', 'wasm'] as const) {
  describe(`dense decoder layer as one kernel (${KERNEL}) on ${host}`, () => {
    before(async function () {
      const info = await initBackend(host);
      if (info.name !== host || tf.getKernel(KERNEL, host) === undefined) this.skip();
    });

    for (const [name, path, layer] of [
      ['stories260K (Llama, GQA, tied head)', 'models/stories260K', 3],
      ['tiny-qwen3 (q/k-norm)', 'test/fixtures/tiny-qwen3', 1],
      ['tiny-qwen2 (q/k/v biases)', 'test/fixtures/tiny-qwen2', 1],
    ] as const) {
      it(`${name}: logits and captured q, k, v bit-identical to the op-by-op layers`, () => {
        const { model } = loadModel(path, { trainable: false });
        const ids = IDS.map((r) => r.map((t) => t % model.config.vocabSize));
        const fused = counting(() => forwardAll(model, ids, layer));
        expect(fused.calls, 'one kernel per layer').to.equal(model.config.numLayers);
        const plain = counting(() => withoutKernel(() => forwardAll(model, ids, layer)));
        expect(plain.calls).to.equal(0);
        fused.value.forEach((a, i) => {
          const b = plain.value[i] as Float32Array;
          expect(a.length).to.equal(b.length);
          expect(
            Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
            `output ${i} bit-identical`,
          ).to.equal(true);
        });
        model.dispose();
      });
    }

    it('is not used while gradients are recorded, nor for a ternary student with SubLN', () => {
      const { model } = loadModel('models/stories260K', { trainable: true });
      const ids = tf.tensor2d(IDS, [2, 12], 'int32');
      const taped = counting(() => tf.variableGrads(() => tf.sum(model.forward(ids).logits) as tf.Scalar, [...model.params.values()]));
      expect(taped.calls).to.equal(0);
      tf.dispose(Object.values(taped.value.grads));
      taped.value.value.dispose();
      prepareStudent(model, { subln: 'allnorm', weightQuant: 'absmean' });
      const student = counting(() => tf.tidy(() => model.forward(ids).logits.dataSync()));
      expect(student.calls).to.equal(0);
      ids.dispose();
      model.dispose();
    });
  });
}
