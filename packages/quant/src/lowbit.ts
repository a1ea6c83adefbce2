/**
 * Low-bit float formats for fake-quantized training GEMMs (issue 22, step 1): FP8 E4M3 and E5M2, FP4 E2M1, and
 * NVFP4 (E2M1 values in blocks of 16 with an E4M3 scale per block under a float32 tensor scale). tfjs-free
 * reference numerics, checked against an independent numpy script (scripts/reference/golden_lowbit.py, every
 * representable value, ties, saturation, subnormals: test/golden/lowbit.json).
 *
 * Rounding is to nearest, ties to the even code (the IEEE default, as torch's float8 casts); anything beyond the
 * largest finite value saturates to it (the training-recipe convention; E4M3 has no infinity, its S.1111.111 is
 * NaN, so its largest finite value is 448). NaN stays NaN. Stochastic rounding (`u` given) goes up to the next
 * value with probability equal to the distance from the lower one over the spacing: unbiased, E[q(x)] = x below
 * the saturation point.
 */
import { ArgumentError, type Rng } from '@bitdistill/core';

export interface LowBitFormat {
  readonly name: 'e4m3' | 'e5m2' | 'e2m1';
  readonly mantissaBits: number;
  readonly bias: number;
  /** The largest finite value. */
  readonly max: number;
}

export const LOWBIT_FORMATS: Readonly<Record<LowBitFormat['name'], LowBitFormat>> = {
  e4m3: { name: 'e4m3', mantissaBits: 3, bias: 7, max: 448 },
  e5m2: { name: 'e5m2', mantissaBits: 2, bias: 15, max: 57344 },
  e2m1: { name: 'e2m1', mantissaBits: 1, bias: 1, max: 6 },
};

/** A float64 and its two 32-bit halves; U32[HI] holds the sign, the exponent and the top mantissa bits. */
const F64 = new Float64Array(1);
const U32 = new Uint32Array(F64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian hosts: the second word
/** 2^i for i in [-POW2_OFFSET, 1024 - 1]: every spacing a format can have in a binade a double can reach. */
const POW2_OFFSET = 1100;
const POW2 = Float64Array.from({ length: POW2_OFFSET + 1024 }, (_, i) => 2 ** (i - POW2_OFFSET));

/**
 * x rounded to a value of `fmt`, as a double: to the nearest (ties to the even code) or, with `u` (uniform in
 * [0, 1)), stochastically: up when u < (|x| - lower) / spacing. Both saturate at ±max.
 */
export function roundToLowBit(x: number, fmt: LowBitFormat, u?: number): number {
  if (Number.isNaN(x)) return x;
  const a = Math.abs(x);
  if (a === 0) return x;
  // The binade of a, floor(log2 a), read exactly from the float64 exponent field (a double subnormal reads
  // -1023, below every format's range), with subnormals sharing the smallest normal exponent; then the spacing
  // of the format's values in it. Bits instead of Math.log2: exact, and ~3x faster on the training GEMMs' operands.
  F64[0] = a;
  const e = Math.max((((U32[HI] as number) >>> 20) & 0x7ff) - 1023, 1 - fmt.bias);
  const quantum = POW2[e - fmt.mantissaBits + POW2_OFFSET] as number;
  const r = a / quantum; // exact: a power-of-two division
  const fl = Math.floor(r);
  const frac = r - fl;
  // The code's last bit is the last mantissa bit, i.e. the parity of fl (binade boundaries land on even counts).
  const n = u !== undefined ? (u < frac ? fl + 1 : fl) : frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const v = Math.min(n * quantum, fmt.max);
  return x < 0 ? -v : v;
}

/**
 * Every value of `x` rounded to `fmt` after dividing by `scale` (and multiplied back): per-tensor fake quantization;
 * stochastic rounding when an `rng` is given (one draw per value, in order: reproducible from the seed).
 */
export function fakeQuantLowBit(x: Float32Array, fmt: LowBitFormat, scale = 1, out = new Float32Array(x.length), rng?: Rng): Float32Array {
  if (!(scale > 0 && Number.isFinite(scale))) throw new ArgumentError(`fakeQuantLowBit: scale must be finite and > 0, got ${scale}`);
  if (out.length !== x.length) throw new ArgumentError(`fakeQuantLowBit: out has ${out.length} values, x ${x.length}`);
  for (let i = 0; i < x.length; i++) out[i] = roundToLowBit(Math.fround((x[i] as number) / scale), fmt, rng?.next()) * scale;
  return out;
}

/** The per-tensor scale that maps the largest |x| onto the format's largest value (1 for an all-zero tensor). */
export function lowBitTensorScale(x: Float32Array, fmt: LowBitFormat): number {
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i] as number));
  return amax > 0 ? Math.fround(amax / fmt.max) : 1;
}

/**
 * NVFP4 fake quantization: a float32 tensor scale S = amax / (6 x 448); per block of 16 values an E4M3 block scale
 * s_b = e4m3(amax_b / 6 / S); each value e2m1(x / (s_b S)) x s_b S (a block whose scale rounds to 0 becomes 0).
 * x.length must be a multiple of 16.
 */
export function fakeQuantNvfp4(x: Float32Array, out = new Float32Array(x.length)): Float32Array {
  if (x.length % 16 !== 0) throw new ArgumentError(`fakeQuantNvfp4: ${x.length} values is not a whole number of 16-value blocks`);
  if (out.length !== x.length) throw new ArgumentError(`fakeQuantNvfp4: out has ${out.length} values, x ${x.length}`);
  const { e4m3, e2m1 } = LOWBIT_FORMATS;
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i] as number));
  const S = amax > 0 ? Math.fround(amax / (e2m1.max * e4m3.max)) : 1;
  for (let b = 0; b < x.length; b += 16) {
    let bmax = 0;
    for (let i = b; i < b + 16; i++) bmax = Math.max(bmax, Math.abs(x[i] as number));
    const sb = roundToLowBit(Math.fround(bmax / e2m1.max / S), e4m3);
    if (sb === 0) {
      out.fill(0, b, b + 16);
      continue;
    }
    const scale = Math.fround(sb * S);
    for (let i = b; i < b + 16; i++) out[i] = roundToLowBit(Math.fround((x[i] as number) / scale), e2m1) * scale;
  }
  return out;
}
