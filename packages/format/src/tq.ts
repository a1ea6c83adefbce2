/**
 * ggml's ternary block types TQ2_0 and TQ1_0 (llama.cpp ggml/src/ggml-common.h, ggml-quants.c; SPEC.md section 5).
 * A row of a weight [rows, cols] is cut into blocks of QK_K = 256 consecutive values along the input dimension;
 * each block holds 256 codes (value + 1, in 0..2) and one fp16 scale d, and decodes to (code - 1) * d.
 *
 *   block_tq2_0 (66 bytes): qs[64], d.  Byte g*32 + m, bits 2n..2n+1, hold element g*128 + n*32 + m.
 *   block_tq1_0 (54 bytes): qs[48], qh[4], d.  Five base-3 digits per qs byte, four per qh byte, each byte stored
 *     as ceil(v * 256 / 243) so that digit n comes back as ((byte * 3^n) mod 256) * 3 >> 8 (a multiply and a
 *     shift, no division). qs[0..32) hold elements m + 32n (n = 0..4), qs[32..48) elements 160 + m + 16n,
 *     qh[j] elements 240 + j + 4n (n = 0..3, the fifth digit is 0).
 *
 * quantizeRow*Ref / dequantizeRow* are plain twins of llama.cpp's quantize_row_tq*_ref and dequantize_row_tq*:
 * d = max|x| of the block, code = lroundf(x / d) + 1. packTernaryGgml writes codes that are already ternary with
 * our own scale folded into each block's d; on the dequantized weight (codes x scale) it produces the same bytes
 * as the llama.cpp reference, including d = 0 for an all-zero block (tested).
 */
import { ArgumentError, FormatError, ShapeError } from '@bitdistill/core';
import { f16ToF32, f32ToF16 } from './half.ts';

export const QK_K = 256;
export const TQ2_0_BLOCK_BYTES = QK_K / 4 + 2;
export const TQ1_0_BLOCK_BYTES = (QK_K - (4 * QK_K) / 64) / 5 + QK_K / 64 + 2;
const TQ1_QS = (QK_K - (4 * QK_K) / 64) / 5; // 48
const TQ1_QH = QK_K / 64; // 4
const POW3 = [1, 3, 9, 27, 81, 243] as const;

export type TernaryGgmlType = 'TQ1_0' | 'TQ2_0';

export function ternaryBlockBytes(type: TernaryGgmlType): number {
  return type === 'TQ2_0' ? TQ2_0_BLOCK_BYTES : TQ1_0_BLOCK_BYTES;
}

/** C lroundf: nearest integer, halves away from zero. */
function lround(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Element of a TQ1_0 block held by qs/qh byte `byte` (0..51), digit n (0..4); -1 for qh's unused fifth digit. */
function tq1Element(byte: number, n: number): number {
  if (byte < 32) return byte + 32 * n;
  if (byte < TQ1_QS) return 160 + (byte - 32) + 16 * n;
  return n < 4 ? 240 + (byte - TQ1_QS) + TQ1_QH * n : -1;
}

/** Element of a TQ2_0 block held by byte `byte` (0..63), bits 2n. */
function tq2Element(byte: number, n: number): number {
  return Math.floor(byte / 32) * 128 + n * 32 + (byte % 32);
}

/** Encode 256 codes (0..2) into one block's code bytes (d not written). */
function encodeBlock(type: TernaryGgmlType, codes: ArrayLike<number>, dst: Uint8Array, o: number): void {
  if (type === 'TQ2_0') {
    for (let b = 0; b < QK_K / 4; b++) {
      let q = 0;
      for (let n = 0; n < 4; n++) q |= (codes[tq2Element(b, n)] as number) << (2 * n);
      dst[o + b] = q;
    }
    return;
  }
  for (let b = 0; b < TQ1_QS + TQ1_QH; b++) {
    let q = 0;
    for (let n = 0; n < 5; n++) {
      const e = tq1Element(b, n);
      q = q * 3 + (e < 0 ? 0 : (codes[e] as number));
    }
    dst[o + b] = Math.floor((q * 256 + 242) / 243); // ceiling division by 3^5
  }
}

/**
 * Decode one block's code bytes into 256 codes (0..2). Strict: returns the first byte that llama.cpp would never
 * write (else -1); not strict: decodes whatever bits are there, as the C dequantizer does.
 */
function decodeBlock(type: TernaryGgmlType, src: Uint8Array, o: number, codes: Uint8Array, strict: boolean): number {
  if (type === 'TQ2_0') {
    for (let b = 0; b < QK_K / 4; b++) {
      const q = src[o + b] as number;
      for (let n = 0; n < 4; n++) {
        const c = (q >> (2 * n)) & 3;
        if (c === 3 && strict) return b;
        codes[tq2Element(b, n)] = c;
      }
    }
    return -1;
  }
  for (let b = 0; b < TQ1_QS + TQ1_QH; b++) {
    const q = src[o + b] as number;
    let v = 0;
    for (let n = 0; n < 5; n++) {
      const c = (((q * (POW3[n] as number)) & 0xff) * 3) >> 8;
      v = v * 3 + c;
      const e = tq1Element(b, n);
      if (e >= 0) codes[e] = c;
      else if (c !== 0 && strict) return b;
    }
    // Only ceil(v * 256 / 243) for v in 0..242 are written by llama.cpp; anything else is corruption.
    if (strict && Math.floor((v * 256 + 242) / 243) !== q) return b;
  }
  return -1;
}

function checkRow(what: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0 || n % QK_K !== 0) throw new ShapeError(`${what}: ${n} values is not a multiple of ${QK_K} (one block)`);
  return n / QK_K;
}

