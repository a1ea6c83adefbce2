/**
 * The runtime's decode-path kernels: int8 embedding / lm_head rows (quantizeRowsInt8, matvecI8), causal
 * attention over a KV cache (attentionCausal) and the float32-factor form of ternaryLinear. Each is checked
 * against an independent formulation written out here (float64 loops, softmax by definition), on every ISA
 * path this CPU has and on odd shapes that exercise the vector tails.
 */
import { expect } from 'chai';
import { ArgumentError, Rng, ShapeError } from '@bitdistill/core';
import { f16ToF32, f32ToF16 } from '@bitdistill/format';
import {
  attentionCausal,
  attentionCausalTs,
  attentionKvF16,
  attentionKvF16Ts,
  availableIsas,
  dequantizeRow,
  matvecI8,
  matvecI8Ts,
  nativeStatus,
  quantizeActivations,
  quantizeRowsInt8,
  quantizeRowsInt8Ts,
  repackTernary,
  setIsa,
  ternaryLinear,
  ternaryMatMulRef,
  type Isa,
} from '../src/index.ts';
import { packHF, randomF32, randomTernary } from './util.ts';

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).to.equal(want.length);
  let m = 0;
  for (let i = 0; i < got.length; i++) {
    const w = want[i] as number;
    m = Math.max(m, Math.abs((got[i] as number) - w) / Math.max(1, Math.abs(w)));
  }
  return m;
}

