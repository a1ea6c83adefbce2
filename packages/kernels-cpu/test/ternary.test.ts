import { expect } from 'chai';
import { ArgumentError, FormatError, Rng, ShapeError } from '@bitdistill/core';
import {
  availableIsas,
  nativeStatus,
  repackTernary,
  repackTernaryTs,
  setIsa,
  setThreads,
  ternaryLayoutBytes,
  ternaryLinear,
  ternaryLinearRef,
  ternaryLinearStacked,
  ternaryLinearStackedTs,
  ternaryStack,
  ternaryMatMul,
  ternaryMatMulRef,
  ternaryMatVec,
  type Isa,
  type TernaryMatrix,
} from '../src/index.ts';
import { ternaryLinearTs, ternaryMatMulTs } from '../src/ternary.ts';
import { firstDiff, packHF, randomInt8, randomTernary } from './util.ts';

interface Case {
  rows: number;
  cols: number;
  batch: number;
  t: Int8Array;
  w: TernaryMatrix;
  x: Int8Array;
  actScale: Float32Array;
  weightScale: number;
  ref: Int32Array;
  refF: Float32Array;
}

// Odd sizes on purpose: rows not a multiple of 4, cols not a multiple of 16/32/64/256, every batch 1..9; the
// AMX path (batch >= 4) also gets batches across its 16- and 32-row batch tiles and partial 32-row groups.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 2],
  [4, 256, 1],
  [5, 255, 3],
  [7, 257, 4],
  [13, 63, 5],
  [31, 1000, 6],
  [64, 512, 7],
  [129, 700, 8],
  [66, 2049, 9],
  [300, 1031, 1],
  [517, 130, 2],
  [260, 768, 5],
  [1027, 96, 3],
  [37, 300, 16],
  [9, 513, 13],
  [70, 256, 12],
  [70, 300, 17],
  [150, 520, 32],
  [33, 257, 33],
  [97, 1030, 40],
  [5, 64, 31],
];

function makeCase(rng: Rng, rows: number, cols: number, batch: number): Case {
  const t = randomTernary(rng, rows * cols);
  const x = randomInt8(rng, batch * cols);
  const actScale = Float32Array.from({ length: batch }, () => 127 / (0.1 + 10 * rng.next()));
  const weightScale = Math.fround(0.01 + rng.next());
  return {
    rows,
    cols,
    batch,
    t,
    w: repackTernary(packHF(t, rows, cols), rows, cols),
    x,
    actScale,
    weightScale,
    ref: ternaryMatMulRef(t, rows, cols, x, batch),
    refF: ternaryLinearRef(t, rows, cols, x, actScale, weightScale, batch),
  };
}

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const i = firstDiff(got, want);
  expect(i, `${what}: first difference at ${i}: got ${got[i]}, want ${want[i]}`).to.equal(-1);
}