function quantizeRowRef(type: TernaryGgmlType, x: Float32Array): Uint8Array {
  const nb = checkRow(`quantizeRow${type}Ref`, x.length);
  const bb = ternaryBlockBytes(type);
  const out = new Uint8Array(nb * bb);
  const codes = new Uint8Array(QK_K);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < QK_K; j++) amax = Math.max(amax, Math.abs(x[i * QK_K + j] as number));
    const d = amax;
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    for (let j = 0; j < QK_K; j++) codes[j] = lround(Math.fround((x[i * QK_K + j] as number) * id)) + 1;
    encodeBlock(type, codes, out, i * bb);
    writeF16(out, i * bb + bb - 2, f32ToF16(d));
  }
  return out;
}

function dequantizeRow(type: TernaryGgmlType, blocks: Uint8Array, n: number): Float32Array {
  const nb = checkRow(`dequantizeRow${type}`, n);
  const bb = ternaryBlockBytes(type);
  if (blocks.length !== nb * bb) throw new ShapeError(`dequantizeRow${type}: ${blocks.length} bytes, expected ${nb * bb} for ${n} values`);
  const out = new Float32Array(n);
  const codes = new Uint8Array(QK_K);
  for (let i = 0; i < nb; i++) {
    decodeBlock(type, blocks, i * bb, codes, false);
    const d = f16ToF32(readF16(blocks, i * bb + bb - 2));
    for (let j = 0; j < QK_K; j++) out[i * QK_K + j] = Math.fround(((codes[j] as number) - 1) * d);
  }
  return out;
}

function writeF16(dst: Uint8Array, o: number, h: number): void {
  dst[o] = h & 0xff;
  dst[o + 1] = h >>> 8;
}

function readF16(src: Uint8Array, o: number): number {
  return (src[o] as number) | ((src[o + 1] as number) << 8);
}

/** llama.cpp quantize_row_tq2_0_ref: x.length a multiple of 256 -> TQ2_0 blocks. */
export function quantizeRowTq2_0Ref(x: Float32Array): Uint8Array {
  return quantizeRowRef('TQ2_0', x);
}

/** llama.cpp quantize_row_tq1_0_ref: x.length a multiple of 256 -> TQ1_0 blocks. */
export function quantizeRowTq1_0Ref(x: Float32Array): Uint8Array {
  return quantizeRowRef('TQ1_0', x);
}

/** llama.cpp dequantize_row_tq2_0: n values from TQ2_0 blocks. */
export function dequantizeRowTq2_0(blocks: Uint8Array, n: number): Float32Array {
  return dequantizeRow('TQ2_0', blocks, n);
}

/** llama.cpp dequantize_row_tq1_0: n values from TQ1_0 blocks. */
export function dequantizeRowTq1_0(blocks: Uint8Array, n: number): Float32Array {
  return dequantizeRow('TQ1_0', blocks, n);
}

/**
 * Pack a ternary weight W [rows, cols] (row-major -1/0/+1) as `type` blocks, folding `scales` into each block's
 * fp16 d: one scale (per tensor), `rows` scales (per row) or rows*cols/256 scales (per block of 256 along the
 * row, i.e. in flat order); when a row is one block the last two coincide. A block whose codes are all 0 gets
 * d = 0, as llama.cpp's reference writes for it. Requires cols % 256 == 0.
 */
