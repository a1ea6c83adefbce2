/**
 * IEEE binary16 (F16) and bfloat16 (BF16) <-> binary32 (F32) conversions on bit patterns.
 * f32 -> f16/bf16 rounds to nearest, ties to even, with gradual underflow (f16 subnormals) and overflow to
 * infinity; NaNs stay NaN, keep their sign and the top payload bits, and are made quiet. f16/bf16 -> f32 is exact
 * (the wider format holds every value) and keeps NaN payloads.
 * The array versions work on the raw bits, so NaN payloads survive (a JS number may not carry them).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bits of a binary32 -> bits of the nearest binary16. */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00; // infinity
    return sign | 0x7e00 | (mant >>> 13); // quiet NaN, top payload bits kept
  }
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large even before rounding
  if (e <= 0) {
    // Subnormal result: value = m * 2^(e-14) units of 2^-24. Below half the smallest subnormal -> signed zero.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) === 1)) q++; // a carry into 0x400 is the smallest normal
    return sign | q;
  }
  let q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) === 1)) q++; // a carry may reach 0x7c00 = infinity
  return sign | q;
}

/** Bits of a binary16 -> bits of the same value as binary32 (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal: shift the mantissa up until its leading 1 is the implicit bit.
    let e = 113; // exponent of 2^-14 as binary32, minus the shifts below
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** Bits of a binary32 -> bits of the nearest bfloat16 (the top 16 bits, rounded). */
export function f32BitsToBf16Bits(bits: number): number {
  bits >>>= 0;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff; // overflow carries into the exponent: max finite -> infinity
}

/** Bits of a bfloat16 -> bits of the same value as binary32 (exact). */
export function bf16BitsToF32Bits(h: number): number {
  return (h << 16) >>> 0;
}

/** A number (rounded to f32 first) -> f16 bits. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(u32[0] as number);
}

/** f16 bits -> the number it holds. */
export function f16ToF32(h: number): number {
  u32[0] = f16BitsToF32Bits(h);
  return f32[0] as number;
}

/** A number (rounded to f32 first) -> bf16 bits. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  return f32BitsToBf16Bits(u32[0] as number);
}

/** bf16 bits -> the number it holds. */
export function bf16ToF32(h: number): number {
  u32[0] = bf16BitsToF32Bits(h);
  return f32[0] as number;
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

export function f32ArrayToF16(a: Float32Array): Uint16Array {
  const src = bitsOf(a);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < out.length; i++) out[i] = f32BitsToF16Bits(src[i] as number);
  return out;
}

export function f16ArrayToF32(a: Uint16Array): Float32Array {
  const out = new Float32Array(a.length);
  const dst = bitsOf(out);
  for (let i = 0; i < a.length; i++) dst[i] = f16BitsToF32Bits(a[i] as number);
  return out;
}

export function f32ArrayToBf16(a: Float32Array): Uint16Array {
  const src = bitsOf(a);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < out.length; i++) out[i] = f32BitsToBf16Bits(src[i] as number);
  return out;
}

export function bf16ArrayToF32(a: Uint16Array): Float32Array {
  const out = new Float32Array(a.length);
  const dst = bitsOf(out);
  for (let i = 0; i < a.length; i++) dst[i] = bf16BitsToF32Bits(a[i] as number);
  return out;
}