describe('decode-path kernels', () => {
  const rng = new Rng(5);
  const isas: Isa[] = availableIsas();
  const best = nativeStatus().isa;
  afterEach(() => {
    if (best !== 'typescript') setIsa(best);
  });

  describe('quantizeRowsInt8', () => {
    it('scales each row by max|w| / 127 and rounds half to even', () => {
      // Row 0: max 127 -> scale 1, so q = round(w) with ties to even. Row 1: all zero -> scale 0, q 0.
      const w = new Float32Array([127, 0.5, 1.5, -2.5, -127, 3.5, 0, 0, 0, 0, 0, 0]);
      const m = quantizeRowsInt8(w, 2, 6);
      expect([...m.scale]).to.deep.equal([1, 0]);
      expect([...m.q]).to.deep.equal([127, 0, 2, -2, -127, 4, 0, 0, 0, 0, 0, 0]);
    });

    it('reconstructs every weight within half a step of its row', () => {
      const rows = 37;
      const cols = 53;
      const w = randomF32(rng, rows * cols);
      const m = quantizeRowsInt8(w, rows, cols);
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        dequantizeRow(m, r, row);
        let absmax = 0;
        for (let c = 0; c < cols; c++) absmax = Math.max(absmax, Math.abs(w[r * cols + c] as number));
        const step = absmax / 127;
        for (let c = 0; c < cols; c++) expect(Math.abs((row[c] as number) - (w[r * cols + c] as number))).to.be.at.most(0.5 * step * (1 + 1e-5));
      }
    });

    it('native and TypeScript agree bit for bit (ties, zero rows, odd widths)', () => {
      const rows = 41;
      const cols = 77;
      const w = randomF32(rng, rows * cols);
      for (let c = 0; c < cols; c++) w[5 * cols + c] = 0; // an all-zero row
      for (let c = 0; c < cols; c++) w[7 * cols + c] = (c % 9) - 4 + 0.5; // exact .5 ties at scale 4.5 / 127
      const a = quantizeRowsInt8(w, rows, cols);
      const b = quantizeRowsInt8Ts(w, rows, cols);
      expect([...a.scale]).to.deep.equal([...b.scale]);
      expect([...a.q]).to.deep.equal([...b.q]);
    });

    it('rejects a non-finite row and a wrong length', () => {
      expect(() => quantizeRowsInt8(new Float32Array([1, Number.NaN]), 1, 2)).to.throw(ArgumentError, /row 0/);
      expect(() => quantizeRowsInt8(new Float32Array([1, 2, Number.POSITIVE_INFINITY, 0]), 2, 2)).to.throw(ArgumentError, /row 1/);
      expect(() => quantizeRowsInt8(new Float32Array(5), 2, 3)).to.throw(ShapeError);
    });
  });

  describe('matvecI8 (int8 activations x int8 rows)', () => {
    /** Independent float64 reference from the dequantized weights and the float activations, and the error bound
     * of quantizing the activations: half a step (0.5 / xs, xs = 127 / max|x_b|) per activation. */
    function reference(
      scale: Float32Array,
      q: Int8Array,
      x: Float32Array,
      rows: number,
      cols: number,
      batch: number,
    ): { y: Float64Array; bound: Float64Array } {
      const y = new Float64Array(batch * rows);
      const bound = new Float64Array(batch * rows);
      for (let b = 0; b < batch; b++) {
        let amax = 0;
        for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(x[b * cols + c] as number));
        const halfStep = 0.5 * (amax / 127);
        for (let r = 0; r < rows; r++) {
          let s = 0;
          let a = 0;
          for (let c = 0; c < cols; c++) {
            const w = (q[r * cols + c] as number) * (scale[r] as number);
            s += (x[b * cols + c] as number) * w;
            a += Math.abs(w);
          }
          y[b * rows + r] = s;
          bound[b * rows + r] = a * halfStep * (1 + 1e-5) + 1e-12;
        }
      }
      return { y, bound };
    }

    for (const [rows, cols, batch] of [
      [7, 33, 1],
      [64, 1024, 1],
      [130, 257, 3],
      [9, 17, 6],
      [5, 200, 5],
    ] as const) {
      it(`[${batch}, ${cols}] x [${rows}, ${cols}]^T: every path equals the twin bit for bit, within the quantization bound of the float product`, () => {
        const w = randomF32(rng, rows * cols);
        const m = quantizeRowsInt8(w, rows, cols);
        const x = randomF32(rng, batch * cols);
        const ref = reference(m.scale, m.q, x, rows, cols, batch);
        const twin = matvecI8Ts(m, x, batch, new Float32Array(batch * rows));
        for (let i = 0; i < twin.length; i++) expect(Math.abs((twin[i] as number) - (ref.y[i] as number)), `twin ${i}`).to.be.at.most(ref.bound[i] as number);
        // the bound is not slack: the activation rounding moves the result by a visible fraction of it
        expect(Math.max(...Array.from(twin, (v, i) => Math.abs(v - (ref.y[i] as number)) / (ref.bound[i] as number)))).to.be.above(0.01);
        for (const isa of isas) {
          setIsa(isa);
          expect(Array.from(matvecI8(m, x, batch)), isa).to.deep.equal(Array.from(twin));
        }
      });
    }

    it('checks shapes', () => {
      const m = quantizeRowsInt8(new Float32Array(12), 3, 4);
      expect(() => matvecI8(m, new Float32Array(5), 1)).to.throw(ShapeError);
      expect(() => matvecI8(m, new Float32Array(4), 1, new Float32Array(2))).to.throw(ShapeError);
    });
  });

  describe('attentionCausal', () => {
    /** Softmax(q k^T * scale) v by definition, one (position, head) at a time, float64. */
    function reference(
      q: Float32Array,
      kc: Float32Array,
      vc: Float32Array,
      T: number,
      H: number,
      Hkv: number,
      d: number,
      cap: number,
      start: number,
      scale: number,
    ): Float64Array {
      const out = new Float64Array(T * H * d);
      for (let t = 0; t < T; t++)
        for (let h = 0; h < H; h++) {
          const g = Math.floor((h * Hkv) / H);
          const n = start + t + 1;
          const logits = Array.from({ length: n }, (_, j) => {
            let s = 0;
            for (let i = 0; i < d; i++) s += (q[(t * H + h) * d + i] as number) * (kc[(g * cap + j) * d + i] as number);
            return s * scale;
          });
          const mx = Math.max(...logits);
          const e = logits.map((v) => Math.exp(v - mx));
          const z = e.reduce((a, b) => a + b, 0);
          for (let j = 0; j < n; j++)
            for (let i = 0; i < d; i++)
              out[(t * H + h) * d + i] = (out[(t * H + h) * d + i] as number) + ((e[j] as number) / z) * (vc[(g * cap + j) * d + i] as number);
        }
      return out;
    }

    for (const [T, H, Hkv, d, cap, start] of [
      [1, 4, 2, 16, 10, 5],
      [5, 6, 3, 20, 12, 0],
      [3, 8, 8, 33, 40, 30],
      [1, 16, 8, 128, 100, 80],
    ] as const) {
      it(`T=${T} H=${H} Hkv=${Hkv} d=${d} start=${start}`, () => {
        const q = randomF32(rng, T * H * d);
        const kc = randomF32(rng, Hkv * cap * d);
        const vc = randomF32(rng, Hkv * cap * d);
        const shape = { tokens: T, heads: H, kvHeads: Hkv, headDim: d, capacity: cap, start, scale: 1 / Math.sqrt(d) };
        const want = reference(q, kc, vc, T, H, Hkv, d, cap, start, shape.scale);
        expect(maxRelErr(attentionCausalTs(q, kc, vc, new Float32Array(q.length), shape), want)).to.be.below(1e-6);
        expect(maxRelErr(attentionCausal(q, kc, vc, shape), want)).to.be.below(2e-5);
      });
    }

    for (const [T, H, Hkv, d, cap, start] of [
      [1, 4, 2, 16, 10, 5],
      [5, 6, 3, 20, 12, 0],
      [3, 8, 8, 33, 40, 30],
      [1, 16, 8, 128, 100, 80],
    ] as const) {
      it(`binary16 cache (attentionKvF16) T=${T} H=${H} Hkv=${Hkv} d=${d} start=${start}: stores as format's f32ToF16, attends as the float32 cache of those values (to 1e-6)`, () => {
        const q = randomF32(rng, T * H * d);
        const k = randomF32(rng, T * Hkv * d);
        const v = randomF32(rng, T * Hkv * d);
        k[0] = 1 + 2 ** -11; // a tie between two halves: to the even one, 1.0
        k[1] = -(2 ** -20); // a half subnormal
        v[1] = -0;
        const old = randomF32(rng, Hkv * cap * d);
        const kc = Uint16Array.from(old, (x) => f32ToF16(x));
        const vc = Uint16Array.from(old.reverse(), (x) => f32ToF16(x));
        const kcTs = kc.slice();
        const vcTs = vc.slice();
        const shape = { tokens: T, heads: H, kvHeads: Hkv, headDim: d, capacity: cap, start, scale: 1 / Math.sqrt(d) };
        const got = attentionKvF16(q, k, v, kc, vc, shape);
        for (let t = 0; t < T; t++)
          for (let g = 0; g < Hkv; g++)
            for (let i = 0; i < d; i++) {
              const at = (g * cap + start + t) * d + i;
              expect(kc[at]).to.equal(f32ToF16(k[(t * Hkv + g) * d + i] as number));
              expect(vc[at]).to.equal(f32ToF16(v[(t * Hkv + g) * d + i] as number));
            }
        expect(kc[start * d]).to.equal(0x3c00);
        expect(kc[start * d + 1]).to.equal(0x8010);
        expect(vc[start * d + 1]).to.equal(0x8000);
        const wk = Float32Array.from(kc, (h) => f16ToF32(h));
        const wv = Float32Array.from(vc, (h) => f16ToF32(h));
        expect(maxRelErr(got, attentionCausal(q, wk, wv, shape))).to.be.below(1e-6);
        expect(maxRelErr(got, reference(q, wk, wv, T, H, Hkv, d, cap, start, shape.scale))).to.be.below(2e-5);
        const ts = attentionKvF16Ts(q, k, v, kcTs, vcTs, new Float32Array(q.length), shape);
        expect([...kcTs]).to.deep.equal([...kc]);
        expect([...vcTs]).to.deep.equal([...vc]);
        expect(maxRelErr(ts, got)).to.be.below(2e-5);
      });
    }

    it('binary16 cache: values beyond the largest half store as infinity, NaN stays NaN', () => {
      const shape = { tokens: 1, heads: 1, kvHeads: 1, headDim: 4, capacity: 2, start: 0, scale: 0.5 };
      const kc = new Uint16Array(8);
      const vc = new Uint16Array(8);
      attentionKvF16(new Float32Array(4), Float32Array.of(70000, -70000, 65504, Number.NaN), new Float32Array(4), kc, vc, shape);
      expect([...kc.subarray(0, 3)]).to.deep.equal([0x7c00, 0xfc00, 0x7bff]);
      expect(Number.isNaN(f16ToF32(kc[3] as number))).to.equal(true);
    });

    it('rejects a step past the cache and mismatched heads', () => {
      const s = { tokens: 2, heads: 4, kvHeads: 2, headDim: 8, capacity: 4, start: 3, scale: 1 };
      expect(() => attentionCausal(new Float32Array(64), new Float32Array(64), new Float32Array(64), s)).to.throw(ArgumentError, /exceed the cache/);
      expect(() => attentionCausal(new Float32Array(8 * 3), new Float32Array(64), new Float32Array(64), { ...s, heads: 3, tokens: 1, start: 0 })).to.throw(
        ArgumentError,
        /multiple/,
      );
    });
  });

  describe('ternaryLinear with a float32 factor', () => {
    it('equals fround(acc * fround(weightScale / actScale)) exactly, on every path', () => {
      const rows = 70;
      const cols = 300;
      const batch = 3;
      const t = randomTernary(rng, rows * cols);
      const w = repackTernary(packHF(t, rows, cols), rows, cols);
      const x = randomF32(rng, batch * cols);
      const { q, scale } = quantizeActivations(x, batch, cols);
      const ws = Math.fround(0.0123);
      const acc = ternaryMatMulRef(t, rows, cols, q, batch);
      const want = new Float32Array(batch * rows);
      for (let b = 0; b < batch; b++) {
        const r = Math.fround(ws / (scale[b] as number));
        for (let o = 0; o < rows; o++) want[b * rows + o] = Math.fround((acc[b * rows + o] as number) * r);
      }
      for (const isa of isas) {
        setIsa(isa);
        expect([...ternaryLinear(w, q, scale, ws, batch, undefined, true)], isa).to.deep.equal([...want]);
      }
    });
  });
});