export function packTernaryGgml(type: TernaryGgmlType, values: Int8Array, rows: number, cols: number, scales: Float32Array): Uint8Array {
  if (!Number.isSafeInteger(rows) || rows < 1 || !Number.isSafeInteger(cols) || cols < 1)
    throw new ArgumentError(`packTernaryGgml: rows and cols must be positive integers, got ${rows}, ${cols}`);
  if (cols % QK_K !== 0) {
    throw new ShapeError(`packTernaryGgml: ${type} needs the input dimension to be a multiple of ${QK_K}, got [${rows}, ${cols}]`, {
      hint: `choose hidden_size and intermediate_size as multiples of ${QK_K}`,
    });
  }
  if (values.length !== rows * cols) throw new ShapeError(`packTernaryGgml: ${values.length} values do not form [${rows}, ${cols}]`);
  const perRow = cols / QK_K;
  const nb = rows * perRow;
  if (scales.length !== 1 && scales.length !== rows && scales.length !== nb) {
    throw new ShapeError(`packTernaryGgml: ${scales.length} scales for [${rows}, ${cols}]; expected 1, ${rows} (per row) or ${nb} (per block)`);
  }
  const bb = ternaryBlockBytes(type);
  const out = new Uint8Array(nb * bb);
  const codes = new Uint8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    let any = false;
    for (let j = 0; j < QK_K; j++) {
      const v = values[b * QK_K + j] as number;
      if (v !== -1 && v !== 0 && v !== 1)
        throw new ArgumentError(`packTernaryGgml: W[${Math.floor(b / perRow)}, ${(b % perRow) * QK_K + j}] = ${v}; ternary weights are -1, 0 or +1`);
      codes[j] = v + 1;
      if (v !== 0) any = true;
    }
    const s = scales.length === 1 ? scales[0] : scales.length === nb ? scales[b] : scales[Math.floor(b / perRow)];
    if (!Number.isFinite(s)) throw new ArgumentError(`packTernaryGgml: scale of block ${b} is ${String(s)}`);
    encodeBlock(type, codes, out, b * bb);
    writeF16(out, b * bb + bb - 2, any ? f32ToF16(s as number) : 0);
  }
  return out;
}

/**
 * Unpack `type` blocks of a [rows, cols] weight into its codes (-1/0/+1, row-major) and the fp16 d of every
 * block (as float32, flat block order). Rejects what llama.cpp never writes: TQ2_0 code 3, TQ1_0 bytes that are
 * not ceil(v * 256 / 243), a non-zero fifth digit in qh, and a d that is not finite.
 */
export function unpackTernaryGgml(
  type: TernaryGgmlType,
  bytes: Uint8Array,
  rows: number,
  cols: number,
  label = `<${type} tensor>`,
): { codes: Int8Array; d: Float32Array } {
  if (cols % QK_K !== 0) throw new FormatError(label, `${type} tensor has ${cols} columns, not a multiple of ${QK_K}`);
  const perRow = cols / QK_K;
  const nb = rows * perRow;
  const bb = ternaryBlockBytes(type);
  if (bytes.length !== nb * bb) throw new FormatError(label, `${type} [${rows}, ${cols}] needs ${nb * bb} bytes (${nb} blocks of ${bb}), got ${bytes.length}`);
  const codes = new Int8Array(rows * cols);
  const d = new Float32Array(nb);
  const block = new Uint8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    const bad = decodeBlock(type, bytes, b * bb, block, true);
    if (bad >= 0) {
      throw new FormatError(
        label,
        `block ${b} (row ${Math.floor(b / perRow)}) byte ${bad} = 0x${(bytes[b * bb + bad] as number).toString(16)} is not a valid ${type} code byte`,
        {
          hint: 'the file is corrupted or was not written by a ggml-compatible writer',
        },
      );
    }
    for (let j = 0; j < QK_K; j++) codes[b * QK_K + j] = (block[j] as number) - 1;
    const dv = f16ToF32(readF16(bytes, b * bb + bb - 2));
    if (!Number.isFinite(dv)) throw new FormatError(label, `block ${b} has scale d = ${dv}`);
    d[b] = dv;
  }
  return { codes, d };
}
