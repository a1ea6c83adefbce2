/** Test helpers: random operands and an independent HF BitNet packer. */
import type { Rng } from '@bitdistill/core';

/**
 * Packs W [out, in] (-1/0/+1) as transformers' `pack_weights` does (integrations/bitnet.py): U8
 * [ceil(out/4), in], packed row p holds original row i*ceil(out/4)+p in bits 2i..2i+1 as value + 1.
 */
export function packHF(w: Int8Array, out: number, inF: number): Uint8Array {
  const prow = Math.ceil(out / 4);
  const packed = new Uint8Array(prow * inF);
  for (let o = 0; o < out; o++) {
    const i = Math.floor(o / prow);
    const p = o % prow;
    for (let j = 0; j < inF; j++) packed[p * inF + j] = (packed[p * inF + j] as number) | (((w[o * inF + j] as number) + 1) << (2 * i));
  }
  return packed;
}

export function randomTernary(rng: Rng, n: number): Int8Array {
  return Int8Array.from({ length: n }, () => rng.int(3) - 1);
}

export function randomInt8(rng: Rng, n: number): Int8Array {
  return Int8Array.from({ length: n }, () => rng.int(256) - 128);
}

export function randomF32(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** The first index where two arrays differ, or -1. */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}