describe('int8 x ternary products', () => {
  const rng = new Rng(20240611);
  const cases = SHAPES.map(([r, c, b]) => makeCase(rng, r, c, b));
  const isas: Isa[] = availableIsas();
  const initial = nativeStatus();

  after(() => {
    if (initial.native) {
      setIsa(initial.isa as Isa);
      setThreads(initial.threads);
    }
  });

  it('the TypeScript twin equals the reference bit for bit', () => {
    for (const c of cases) {
      const what = `${c.rows}x${c.cols} batch ${c.batch}`;
      expectSame(ternaryMatMulTs(c.w, c.x, c.batch, new Int32Array(c.batch * c.rows)), c.ref, what);
      expectSame(ternaryLinearTs(c.w, c.x, c.actScale, c.weightScale, c.batch, new Float32Array(c.batch * c.rows)), c.refF, what);
    }
  });

  it('native repack writes the same bytes as the TypeScript repack', function () {
    if (!initial.native) this.skip();
    for (const c of cases) {
      const ts = new Uint8Array(ternaryLayoutBytes(c.rows, c.cols));
      expect(repackTernaryTs(packHF(c.t, c.rows, c.cols), c.rows, c.cols, ts)).to.equal(-1);
      expectSame(c.w.data, ts, `${c.rows}x${c.cols}`);
    }
  });

  it(`every native ISA path (${isas.join(', ') || 'none'}) x threads 1, 2, 3 equals the reference bit for bit`, function () {
    if (!initial.native) this.skip();
    for (const isa of isas) {
      setIsa(isa);
      for (const threads of [1, 2, 3]) {
        setThreads(threads);
        for (const c of cases) {
          const what = `${isa}, ${threads} threads, ${c.rows}x${c.cols} batch ${c.batch}`;
          expectSame(ternaryMatMul(c.w, c.x, c.batch), c.ref, what);
          expectSame(ternaryLinear(c.w, c.x, c.actScale, c.weightScale, c.batch), c.refF, what);
          if (c.batch === 1) expectSame(ternaryMatVec(c.w, c.x), c.ref, what);
        }
      }
    }
  });

  it('stacked matrices (q/k/v, gate/up): each segment equals its own ternaryLinear bit for bit, every path', () => {
    for (const [parts, cols, batch] of [
      [[8, 4, 4], 300, 1],
      [[64, 32, 32], 1000, 3],
      [[12, 12], 257, 9],
      [[4], 64, 2],
      [[256, 128, 128], 512, 33],
    ] as [number[], number, number][]) {
      const cs = parts.map((rows) => makeCase(rng, rows, cols, batch));
      const x = cs[0]?.x as Int8Array;
      const act = cs[0]?.actScale as Float32Array;
      const plan = ternaryStack(cs.map((c) => ({ rows: c.rows, cols: c.cols })));
      if (plan === null) throw new Error('expected a stack');
      cs.forEach((c, i) => {
        const part = repackTernary(packHF(c.t, c.rows, c.cols), c.rows, c.cols, 'part', plan.slices[i]);
        expect(part.data.buffer).to.equal(plan.matrix.data.buffer); // written in place
        expectSame(part.data, c.w.data, `part ${i} bytes`);
      });
      const stacked = plan.matrix;
      expect(stacked.rows).to.equal(parts.reduce((a, b) => a + b, 0));
      const seg = { ends: plan.seg, scales: Float64Array.from(cs, (c) => c.weightScale) };
      for (const f32 of [false, true]) {
        const want = new Float32Array(batch * stacked.rows);
        let o = 0;
        for (const c of cs) {
          const y = ternaryLinearRef(c.t, c.rows, c.cols, x, act, c.weightScale, batch);
          const yf = f32 ? ternaryLinearTs(c.w, x, act, c.weightScale, batch, new Float32Array(batch * c.rows), true) : y;
          for (let b = 0; b < batch; b++) want.set(yf.subarray(b * c.rows, (b + 1) * c.rows), b * stacked.rows + o);
          o += c.rows;
        }
        const what = `${parts.join('+')}x${cols} batch ${batch} float32Factor ${f32}`;
        expectSame(ternaryLinearStackedTs(stacked, x, act, seg, batch, new Float32Array(batch * stacked.rows), f32), want, `typescript ${what}`);
        for (const isa of isas) {
          setIsa(isa);
          for (const threads of [1, 2]) {
            setThreads(threads);
            expectSame(ternaryLinearStacked(stacked, x, act, seg, batch, undefined, f32), want, `${isa} ${threads}t ${what}`);
          }
        }
      }
    }
    const a = makeCase(rng, 8, 64, 1);
    expect(
      ternaryStack([
        { rows: 8, cols: 64 },
        { rows: 6, cols: 64 },
      ]),
    ).to.equal(null); // 6 rows: not whole tiles
    expect(
      ternaryStack([
        { rows: 8, cols: 64 },
        { rows: 8, cols: 65 },
      ]),
    ).to.equal(null); // different input sizes
    expect(() => repackTernary(packHF(a.t, 8, 64), 8, 64, 'x', new Uint8Array(3))).to.throw(ShapeError);
    const s2 = (
      ternaryStack([
        { rows: 8, cols: 64 },
        { rows: 8, cols: 64 },
      ]) as { matrix: TernaryMatrix }
    ).matrix;
    expect(() => ternaryLinearStacked(s2, a.x, a.actScale, { ends: Int32Array.of(8, 8), scales: Float64Array.of(1, 1) }, 1)).to.throw(ArgumentError);
    expect(() => ternaryLinearStacked(s2, a.x, a.actScale, { ends: Int32Array.of(8, 15), scales: Float64Array.of(1, 1) }, 1)).to.throw(ArgumentError);
  });

  it('stays exact at the int8 extremes over long rows', () => {
    // x = -128 or 127 and t = +-1 everywhere: |y| up to 128 * cols, every accumulator at its largest.
    const rows = 6;
    const cols = 100_003;
    const t = Int8Array.from({ length: rows * cols }, (_, i) => (Math.floor(i / cols) % 2 === 0 ? 1 : -1));
    const x = Int8Array.from({ length: 2 * cols }, (_, i) => (i < cols ? -128 : 127));
    const ref = ternaryMatMulRef(t, rows, cols, x, 2);
    expect(ref[0]).to.equal(-128 * cols);
    const w = repackTernary(packHF(t, rows, cols), rows, cols);
    expectSame(ternaryMatMulTs(w, x, 2, new Int32Array(2 * rows)), ref, 'typescript');
    for (const isa of isas) {
      setIsa(isa);
      expectSame(ternaryMatMul(w, x, 2), ref, isa);
      expectSame(ternaryMatMul(w, x.subarray(0, cols), 1), ref.subarray(0, rows), `${isa} batch 1`);
    }
  });

  it('multiplies the transformers docstring example (8x2 packed as [2, 2])', () => {
    const packed = new Uint8Array([0b10100001, 0b00011000, 0b10010000, 0b00001010]);
    const t = new Int8Array([0, -1, -1, 1, -1, 1, -1, 1, 1, 0, 0, -1, 1, -1, 1, -1]);
    const w = repackTernary(packed, 8, 2);
    const x = new Int8Array([3, -5]);
    expect([...ternaryMatVec(w, x)]).to.deep.equal([...ternaryMatMulRef(t, 8, 2, x, 1)]);
    expect([...ternaryMatVec(w, x)]).to.deep.equal([5, -8, -8, -8, 3, 5, 8, 8]);
  });

  it('rejects code 3 with a FormatError naming the byte and row, and wrong lengths with a ShapeError', () => {
    const hf = new Uint8Array(2 * 3).fill(0x55);
    hf[4] = 0b00110101; // packed row 1, column 1, slot 2 -> original row 2 * 2 + 1 = 5
    expect(() => repackTernary(hf, 8, 3, 'model.safetensors: q_proj.weight')).to.throw(
      FormatError,
      /^model.safetensors: q_proj.weight: packed ternary byte \[1, 1\] = 0x35 holds code 3 in bits 4..5 \(row 5\)/,
    );
    const tsDst = new Uint8Array(ternaryLayoutBytes(8, 3));
    expect(repackTernaryTs(hf, 8, 3, tsDst)).to.equal(4);
    // Slots past `out` are padding: code 3 there is ignored, as HF's unpack_weights ignores them.
    expect(() => repackTernary(new Uint8Array([0b11010101]), 3, 1)).to.not.throw();
    expect(() => repackTernary(new Uint8Array(5), 8, 3)).to.throw(ShapeError);
    const w = repackTernary(new Uint8Array(6).fill(0x55), 8, 3);
    expect(() => ternaryMatMul(w, new Int8Array(5), 2)).to.throw(ShapeError);
    expect(() => ternaryLinear(w, new Int8Array(6), new Float32Array(1), 1, 2)).to.throw(ShapeError);
  });
});
