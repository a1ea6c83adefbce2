import { expect } from 'chai';
import { roundHalfEven } from '@bitdistill/arch';
import { Rng, ShapeError } from '@bitdistill/core';
import { applyRope, availableIsas, nativeStatus, quantizeActivations, rmsNorm, ropeTables, setIsa, siluGate, softmax, type Isa } from '../src/index.ts';
import { quantizeActivationsTs } from '../src/ops.ts';
import { randomF32 } from './util.ts';

function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs((got[i] as number) - (want[i] as number));
    if (!(err <= tol * Math.max(1, Math.abs(want[i] as number)))) expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]}`);
  }
}

describe('forward-pass ops', () => {
  const rng = new Rng(11);

  describe('quantizeActivations (per-token absmax int8)', () => {
    it('rounds half to even and scales by 127 / max|x|', () => {
      // max|x| = 127 -> s = 1, so q = round(x): ties go to the even neighbour.
      const x = new Float32Array([127, 0.5, 1.5, -0.5, -2.5, 2.5, 3.49, -126.5]);
      const { q, scale } = quantizeActivations(x, 1, 8);
      expect([...scale]).to.deep.equal([1]);
      expect([...q]).to.deep.equal([127, 0, 2, 0, -2, 2, 3, -126]);
    });

    it('guards an all-zero row with max(., 1e-5)', () => {
      const { q, scale } = quantizeActivations(new Float32Array(4), 1, 4);
      expect([...q]).to.deep.equal([0, 0, 0, 0]);
      expect(scale[0]).to.equal(Math.fround(127 / Math.fround(1e-5)));
    });

    it('matches a straightforward float32 loop per row', () => {
      const rows = 9;
      const dim = 77;
      const x = randomF32(rng, rows * dim).map((v, i) => v * (1 + (i % 5)));
      const { q, scale } = quantizeActivations(x, rows, dim);
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * dim, (r + 1) * dim);
        const m = row.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
        const s = new Float32Array([127 / m])[0] as number;
        expect(scale[r]).to.equal(s);
        for (let i = 0; i < dim; i++) {
          const v = new Float32Array([(row[i] as number) * s])[0] as number;
          const want = Math.max(-128, Math.min(127, roundHalfEven(v)));
          expect(q[r * dim + i], `row ${r} col ${i}`).to.equal(want);
          // Dequantized values stay within half a step of x.
          expect(Math.abs((q[r * dim + i] as number) / s - (row[i] as number))).to.be.at.most(0.5 / s + 1e-6);
        }
      }
    });

    it('native paths and the TypeScript twin agree bit for bit (ties, tiny rows, odd lengths)', () => {
      const initial = nativeStatus();
      for (const dim of [1, 5, 16, 17, 31, 32, 33, 64, 100, 1000]) {
        const rows = 6;
        const x = randomF32(rng, rows * dim).map((v) => v * 3);
        for (let i = 0; i < dim; i++) {
          x[dim + i] = i === 0 ? 127 : (i % 40) - 20 + 0.5; // row 1: max 127, s = 1, every other value a tie
          x[2 * dim + i] = 0; // row 2: zeros
          x[3 * dim + i] = (i % 3) * 1e-7; // row 3: below the 1e-5 floor
        }
        const want = quantizeActivationsTs(x, rows, dim, { q: new Int8Array(rows * dim), scale: new Float32Array(rows) });
        for (let r = 0; r < rows; r++) {
          for (let i = 0; i < dim; i++) {
            const v = Math.fround((x[r * dim + i] as number) * (want.scale[r] as number));
            expect(want.q[r * dim + i], `ts row ${r} col ${i}`).to.equal(Math.max(-128, Math.min(127, roundHalfEven(v))) || 0);
          }
        }
        for (const isa of availableIsas()) {
          setIsa(isa);
          const got = quantizeActivations(x, rows, dim);
          expect([...got.scale], `${isa} dim ${dim} scales`).to.deep.equal([...want.scale]);
          expect([...got.q], `${isa} dim ${dim}`).to.deep.equal([...want.q]);
        }
      }
      if (initial.native) setIsa(initial.isa as Isa);
    });

    it('roundHalfEven agrees with the definition on ties and non-ties', () => {
      const cases: [number, number][] = [
        [0.5, 0],
        [1.5, 2],
        [2.5, 2],
        [-0.5, -0],
        [-1.5, -2],
        [-2.5, -2],
        [2.4999, 2],
        [2.5001, 3],
        [-3.5, -4],
      ];
      for (const [v, want] of cases) expect(roundHalfEven(v), String(v)).to.equal(want);
    });
  });

  it('rmsNorm matches a float64 loop', () => {
    const rows = 5;
    const dim = 33;
    const x = randomF32(rng, rows * dim);
    const g = randomF32(rng, dim);
    const y = rmsNorm(x, g, rows, dim, 1e-6);
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      let ms = 0;
      for (let i = 0; i < dim; i++) ms += (x[r * dim + i] as number) ** 2 / dim;
      for (let i = 0; i < dim; i++) want.push(((x[r * dim + i] as number) / Math.sqrt(ms + 1e-6)) * (g[i] as number));
    }
    expectNear(y, want, 1e-6, 'rmsNorm');
    expect(() => rmsNorm(x, g, rows, dim + 1, 1e-6)).to.throw(ShapeError);
  });

  describe('RoPE (HF rotate_half)', () => {
    const headDim = 8;
    const theta = 10000;

    it('rotates each pair (i, i + d/2) by position * theta^(-2i/d), as complex multiplication', () => {
      const tokens = 4;
      const heads = 3;
      const positions = [0, 1, 7, 100];
      const x = randomF32(rng, tokens * heads * headDim);
      const y = applyRope(x.slice(), tokens, heads, ropeTables(positions, headDim, theta));
      const half = headDim / 2;
      const want: number[] = new Array<number>(x.length).fill(0);
      for (let t = 0; t < tokens; t++) {
        for (let h = 0; h < heads; h++) {
          const o = (t * heads + h) * headDim;
          for (let i = 0; i < half; i++) {
            const angle = (positions[t] as number) / theta ** ((2 * i) / headDim);
            // (re + i im) * (cos + i sin), re = x[i], im = x[i + half]
            const re = x[o + i] as number;
            const im = x[o + i + half] as number;
            want[o + i] = re * Math.cos(angle) - im * Math.sin(angle);
            want[o + i + half] = re * Math.sin(angle) + im * Math.cos(angle);
          }
        }
      }
      expectNear(y, want, 2e-5, 'rope');
    });

    it('keeps position 0 unchanged and makes q.k depend only on the distance', () => {
      const q = randomF32(rng, headDim);
      const k = randomF32(rng, headDim);
      const dot = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + v * (b[i] as number), 0);
      const at = (v: Float32Array, pos: number): Float32Array => applyRope(v.slice(), 1, 1, ropeTables([pos], headDim, theta));
      expectNear(at(q, 0), q, 0, 'position 0');
      expect(dot(at(q, 5), at(k, 2))).to.be.closeTo(dot(at(q, 13), at(k, 10)), 1e-4);
    });
  });

  describe('softmax', () => {
    it('matches exp(x) / sum(exp(x)) per row, without overflow for large logits', () => {
      const x = new Float32Array([0, 1, 2, -1, 1000, 1001, 999, 1000]);
      const y = softmax(x.slice(), 2, 4);
      const row = (v: number[]): number[] => {
        const e = v.map((a) => Math.exp(a - v[0]!));
        const s = e.reduce((a, b) => a + b, 0);
        return e.map((a) => a / s);
      };
      expectNear(y, [...row([0, 1, 2, -1]), ...row([1000, 1001, 999, 1000])], 1e-6, 'softmax');
    });

    it('gives zeros for a fully masked row and respects -Infinity entries', () => {
      const y = softmax(new Float32Array([-Infinity, -Infinity, 0, -Infinity]), 2, 2);
      expect([...y]).to.deep.equal([0, 0, 1, 0]);
    });
  });

  it('siluGate is silu(gate) * up', () => {
    const gate = randomF32(rng, 50);
    const up = randomF32(rng, 50);
    const want = Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
    expectNear(siluGate(gate, up), want, 1e-6, 'siluGate');
    expect(() => siluGate(gate, up.subarray(1))).to.throw(ShapeError);
  });
});
