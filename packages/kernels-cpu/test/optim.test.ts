// adamwF32 (native, threaded) against its TypeScript twin and against a float64 scalar formula written here:
// parameters, both moments and gradient scaling, on sizes that split unevenly across the pool, out === p.
import { expect } from 'chai';
import { adamwF32, adamwF32Ts, nativeStatus, type AdamwStep } from '../src/index.ts';

function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

function closeAll(a: Float32Array, b: Float32Array, what: string): void {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    // Double arithmetic rounded to float32 on both sides; a fused multiply-add in the compiled loop may move the
    // last float32 bit.
    if (!(Math.abs(x - y) <= 2e-7 * Math.max(Math.abs(x), Math.abs(y)) + 1e-30)) expect.fail(`${what}[${i}]: native ${x}, twin ${y}`);
  }
}

describe('adamwF32', () => {
  const step: AdamwStep = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, lr: 3e-4, bc1: 1 - 0.9 ** 3, bc2: 1 - 0.999 ** 3, gradScale: 0.37 };

  it('native equals the TypeScript twin (m, v in place, new parameter), uneven sizes, out === p', function () {
    if (!nativeStatus().native) this.skip();
    for (const n of [1, 7, 4097, 100_003]) {
      const p = rand(n, 1, 0.05);
      const g = rand(n, 2, 3);
      const m0 = rand(n, 3, 0.1);
      const v0 = Float32Array.from(rand(n, 4, 0.01), (x) => Math.abs(x));
      const [mN, vN, mT, vT] = [m0.slice(), v0.slice(), m0.slice(), v0.slice()];
      const outN = new Float32Array(n);
      const outT = new Float32Array(n);
      adamwF32(p, g, mN, vN, outN, step);
      adamwF32Ts(p, g, mT, vT, outT, step);
      closeAll(mN, mT, `m (n=${n})`);
      closeAll(vN, vT, `v (n=${n})`);
      closeAll(outN, outT, `out (n=${n})`);
      const pIn = p.slice();
      adamwF32(pIn, g, m0.slice(), v0.slice(), pIn, step); // in place
      closeAll(pIn, outT, `in place (n=${n})`);
    }
  });

  it('the twin follows torch.optim.AdamW written out in float64', () => {
    const p = Float32Array.of(0.5, -0.25, 0);
    const g = Float32Array.of(0.1, -2, 0);
    const m = Float32Array.of(0.01, 0, 0);
    const v = Float32Array.of(0.001, 0, 0);
    const out = new Float32Array(3);
    const want = [0, 1, 2].map((i) => {
      const gi = (g[i] as number) * step.gradScale;
      const mi = 0.9 * (m[i] as number) + 0.1 * gi;
      const vi = 0.999 * (v[i] as number) + 0.001 * gi * gi;
      return (p[i] as number) * (1 - step.lr * step.weightDecay) - (step.lr * (mi / step.bc1)) / (Math.sqrt(vi / step.bc2) + step.eps);
    });
    adamwF32Ts(p, g, m, v, out, step);
    want.forEach((w, i) => expect(out[i]).to.equal(Math.fround(w)));
    expect(() => adamwF32(p, g, m, v, new Float32Array(2), step)).to.throw(/same length/);
  });
});
