import { expect } from 'chai';
import { Rng } from '@bitdistill/core';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16, f16ToF32, f32ToF16 } from '../src/index.ts';
import { bf16BitsToF32Bits, bf16ToF32, f16BitsToF32Bits, f32BitsToBf16Bits, f32BitsToF16Bits, f32ToBf16 } from '../src/half.ts';

const hex = (n: number, w: number): string => `0x${n.toString(16).padStart(w, '0')}`;

function bitsToF32(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0] as number;
}

// Expected patterns worked out by hand from the IEEE 754 layouts (f16: 1-5-10, bf16: 1-8-7, f32: 1-8-23).
const F32_TO_F16: [number, number, string][] = [
  [0x3f800000, 0x3c00, '1.0'],
  [0xc0000000, 0xc000, '-2.0'],
  [0x3dcccccd, 0x2e66, '0.1 (rounds down)'],
  [0x477fe000, 0x7bff, '65504, max finite'],
  [0x477fefff, 0x7bff, 'just below 65520 rounds down'],
  [0x477ff000, 0x7c00, '65520: tie with odd 0x7bff rounds up to infinity'],
  [0x3f801000, 0x3c00, '1 + 2^-11: tie, even stays'],
  [0x3f803000, 0x3c02, '1 + 3*2^-11: tie, odd rounds up'],
  [0x3f801001, 0x3c01, 'just above the tie rounds up'],
  [0x38800000, 0x0400, '2^-14, smallest normal'],
  [0x387fc000, 0x03ff, '1023 * 2^-24, largest subnormal'],
  [0x387fe000, 0x0400, '(2^-14 - 2^-25): tie with odd 0x3ff carries into the smallest normal'],
  [0x33800000, 0x0001, '2^-24, smallest subnormal'],
  [0x33000000, 0x0000, '2^-25: tie with even 0 rounds to zero'],
  [0x33000001, 0x0001, 'just above 2^-25 rounds up'],
  [0x33c00000, 0x0002, '1.5 * 2^-24: tie with odd 1 rounds up to 2'],
  [0x00000001, 0x0000, 'f32 subnormal underflows'],
  [0x80000000, 0x8000, '-0'],
  [0x7f800000, 0x7c00, '+inf'],
  [0xff800000, 0xfc00, '-inf'],
  [0x7f7fffff, 0x7c00, 'f32 max overflows'],
  [0x7fc00000, 0x7e00, 'quiet NaN'],
  [0x7f800001, 0x7e00, 'signalling NaN with a low payload becomes quiet, stays NaN'],
  [0xffffe000, 0xffff, 'negative NaN keeps sign and top payload bits'],
];

const F16_TO_F32: [number, number][] = [
  [0x3c00, 0x3f800000],
  [0x0001, 0x33800000],
  [0x0003, 0x34400000],
  [0x03ff, 0x387fc000],
  [0x0400, 0x38800000],
  [0x7bff, 0x477fe000],
  [0x8000, 0x80000000],
  [0xfc00, 0xff800000],
  [0x7e00, 0x7fc00000],
  [0x7d01, 0x7fa02000], // signalling NaN payload kept
];

const F32_TO_BF16: [number, number, string][] = [
  [0x3f800000, 0x3f80, '1.0'],
  [0x3f808000, 0x3f80, 'tie, even stays'],
  [0x3f818000, 0x3f82, 'tie, odd rounds up'],
  [0x3f808001, 0x3f81, 'just above the tie'],
  [0x3f807fff, 0x3f80, 'just below the tie'],
  [0x7f7f7fff, 0x7f7f, 'rounds down to max finite'],
  [0x7f7fffff, 0x7f80, 'f32 max rounds to infinity'],
  [0xff800000, 0xff80, '-inf'],
  [0x80000000, 0x8000, '-0'],
  [0x00018000, 0x0002, 'subnormal tie, odd rounds up'],
  [0x00008000, 0x0000, 'subnormal tie, even stays'],
  [0x7f800001, 0x7fc0, 'signalling NaN becomes quiet, stays NaN'],
  [0xffc00000, 0xffc0, 'negative quiet NaN'],
  [0x7fbf0000, 0x7fff, 'NaN payload kept, quiet bit set'],
];

