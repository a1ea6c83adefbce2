import { expect } from 'chai';
import { ArgumentError, FormatError, Rng, ShapeError } from '@bitdistill/core';
import { packTernaryHF, unpackTernaryHF } from '../src/index.ts';

/**
 * A line-by-line port of transformers' `pack_weights` (src/transformers/integrations/bitnet.py), used as the
 * independent reference for shapes whose row count is not a multiple of 4:
 *   row_dim = (out + 3) // 4; it = min(4, out // row_dim + 1)
 *   for i in range(it): start = i * row_dim; end = min(start + row_dim, out); packed[:end - start] |= w[start:end] << 2i
 */
function hfPackWeights(w: Int8Array, out: number, inF: number): Uint8Array {
  const rowDim = Math.floor((out + 3) / 4);
  const packed = new Uint8Array(rowDim * inF);
  const it = Math.min(4, Math.floor(out / rowDim) + 1);
  for (let i = 0; i < it; i++) {
    const start = i * rowDim;
    const end = Math.min(start + rowDim, out);
    for (let r = 0; r < end - start; r++) {
      for (let j = 0; j < inF; j++) packed[r * inF + j] = (packed[r * inF + j] as number) | (((w[(start + r) * inF + j] as number) + 1) << (2 * i));
    }
  }
  return packed;
}

describe('ternary packing (Hugging Face BitNet layout)', () => {
  // The worked example in the docstring of `unpack_weights` in transformers' integrations/bitnet.py.
  const packed = new Uint8Array([0b10100001, 0b00011000, 0b10010000, 0b00001010]); // [2, 2]
  const unpacked = new Int8Array([0, -1, -1, 1, -1, 1, -1, 1, 1, 0, 0, -1, 1, -1, 1, -1]); // [8, 2]

  it('unpacks the transformers docstring example', () => {
    expect([...unpackTernaryHF(packed, 8, 2)]).to.deep.equal([...unpacked]);
  });

  it('packs the docstring example back to the same bytes', () => {
    expect([...packTernaryHF(unpacked, 8, 2)]).to.deep.equal([...packed]);
  });

  it('matches a port of HF pack_weights for every row count 1..13, and round-trips', () => {
    const rng = new Rng(3);
    for (let out = 1; out <= 13; out++) {
      const inF = 1 + rng.int(5);
      const w = Int8Array.from({ length: out * inF }, () => rng.int(3) - 1);
      const p = packTernaryHF(w, out, inF);
      expect(p.length, `out=${out}`).to.equal(Math.ceil(out / 4) * inF);
      expect([...p], `out=${out}`).to.deep.equal([...hfPackWeights(w, out, inF)]);
      expect([...unpackTernaryHF(p, out, inF)], `out=${out}`).to.deep.equal([...w]);
    }
  });

  it('puts original row i*ceil(out/4)+p in bits 2i..2i+1 of packed row p', () => {
    // out = 6 -> 2 packed rows; row 5 = 2 * 2 + 1 is slot i = 2 of packed row p = 1. W[5, 0] = +1 (code 2), the rest -1 (code 0).
    const w = new Int8Array(6).fill(-1);
    w[5] = 1;
    expect([...packTernaryHF(w, 6, 1)]).to.deep.equal([0, 0b00100000]);
  });

  it('rejects code 3 on unpack with a FormatError naming the byte and row', () => {
    expect(() => unpackTernaryHF(new Uint8Array([0b00001100]), 4, 1, 'out/model.safetensors: w')).to.throw(
      FormatError,
      /^out\/model.safetensors: w: packed ternary byte \[0, 0\] = 0x0c holds code 3 in bits 2..3 \(row 1\)/,
    );
    // Also in padding slots past `out`.
    expect(() => unpackTernaryHF(new Uint8Array([0b11000000]), 3, 1)).to.throw(FormatError, /code 3/);
  });

  it('rejects non-ternary values and bad shapes', () => {
    expect(() => packTernaryHF(new Int8Array([0, 2, 0, 0]), 4, 1)).to.throw(ArgumentError, /W\[1, 0\] = 2; ternary weights are -1, 0 or \+1/);
    expect(() => packTernaryHF(new Int8Array(5), 4, 1)).to.throw(ShapeError);
    expect(() => unpackTernaryHF(new Uint8Array(3), 8, 1)).to.throw(ShapeError, /do not form \[2, 1\]/);
    expect(() => packTernaryHF(new Int8Array(0), 0, 1)).to.throw(ArgumentError);
  });
});
