import { expect } from 'chai';
import { ArgumentError, Rng, ShapeError } from '@bitdistill/core';
import {
  allocAligned,
  availableIsas,
  matmulF32,
  matmulF32Ref,
  matvecF32,
  matvecF32Ref,
  nativeStatus,
  setIsa,
  setThreads,
  streamRead,
  cpuCaches,
  type Isa,
} from '../src/index.ts';
import { matmulF32Ts, matvecF32Ts } from '../src/gemm.ts';
import { randomF32 } from './util.ts';

const EPS32 = 2 ** -23;

/**
 * |got - want| <= (k + 2) * eps32 * sum_p |a_p b_p|: the worst case of any float32 summation order with
 * FMA, so the test does not depend on the blocking.
 */
function expectClose(got: Float32Array, want: Float64Array, absRef: Float64Array, k: number, what: string): void {
  expect(got.length, what).to.equal(want.length);
  for (let i = 0; i < got.length; i++) {
    const tol = (k + 2) * EPS32 * (absRef[i] as number) + 1e-30;
    const err = Math.abs((got[i] as number) - (want[i] as number));
    if (!(err <= tol)) expect.fail(`${what}: element ${i}: got ${got[i]}, want ${want[i]} (error ${err} > ${tol})`);
  }
}

const abs = (v: Float32Array): Float32Array => v.map(Math.abs);

// [m, k, n]: ones, odd sizes, K across the 256-deep packing block, N across an AVX-512 column panel (2048),
// M across the 192-row block.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 33],
  [5, 3, 1],
  [13, 17, 19],
  [12, 64, 32],
  [37, 300, 45],
  [200, 33, 70],
  [3, 5, 2100],
  [64, 513, 48],
  [7, 0, 9],
];

describe('fp32 GEMM and matrix-vector product', () => {
  const rng = new Rng(7);
  const initial = nativeStatus();
  const paths: (Isa | 'typescript')[] = ['typescript', ...availableIsas()];

  after(() => {
    if (initial.native) {
      setIsa(initial.isa as Isa);
      setThreads(initial.threads);
    }
  });

  it(`matmulF32 with every transpose, on ${paths.join(', ')}, 1 and 2 threads, matches a float64 loop`, () => {
    for (const [m, k, n] of SHAPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const a = randomF32(rng, m * k);
          const b = randomF32(rng, k * n);
          const want = matmulF32Ref(a, b, m, k, n, transA, transB);
          const absRef = matmulF32Ref(abs(a), abs(b), m, k, n, transA, transB);
          for (const path of paths) {
            for (const threads of path === 'typescript' ? [1] : [1, 2]) {
              const what = `${path} ${threads}t m=${m} k=${k} n=${n} transA=${transA} transB=${transB}`;
              // Garbage in C first: the kernels must overwrite, not accumulate into, the output.
              const c = new Float32Array(m * n).fill(Number.NaN);
              if (path === 'typescript') {
                matmulF32Ts(a, b, m, k, n, transA, transB, c);
              } else {
                setIsa(path);
                setThreads(threads);
                matmulF32(a, b, m, k, n, { transA, transB }, c);
              }
              expectClose(c, want, absRef, k, what);
            }
          }
        }
      }
    }
  });

  it('products with a long k and a small C (split along k across the pool) match a float64 loop, 1-4 threads', function () {
    if (!initial.native) this.skip();
    setIsa(initial.isa as Isa);
    // k blocks of 256: 5 (uneven split), 2 (one per thread), 1 (fewer than threads: not split).
    for (const [m, k, n] of [
      [30, 1100, 20],
      [13, 512, 40],
      [64, 256, 7],
      [256, 1024, 256],
    ] as [number, number, number][]) {
      for (const transA of [false, true]) {
        const a = randomF32(rng, m * k);
        const b = randomF32(rng, k * n);
        const want = matmulF32Ref(a, b, m, k, n, transA, false);
        const absRef = matmulF32Ref(abs(a), abs(b), m, k, n, transA, false);
        for (const threads of [1, 2, 3, 4]) {
          setThreads(threads);
          const c = new Float32Array(m * n).fill(Number.NaN);
          matmulF32(a, b, m, k, n, { transA }, c);
          expectClose(c, want, absRef, k, `${threads}t m=${m} k=${k} n=${n} transA=${transA}`);
        }
      }
    }
  });

  it(`matvecF32 on ${paths.join(', ')} matches a float64 loop for batch 1..9`, () => {
    const shapes: [number, number][] = [
      [1, 1],
      [5, 3],
      [17, 31],
      [129, 257],
      [70, 1000],
      [301, 64],
    ];
    for (const [rows, cols] of shapes) {
      for (let batch = 1; batch <= 9; batch += rows > 100 ? 4 : 1) {
        const w = randomF32(rng, rows * cols);
        const x = randomF32(rng, batch * cols);
        const want = matvecF32Ref(w, x, rows, cols, batch);
        const absRef = matvecF32Ref(abs(w), abs(x), rows, cols, batch);
        for (const path of paths) {
          const what = `${path} ${rows}x${cols} batch ${batch}`;
          if (path === 'typescript') {
            expectClose(matvecF32Ts(w, x, rows, cols, batch, new Float32Array(batch * rows)), want, absRef, cols, what);
          } else {
            setIsa(path);
            setThreads(2);
            expectClose(matvecF32(w, x, rows, cols, batch), want, absRef, cols, what);
          }
        }
      }
    }
  });

  it('rejects operands whose lengths do not fit the shape', () => {
    expect(() => matmulF32(new Float32Array(6), new Float32Array(6), 2, 3, 3)).to.throw(ShapeError);
    expect(() => matvecF32(new Float32Array(6), new Float32Array(2), 2, 3, 1)).to.throw(ShapeError);
  });

  it('streamRead reads every byte (one checksum on every ISA, 1 and 2 threads)', function () {
    if (!initial.native) this.skip();
    const bytes = allocAligned(1_000_003);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
    setThreads(1);
    const one = streamRead(bytes);
    for (const isa of availableIsas()) {
      setIsa(isa);
      for (const threads of [1, 2, 3]) {
        setThreads(threads);
        for (const streams of [1, 2, 3, 4, 7]) expect(streamRead(bytes, streams), `${isa} ${threads} threads ${streams} streams`).to.equal(one);
      }
    }
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
    expect(streamRead(bytes)).to.not.equal(one);
    const two = streamRead(bytes);
    bytes[123_457] = (bytes[123_457] as number) ^ 4; // inside a stream's part, not the remainder
    expect(streamRead(bytes, 4)).to.not.equal(two);
    expect(() => streamRead(bytes, 0)).to.throw(ArgumentError);
  });

  it('cpuCaches reports the data/unified caches CPUID describes', function () {
    if (!initial.native || process.arch !== 'x64') this.skip();
    const caches = cpuCaches();
    expect(caches.length).to.be.greaterThan(0);
    for (const c of caches) {
      expect(c.level).to.be.within(1, 4);
      expect(['data', 'unified']).to.include(c.type);
      expect(c.bytes % 1024, `level ${c.level} size ${c.bytes}`).to.equal(0);
      expect(c.bytes).to.be.within(4096, 2 ** 34);
    }
    expect(caches.some((c) => c.level === 1 && c.type === 'data')).to.equal(true);
  });
});