describe('half: f16 / bf16 <-> f32', () => {
  it('f32 -> f16 rounds to nearest even, with subnormals, overflow and NaN', () => {
    for (const [f, h, what] of F32_TO_F16) expect(hex(f32BitsToF16Bits(f), 4), what).to.equal(hex(h, 4));
  });

  it('f16 -> f32 is exact, subnormals normalised, NaN payloads kept', () => {
    for (const [h, f] of F16_TO_F32) expect(hex(f16BitsToF32Bits(h), 8), hex(h, 4)).to.equal(hex(f, 8));
  });

  it('f32 -> bf16 rounds to nearest even', () => {
    for (const [f, h, what] of F32_TO_BF16) expect(hex(f32BitsToBf16Bits(f), 4), what).to.equal(hex(h, 4));
  });

  it('bf16 -> f32 is the top half', () => {
    expect(hex(bf16BitsToF32Bits(0xbf80), 8)).to.equal('0xbf800000');
    expect(bf16ToF32(0x4049)).to.equal(bitsToF32(0x40490000));
  });

  it('number helpers agree with the bit helpers', () => {
    expect(f32ToF16(1)).to.equal(0x3c00);
    expect(f16ToF32(0x3555)).to.equal(0.333251953125);
    expect(f32ToBf16(-2)).to.equal(0xc000);
    expect(Object.is(f16ToF32(0x8000), -0)).to.equal(true);
    expect(f16ToF32(0x7c00)).to.equal(Infinity);
    expect(Number.isNaN(f16ToF32(0x7e00))).to.equal(true);
  });

  it('every f16 and bf16 pattern survives the trip through f32 (NaNs only gain the quiet bit)', () => {
    const bad: string[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (f32BitsToF16Bits(f16BitsToF32Bits(h)) !== (isNaN16 ? h | 0x200 : h)) bad.push(`f16 ${hex(h, 4)}`);
      const isNaNb = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      if (f32BitsToBf16Bits(bf16BitsToF32Bits(h)) !== (isNaNb ? h | 0x40 : h)) bad.push(`bf16 ${hex(h, 4)}`);
    }
    expect(bad).to.deep.equal([]);
  });

  it('f32 -> f16 picks the nearest f16 (ties to even) for random finite inputs', () => {
    // Independent reference: binary search over the sorted non-negative finite f16 values.
    const values: number[] = [];
    for (let h = 0; h < 0x7c00; h++) values.push(bitsToF32(f16BitsToF32Bits(h)));
    const rng = new Rng(7);
    for (let k = 0; k < 20000; k++) {
      // Exponents spread over the f16 range and a bit beyond.
      const bits = ((rng.int(2) << 31) | ((rng.int(50) + 96) << 23) | rng.int(1 << 23)) >>> 0;
      const x = bitsToF32(bits);
      const a = Math.abs(x);
      let lo = 0;
      let hi = values.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if ((values[mid] as number) <= a) lo = mid;
        else hi = mid;
      }
      const vLo = values[lo] as number;
      const vHi = values[hi] as number;
      let want: number;
      if (a >= 65520) want = 0x7c00;
      else if (a <= vLo) want = lo;
      else if (a >= vHi) want = hi;
      else if (a - vLo < vHi - a) want = lo;
      else if (a - vLo > vHi - a) want = hi;
      else want = lo % 2 === 0 ? lo : hi;
      if (x < 0 || Object.is(x, -0)) want |= 0x8000;
      expect(hex(f32BitsToF16Bits(bits), 4), `f32 ${hex(bits, 8)}`).to.equal(hex(want, 4));
    }
  });

  it('array conversions keep NaN payloads and -0', () => {
    const bits = new Uint32Array([0x7fa02000, 0x80000000, 0x3f800000, 0xffc01000]);
    const f = new Float32Array(bits.buffer);
    const h = f32ArrayToF16(f);
    expect([...h].map((x) => hex(x, 4))).to.deep.equal(['0x7f01', '0x8000', '0x3c00', '0xfe00']);
    expect([...new Uint32Array(f16ArrayToF32(h).buffer)].map((x) => hex(x, 8))).to.deep.equal(['0x7fe02000', '0x80000000', '0x3f800000', '0xffc00000']);
    const b = f32ArrayToBf16(f);
    expect([...b].map((x) => hex(x, 4))).to.deep.equal(['0x7fe0', '0x8000', '0x3f80', '0xffc0']);
    expect([...new Uint32Array(bf16ArrayToF32(new Uint16Array([0x7f81, 0x8000])).buffer)].map((x) => hex(x, 8))).to.deep.equal(['0x7f810000', '0x80000000']);
  });
});
