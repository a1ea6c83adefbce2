/**
 * The one-call decoder layer's wrapper (its arithmetic is tested bit for bit against the runtime's op-by-op path in
 * packages/runtime/test/fused-layer.test.ts) and argmax, native against its TypeScript twin on the cases where a
 * vectorised max could differ from the scalar scan: ties, NaN, infinities, tails that are not 16 wide.
 */
import { expect } from 'chai';
import { ArgumentError, Rng, ShapeError } from '@bitdistill/core';
import { argmax, argmaxTs, decodeLayerWeights, nativeStatus, repackTernary, type DecodeLayerSpec } from '../src/index.ts';
import { nativeAddon } from '../src/native.ts';
import { packHF, randomF32, randomTernary } from './util.ts';

describe('argmax (greedy decoding)', () => {
  const rng = new Rng(4);
  const cases: [string, Float32Array][] = [
    ['random, 151,936 values', randomF32(rng, 151936)],
    ['one value', Float32Array.of(-3)],
    ['the maximum in a 17-wide tail', Float32Array.from({ length: 33 }, (_, i) => (i === 32 ? 9 : i % 7))],
    ['ties: the first wins', Float32Array.of(1, 5, 2, 5, 5)],
    ['NaN elsewhere never wins', Float32Array.of(1, Number.NaN, 3, Number.NaN)],
    ['a NaN at 0 stays', Float32Array.of(Number.NaN, 1, 2)],
    ['all -Infinity', new Float32Array(40).fill(-Infinity)],
    ['+Infinity', Float32Array.of(0, Infinity, 1, Infinity)],
    ['-0 and 0 tie', Float32Array.of(-0, 0)],
  ];
  for (const [name, x] of cases) it(`${name}: the scalar scan's index`, () => expect(argmax(x)).to.equal(argmaxTs(x)));
});

describe('decodeLayerWeights', () => {
  it('checks the projections against the shape it is given', function () {
    if (!nativeStatus().native) this.skip();
    const rng = new Rng(2);
    const C = 16;
    const I = 32;
    const ternary = (rows: number, cols: number) => repackTernary(packHF(randomTernary(rng, rows * cols), rows, cols), rows, cols);
    const lin = (rows: number, cols: number) => ({ w: ternary(rows, cols), scale: 0.1, bias: null, subln: null });
    const spec: DecodeLayerSpec = {
      hidden: C,
      heads: 2,
      kvHeads: 1,
      headDim: 8,
      intermediate: I,
      rmsNormEps: 1e-5,
      sublnEps: 1e-8,
      attnScale: 1 / Math.sqrt(8),
      inputNorm: new Float32Array(C).fill(1),
      postNorm: new Float32Array(C).fill(1),
      qNorm: null,
      kNorm: null,
      proj: { q_proj: lin(16, C), k_proj: lin(8, C), v_proj: lin(8, C), o_proj: lin(C, 16), gate_proj: lin(I, C), up_proj: lin(I, C), down_proj: lin(C, I) },
      qkv: null,
      gateUp: null,
    };
    const layer = decodeLayerWeights(spec);
    expect(layer).to.not.equal(null);
    const addon = nativeAddon();
    const f = (n: number) => new Float32Array(n);
    expect(() => addon?.decodeLayer(layer?.handle, f(16), 1, f(8), f(8), 2 ** 31, 0, f(8), f(8))).to.throw(ArgumentError, /cache too small/);
    expect(() => addon?.decodeLayer(layer?.handle, f(16), 1, f(8 * 4), f(8 * 4), 4, 4, f(8), f(8))).to.throw(ArgumentError, /start \+ T exceeds/);
    expect(() => addon?.decodeLayer(layer?.handle, f(15), 1, f(8 * 4), f(8 * 4), 4, 0, f(8), f(8))).to.throw(ArgumentError, /x is not/);
    expect(() => decodeLayerWeights({ ...spec, proj: { ...spec.proj, k_proj: lin(16, C) } })).to.throw(ShapeError, /k_proj is not a \[8, 16\]/);
    expect(() => decodeLayerWeights({ ...spec, qNorm: new Float32Array(8) })).to.throw(ShapeError, /q_norm/);
  });

  it('checks its arguments again natively: sizes that do not fit are E_ARGUMENT errors, not reads out of bounds', function () {
    const addon = nativeAddon();
    if (addon === null) this.skip();
    const f = (n: number) => new Float32Array(n);
    const u8 = new Uint8Array(64);
    const proj = Array.from({ length: 7 }, () => [u8, null, null]);
    const dims = Float64Array.of(16, 2, 1, 8, 32, 1e-5, 1e-8, 0.35);
    const expectArgError = (call: () => unknown, re: RegExp) => {
      try {
        call();
        expect.fail('accepted');
      } catch (e) {
        expect(e, String(e)).to.be.instanceOf(ArgumentError);
        expect((e as Error).message).to.match(re);
      }
    };
    expectArgError(
      () => addon.decodeLayerInit(dims, [f(16), f(16), null, null], proj, new Float64Array(7).fill(0.1), [null, null]),
      /projection weights too small/,
    );
    expectArgError(
      () => addon.decodeLayerInit(dims, [f(15), f(16), null, null], proj, new Float64Array(7).fill(0.1), [null, null]),
      /norm gain has the wrong length/,
    );
    expectArgError(() => addon.decodeLayer({}, f(16), 1, f(8), f(8), 1, 0, f(8), f(8)), /not a handle/);
  });
});
