/**
 * ggml's Q8_0 block type (llama.cpp ggml/src/ggml-common.h block_q8_0, ggml-quants.c quantize_row_q8_0_ref): a
 * row is cut into blocks of 32 consecutive values, each stored as an fp16 scale d followed by 32 int8 codes
 * (34 bytes) and decoded as code x d. Quantizing: d = max|x| / 127 over the block, code = roundf(x / d) (half
 * away from zero, as C's roundf), d = 0 and codes 0 for an all-zero block. llama.cpp writes token embeddings
 * of "Q8_0" files this way; BitDistill writes it for the embeddings of the e2e benchmark's GGUF.
 */
import { ArgumentError, FormatError } from '@bitdistill/core';
import { f16ToF32, f32ToF16 } from './half.ts';

export const QK8_0 = 32;
export const Q8_0_BLOCK_BYTES = 2 + QK8_0;

/** The Q8_0 bytes of `x` (length a multiple of 32), as llama.cpp's quantize_row_q8_0_ref writes them. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % QK8_0 !== 0) throw new ArgumentError(`quantizeQ8_0: ${x.length} values is not a whole number of ${QK8_0}-value blocks`);
  const nb = x.length / QK8_0;
  const out = new Uint8Array(nb * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(x[o + j] as number));
    if (!Number.isFinite(amax)) throw new ArgumentError(`quantizeQ8_0: block ${b} holds a non-finite value`);
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    const p = b * Q8_0_BLOCK_BYTES;
    view.setUint16(p, f32ToF16(d), true);
    for (let j = 0; j < QK8_0; j++) {
      const v = Math.fround((x[o + j] as number) * id);
      out[p + 2 + j] = (Math.sign(v) * Math.round(Math.abs(v))) & 0xff; // roundf: half away from zero
    }
  }
  return out;
}

/** Decode `n` values (a multiple of 32) of Q8_0 bytes; `label` names the tensor in errors. */
export function dequantizeQ8_0(bytes: Uint8Array, n: number, label = '<q8_0>'): Float32Array {
  if (!Number.isSafeInteger(n) || n < 0 || n % QK8_0 !== 0) throw new ArgumentError(`dequantizeQ8_0: n must be a multiple of ${QK8_0}, got ${n}`);
  const nb = n / QK8_0;
  if (bytes.length !== nb * Q8_0_BLOCK_BYTES)
    throw new FormatError(label, `Q8_0 data has ${bytes.length} bytes, expected ${nb * Q8_0_BLOCK_BYTES} for ${n} values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < nb; b++) {
    const p = b * Q8_0_BLOCK_BYTES;
    const d = f16ToF32(view.getUint16(p, true));
    if (!Number.isFinite(d)) throw new FormatError(label, `Q8_0 block ${b} has scale ${d}`, { hint: 'the file is corrupt' });
    for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = Math.fround(view.getInt8(p + 2 + j) * d);
  }
  return out;
}
