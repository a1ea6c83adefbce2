import { expect } from 'chai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError } from '@bitdistill/core';
import { dequantizeQ8_0, gv, quantizeQ8_0, readGguf, writeGguf } from '../src/index.ts';
import { Q8_0_BLOCK_BYTES } from '../src/q8.ts';

describe('Q8_0 (llama.cpp block_q8_0)', () => {
  it('writes the bytes of quantize_row_q8_0_ref: fp16 d = amax/127, codes rounded half away from zero', () => {
    // Block 0: amax 127 -> d = 1 exactly, codes are roundf(x): 2.5 -> 3 and -63.5 -> -64 (round-half-even would
    // give 2 and -64); block 1 is all zero (d = 0); block 2: amax 254 -> d = 2, 3 -> roundf(1.5) = 2.
    const x = new Float32Array(96);
    x.set([127, -63.5, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49], 0);
    x.set([254, 3, -3, 1], 64);
    const q = quantizeQ8_0(x);
    expect(q.length).to.equal(3 * Q8_0_BLOCK_BYTES);
    const v = new DataView(q.buffer);
    expect(v.getUint16(0, true)).to.equal(0x3c00); // fp16 1.0
    expect(Array.from(new Int8Array(q.buffer, 2, 8))).to.deep.equal([127, -64, 1, -1, 2, 3, -3, 0]);
    expect(Array.from(q.subarray(34, 68))).to.deep.equal(new Array(34).fill(0));
    expect(v.getUint16(68, true)).to.equal(0x4000); // fp16 2.0
    expect(Array.from(new Int8Array(q.buffer, 70, 4))).to.deep.equal([127, 2, -2, 1]);
    const back = dequantizeQ8_0(q, 96);
    expect(Array.from(back.subarray(0, 8))).to.deep.equal([127, -64, 1, -1, 2, 3, -3, 0]);
    expect(Array.from(back.subarray(64, 68))).to.deep.equal([254, 4, -4, 2]);
  });

  it('round-trips within half a step of each block and through a GGUF file', () => {
    const x = Float32Array.from({ length: 32 * 40 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const q = quantizeQ8_0(x);
    const back = dequantizeQ8_0(q, x.length);
    for (let b = 0; b < 40; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j] as number));
      for (let j = 0; j < 32; j++) expect(Math.abs((back[b * 32 + j] as number) - (x[b * 32 + j] as number))).to.be.at.most((amax / 127) * 0.5 + amax * 1e-3);
    }
    const path = join(mkdtempSync(join(tmpdir(), 'q8-')), 'm.gguf');
    writeGguf(path, [['general.architecture', gv.str('test')]], [{ name: 'token_embd.weight', type: 'Q8_0', dims: [64, 20], data: q }]);
    const f = readGguf(path);
    expect(f.tensors[0]?.type).to.equal('Q8_0');
    expect(Array.from(dequantizeQ8_0(f.tensors[0]?.data as Uint8Array, 64 * 20))).to.deep.equal(Array.from(back));
  });

  it('refuses partial blocks and a wrong byte count, naming the tensor', () => {
    expect(() => quantizeQ8_0(new Float32Array(33))).to.throw(/whole number of 32-value blocks/);
    expect(() => dequantizeQ8_0(new Uint8Array(33), 32, 'm.gguf: token_embd.weight')).to.throw(FormatError, /token_embd.weight.*33 bytes, expected 34/);
  });
});
