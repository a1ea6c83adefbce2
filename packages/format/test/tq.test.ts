import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ArgumentError, FormatError, Rng, ShapeError } from '@bitdistill/core';
import { f16ToF32, f32ToF16, packTernaryGgml, unpackTernaryGgml, type TernaryGgmlType } from '../src/index.ts';
import { TQ1_0_BLOCK_BYTES, TQ2_0_BLOCK_BYTES, dequantizeRowTq1_0, dequantizeRowTq2_0, quantizeRowTq1_0Ref, quantizeRowTq2_0Ref } from '../src/tq.ts';

// Golden bytes from an independent vectorised numpy implementation: scripts/reference/golden_tq.py.
interface GoldenCase {
  name: string;
  type: TernaryGgmlType;
  x: number[];
  bytes: string;
  dequantized: number[];
}
const golden = JSON.parse(readFileSync(new URL('../../../test/golden/tq.json', import.meta.url), 'utf8')) as { cases: GoldenCase[] };

const quantize = { TQ2_0: quantizeRowTq2_0Ref, TQ1_0: quantizeRowTq1_0Ref };
const dequantize = { TQ2_0: dequantizeRowTq2_0, TQ1_0: dequantizeRowTq1_0 };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function randomTernary(rng: Rng, n: number, pZero = 0.4): Int8Array {
  return Int8Array.from({ length: n }, () => (rng.next() < pZero ? 0 : rng.next() < 0.5 ? -1 : 1));
}

describe('TQ2_0 / TQ1_0 blocks (llama.cpp ternary types)', () => {
  it('block sizes are those of ggml-common.h (static_assert there)', () => {
    expect(TQ2_0_BLOCK_BYTES).to.equal(66);
    expect(TQ1_0_BLOCK_BYTES).to.equal(54);
  });

  for (const c of golden.cases) {
    it(`quantize_row_${c.type.toLowerCase()}_ref twin matches the numpy golden: ${c.name}`, () => {
      const x = Float32Array.from(c.x);
      expect(hex(quantize[c.type](x))).to.equal(c.bytes);
    });
    it(`dequantize_row_${c.type.toLowerCase()} twin matches the numpy golden: ${c.name}`, () => {
      const y = dequantize[c.type](new Uint8Array(Buffer.from(c.bytes, 'hex')), c.x.length);
      expect(Array.from(y, (v) => v + 0)).to.deep.equal(c.dequantized);
    });
  }

  it('TQ1_0: every base-3 byte value 0..242 comes back digit for digit (the ceil(v*256/243) trick)', () => {
    // One block whose 48 qs bytes walk through all 243 digit combinations, 48 at a time (qh is covered below).
    for (let start = 0; start < 243; start += 48) {
      const codes = new Int8Array(256);
      const expected: number[] = [];
      for (let b = 0; b < 48; b++) {
        const v = (start + b) % 243;
        expected.push(v);
        for (let n = 0; n < 5; n++) {
          const digit = Math.floor(v / 3 ** (4 - n)) % 3;
          const e = b < 32 ? b + 32 * n : 160 + (b - 32) + 16 * n;
          codes[e] = digit - 1;
        }
      }
      const packed = packTernaryGgml('TQ1_0', codes, 1, 256, Float32Array.of(1));
      const back = unpackTernaryGgml('TQ1_0', packed, 1, 256);
      expect(Array.from(back.codes)).to.deep.equal(Array.from(codes));
      for (let b = 0; b < 48; b++) expect(packed[b]).to.equal(Math.ceil(((expected[b] as number) * 256) / 243));
    }
  });

  for (const type of ['TQ2_0', 'TQ1_0'] as const) {
    it(`${type}: packing ternary codes with a folded scale == the llama.cpp reference on codes x scale, byte for byte`, () => {
      const rng = new Rng(3);
      const rows = 5;
      const cols = 512;
      const codes = randomTernary(rng, rows * cols);
      codes.fill(0, 256, 512); // row 0's second block is all zero: d = 0 in both
      for (const scale of [Math.fround(0.0123), Math.fround(0.75), Math.fround(3.3e-5)]) {
        const packed = packTernaryGgml(type, codes, rows, cols, Float32Array.of(scale));
        const dequant = Float32Array.from(codes, (c) => Math.fround(c * scale));
        expect(hex(packed)).to.equal(hex(quantize[type](dequant)));
        const back = unpackTernaryGgml(type, packed, rows, cols);
        expect(Array.from(back.codes)).to.deep.equal(Array.from(codes));
        const d16 = f16ToF32(f32ToF16(scale));
        expect(Array.from(back.d)).to.deep.equal([d16, 0, ...Array.from({ length: rows * 2 - 2 }, () => d16)]);
      }
    });

    it(`${type}: per-row and per-block scales go to the blocks they cover`, () => {
      const rng = new Rng(4);
      const rows = 3;
      const cols = 512;
      const codes = randomTernary(rng, rows * cols, 0);
      const perRow = Float32Array.of(0.5, 0.25, 2);
      expect(Array.from(unpackTernaryGgml(type, packTernaryGgml(type, codes, rows, cols, perRow), rows, cols).d)).to.deep.equal([0.5, 0.5, 0.25, 0.25, 2, 2]);
      const perBlock = Float32Array.of(1, 2, 3, 4, 5, 6);
      expect(Array.from(unpackTernaryGgml(type, packTernaryGgml(type, codes, rows, cols, perBlock), rows, cols).d)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });

    it(`${type}: bad arguments and corrupted bytes are refused`, () => {
      expect(() => packTernaryGgml(type, new Int8Array(300), 1, 300, Float32Array.of(1))).to.throw(ShapeError, /multiple of 256/);
      expect(() => packTernaryGgml(type, new Int8Array(256).fill(2), 1, 256, Float32Array.of(1))).to.throw(ArgumentError, /W\[0, 0\] = 2/);
      expect(() => packTernaryGgml(type, new Int8Array(512), 2, 256, Float32Array.of(1, 2, 3))).to.throw(ShapeError, /3 scales/);
      const good = packTernaryGgml(type, new Int8Array(256), 1, 256, Float32Array.of(1));
      expect(() => unpackTernaryGgml(type, good.subarray(1), 1, 256)).to.throw(FormatError, /needs/);
      const bad = good.slice();
      bad[3] = type === 'TQ2_0' ? 0xff : 0x01; // TQ2_0: code 3; TQ1_0: 1 is ceil(v*256/243) for no v
      expect(() => unpackTernaryGgml(type, bad, 1, 256, 'w')).to.throw(
        FormatError,
        type === 'TQ2_0' ? /block 0 \(row 0\) byte 3 = 0xff/ : /block 0 \(row 0\) byte 3 = 0x1 /,
      );
      const nan = good.slice();
      nan[nan.length - 1] = 0x7e; // fp16 NaN
      expect(() => unpackTernaryGgml(type, nan, 1, 256)).to.throw(FormatError, /scale d = NaN/);
    });
  }

  it('TQ1_0: a non-zero fifth digit in qh is refused', () => {
    const good = packTernaryGgml('TQ1_0', new Int8Array(256), 1, 256, Float32Array.of(1));
    const bad = good.slice();
    bad[48] = Math.ceil(((121 * 3 + 1) * 256) / 243); // digits 1,1,1,1 then a 1 where qh keeps a 0
    expect(() => unpackTernaryGgml('TQ1_0', bad, 1, 256)).to.throw(FormatError, /byte 48/);
  });
});
