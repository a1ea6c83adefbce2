import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ArgumentError, Rng } from '@bitdistill/core';
import { LOWBIT_FORMATS, fakeQuantLowBit, fakeQuantNvfp4, lowBitTensorScale, roundToLowBit } from '../src/lowbit.ts';

interface Golden {
  formats: Record<'e4m3' | 'e5m2' | 'e2m1', { values: number[]; x: number[]; y: number[] }>;
  nvfp4: { x: number[]; y: number[] };
}
// Written by scripts/reference/golden_lowbit.py (numpy; values built from bit patterns, rounding by table search).
const golden = JSON.parse(readFileSync(fileURLToPath(new URL('../../../test/golden/lowbit.json', import.meta.url)), 'utf8')) as Golden;

describe('low-bit float formats (FP8 E4M3 / E5M2, FP4 E2M1, NVFP4) against the numpy reference', () => {
  for (const name of ['e4m3', 'e5m2', 'e2m1'] as const) {
    const g = golden.formats[name];
    const fmt = LOWBIT_FORMATS[name];
    it(`${name}: every representable value maps to itself, and ${g.x.length} probes (midpoints, ties, saturation, subnormals) round as numpy does`, () => {
      expect(g.values[g.values.length - 1]).to.equal(fmt.max);
      for (const v of g.values) {
        expect(roundToLowBit(v, fmt), `value ${v}`).to.equal(v);
        expect(roundToLowBit(-v, fmt), `value -${v}`).to.equal(-v);
      }
      g.x.forEach((x, i) => expect(roundToLowBit(x, fmt), `${name}(${x})`).to.equal(g.y[i]));
    });
  }

  it('named cases: ties to even, saturation, subnormals, NaN', () => {
    const { e4m3, e5m2, e2m1 } = LOWBIT_FORMATS;
    expect(roundToLowBit(2.5, e2m1)).to.equal(2); // tie between 2 (code 4) and 3 (code 5): even code
    expect(roundToLowBit(3.5, e2m1)).to.equal(4); // tie between 3 (code 5) and 4 (code 6)
    expect(roundToLowBit(0.25, e2m1)).to.equal(0); // tie between 0 and the subnormal 0.5: 0
    expect(roundToLowBit(0.26, e2m1)).to.equal(0.5);
    expect(roundToLowBit(1e9, e4m3)).to.equal(448);
    expect(roundToLowBit(-470, e4m3)).to.equal(-448);
    expect(roundToLowBit(2 ** -9, e4m3)).to.equal(2 ** -9); // the smallest E4M3 subnormal
    expect(roundToLowBit(2 ** -11, e4m3)).to.equal(0); // a quarter of it
    expect(roundToLowBit(60000, e5m2)).to.equal(57344);
    expect(Number.isNaN(roundToLowBit(Number.NaN, e4m3))).to.equal(true);
  });

  it('stochastic rounding: one of the two neighbours, chosen by u against the position between them; unbiased', () => {
    const { e2m1, e4m3 } = LOWBIT_FORMATS;
    // 2.25 sits a quarter of the way from 2 to 3: up when u < 0.25
    expect(roundToLowBit(2.25, e2m1, 0.2499)).to.equal(3);
    expect(roundToLowBit(2.25, e2m1, 0.25)).to.equal(2);
    expect(roundToLowBit(-2.25, e2m1, 0.1)).to.equal(-3);
    expect(roundToLowBit(3, e2m1, 0)).to.equal(3); // representable values stay put for every u
    expect(roundToLowBit(3, e2m1, 0.999)).to.equal(3);
    expect(roundToLowBit(7, e2m1, 0)).to.equal(6); // saturates
    const rng = new Rng(22);
    for (const x of [0.3, 1.1, 2.7, 5.2, 0.0123]) {
      const fmt = x < 0.1 ? e4m3 : e2m1;
      const n = 20000;
      const q = fakeQuantLowBit(new Float32Array(n).fill(x), fmt, 1, undefined, rng);
      let sum = 0;
      const seen = new Set<number>();
      for (const v of q) {
        sum += v;
        seen.add(v);
      }
      expect(seen.size, `${x}: two neighbours`).to.equal(2);
      const lo = Math.min(...seen);
      const hi = Math.max(...seen);
      // mean within 4 standard errors of x (each draw is lo or hi)
      const se = (hi - lo) / 2 / Math.sqrt(n);
      expect(Math.abs(sum / n - Math.fround(x)), `mean of ${x}`).to.be.below(4 * se);
    }
  });

  it('per-tensor scaling maps the largest |x| to the format maximum', () => {
    const x = Float32Array.of(0.1, -3, 0.02, 1.5);
    const s = lowBitTensorScale(x, LOWBIT_FORMATS.e4m3);
    expect(s).to.equal(Math.fround(3 / 448));
    const q = fakeQuantLowBit(x, LOWBIT_FORMATS.e4m3, s);
    expect(q[1]).to.be.closeTo(-3, 1e-6);
    for (let i = 0; i < x.length; i++) expect(Math.abs((q[i] as number) - (x[i] as number))).to.be.at.most(Math.abs(x[i] as number) / 16 + 1e-7);
    expect(() => fakeQuantLowBit(x, LOWBIT_FORMATS.e4m3, 0)).to.throw(ArgumentError);
  });

  it('NVFP4 (16-value blocks, E4M3 block scales, float32 tensor scale) equals numpy on blocks of very different ranges', () => {
    const y = fakeQuantNvfp4(Float32Array.from(golden.nvfp4.x));
    expect(Array.from(y)).to.deep.equal(golden.nvfp4.y.map((v) => Math.fround(v)));
    expect(() => fakeQuantNvfp4(new Float32Array(15))).to.throw(ArgumentError);
  });
});
