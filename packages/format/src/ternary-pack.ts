/**
 * Ternary weights packed 4 per byte in the layout of Hugging Face transformers' BitNet integration
 * (`pack_weights` / `unpack_weights` in src/transformers/integrations/bitnet.py), so exported models load there.
 * A weight W [out, in] (values -1, 0, +1) becomes U8 [rows, in] with rows = ceil(out / 4); code = value + 1;
 * packed row p, bits 2i..2i+1, hold original row i * rows + p. Rows are packed in four contiguous blocks, not
 * interleaved, so packed[p, j] = sum_i code(W[i * rows + p, j]) << 2i. Slots past `out` (when out % 4 != 0)
 * are written as 0 bits, as HF does, and ignored on unpack. Code 3 never occurs in a valid tensor.
 */
import { ArgumentError, FormatError, ShapeError } from '@bitdistill/core';

function checkDims(what: string, out: number, inF: number): number {
  if (!Number.isSafeInteger(out) || !Number.isSafeInteger(inF) || out < 1 || inF < 1) {
    throw new ArgumentError(`${what}: out and in must be positive integers, got out=${out} in=${inF}`);
  }
  return Math.ceil(out / 4);
}

/** Pack W [out, in] (row-major Int8Array of -1/0/+1) into U8 [ceil(out / 4), in]. */
export function packTernaryHF(values: Int8Array, out: number, inF: number): Uint8Array {
  const rows = checkDims('packTernaryHF', out, inF);
  if (values.length !== out * inF) throw new ShapeError(`packTernaryHF: ${values.length} values do not form [${out}, ${inF}]`);
  const packed = new Uint8Array(rows * inF);
  for (let r = 0; r < out; r++) {
    const i = Math.floor(r / rows); // which 2-bit slot
    const p = r - i * rows; // which packed row
    for (let j = 0; j < inF; j++) {
      const v = values[r * inF + j] as number;
      if (v !== -1 && v !== 0 && v !== 1) {
        throw new ArgumentError(`packTernaryHF: W[${r}, ${j}] = ${v}; ternary weights are -1, 0 or +1`);
      }
      packed[p * inF + j] = (packed[p * inF + j] as number) | ((v + 1) << (2 * i));
    }
  }
  return packed;
}

/**
 * Unpack U8 [ceil(out / 4), in] into W [out, in] (Int8Array of -1/0/+1). `label` names the file or tensor in the
 * FormatError thrown for a code of 3.
 */
export function unpackTernaryHF(packed: Uint8Array, out: number, inF: number, label = '<packed ternary>'): Int8Array {
  const rows = checkDims('unpackTernaryHF', out, inF);
  if (packed.length !== rows * inF) {
    throw new ShapeError(`unpackTernaryHF: ${packed.length} bytes do not form [${rows}, ${inF}] (ceil(${out} / 4) rows)`);
  }
  const w = new Int8Array(out * inF);
  for (let p = 0; p < rows; p++) {
    for (let j = 0; j < inF; j++) {
      const b = packed[p * inF + j] as number;
      for (let i = 0; i < 4; i++) {
        const code = (b >> (2 * i)) & 3;
        const r = i * rows + p;
        if (code === 3) {
          throw new FormatError(
            label,
            `packed ternary byte [${p}, ${j}] = 0x${b.toString(16).padStart(2, '0')} holds code 3 in bits ${2 * i}..${2 * i + 1} (row ${r}); valid codes are 0, 1, 2 for -1, 0, +1`,
            {
              hint: 'the tensor is not in the Hugging Face BitNet packing (or the file is corrupt)',
            },
          );
        }
        if (r < out) w[r * inF + j] = code - 1;
      }
    }
  }
  return w;
}
