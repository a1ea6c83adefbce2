import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError, FormatError, ShapeError, UnsupportedError } from '@bitdistill/core';
import {
  bitnetGgufName,
  bitnetHfName,
  ggufArray,
  ggufMeta,
  gv,
  isGgufFile,
  packTernaryGgml,
  parseGguf,
  readGguf,
  writeGguf,
  type GgufTensor,
  type GgufValue,
} from '../src/index.ts';
import { SCALAR_META, ggufSampleTensors } from './fixtures.ts';
import { serializeGgufHeader } from '../src/gguf.ts';

const dir = mkdtempSync(join(tmpdir(), 'bitdistill-gguf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function sampleTensors(): GgufTensor[] {
  return [
    ...ggufSampleTensors(),
    { name: 'blk.0.attn_k.weight', type: 'TQ1_0', dims: [512, 1], data: packTernaryGgml('TQ1_0', new Int8Array(512).fill(-1), 1, 512, Float32Array.of(2)) },
  ];
}

const sampleMeta: [string, GgufValue][] = [
  ['general.architecture', gv.str('bitnet')],
  ['general.alignment', gv.u32(32)],
  ...SCALAR_META,
  ['tokens', gv.strings(['<unk>', '▁the', 'é', ''])],
  ['nested', { type: 'array', itemType: 'array', items: [gv.i32s([1, 2]), gv.i32s([])] }],
];

describe('GGUF v3 reader/writer', () => {
  it('round-trips metadata of every value type and tensors of every supported type', () => {
    const path = join(dir, 'a.gguf');
    const size = writeGguf(path, sampleMeta, sampleTensors());
    expect(readFileSync(path).length).to.equal(size);
    expect(isGgufFile(path)).to.equal(true);
    const f = readGguf(path);
    expect(f.version).to.equal(3);
    expect(f.alignment).to.equal(32);
    expect(f.dataStart % 32).to.equal(0);
    expect([...f.metadata.keys()]).to.deep.equal(sampleMeta.map(([k]) => k));
    const expected = new Map(sampleMeta);
    expected.set('f32', gv.f32(Math.fround(1e-5)));
    expect(f.metadata).to.deep.equal(expected);
    expect(ggufMeta(f, 'general.architecture', 'string').value).to.equal('bitnet');
    expect(ggufArray(f, 'tokens', 'string').map((v) => v.value)).to.deep.equal(['<unk>', '▁the', 'é', '']);
    const src = sampleTensors();
    expect(f.tensors.map((t) => [t.name, t.type, t.dims])).to.deep.equal(src.map((t) => [t.name, t.type, t.dims]));
    f.tensors.forEach((t, i) => {
      expect(t.offset % 32).to.equal(0);
      expect(Buffer.from(t.data).equals(Buffer.from((src[i] as GgufTensor).data))).to.equal(true);
    });
    // Offsets: each tensor starts at the previous one's end rounded up to 32.
    expect(f.tensors.map((t) => t.offset)).to.deep.equal([0, 32, 64, 224]); // 24 B, 8 B, 2 x 66 B, 2 x 54 B
  });

  it('readGguf reads the header in growing pieces and each tensor on its own: equal to parsing the whole file', () => {
    const path = join(dir, 'pieces.gguf');
    writeGguf(path, sampleMeta, sampleTensors());
    const whole = parseGguf(readFileSync(path), path);
    for (const piece of [24, 25, 37, 64, 100, 257, 1 << 20]) {
      const f = readGguf(path, piece);
      expect(f.metadata, `piece ${piece}`).to.deep.equal(whole.metadata);
      expect(f.dataStart).to.equal(whole.dataStart);
      expect(f.tensors.map((t) => [t.name, t.type, t.dims, t.offset, Buffer.from(t.data).toString('hex')])).to.deep.equal(
        whole.tensors.map((t) => [t.name, t.type, t.dims, t.offset, Buffer.from(t.data).toString('hex')]),
      );
    }
    // A truncated file is still a FormatError naming the file, from every piece size.
    const bytes = readFileSync(path);
    for (const cut of [20, 60, bytes.length - 10]) {
      const t = join(dir, `cut-${cut}.gguf`);
      writeFileSync(t, bytes.subarray(0, cut));
      for (const piece of [24, 64, 1 << 20]) expect(() => readGguf(t, piece), `cut ${cut} piece ${piece}`).to.throw(FormatError, /cut-/);
    }
  });

  it('writes the exact header bytes of the spec for a tiny file', () => {
    const { header } = serializeGgufHeader([['a', gv.u32(7)]], [{ name: 't', type: 'F32', dims: [1], data: new Uint8Array(4) }]);
    const expected = Buffer.concat([
      Buffer.from('GGUF', 'latin1'),
      Buffer.from([3, 0, 0, 0]), // version
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), // tensor_count
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), // metadata_kv_count
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from('a'),
      Buffer.from([4, 0, 0, 0]),
      Buffer.from([7, 0, 0, 0]), // "a": uint32 7
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from('t'),
      Buffer.from([1, 0, 0, 0]),
      Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), // "t", 1 dim, ne0 = 1
      Buffer.from([0, 0, 0, 0]),
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), // F32, offset 0
    ]);
    expect(header.length).to.equal(96); // 83 bytes padded to 32
    expect(Buffer.from(header.subarray(0, expected.length)).equals(expected)).to.equal(true);
    expect(header.subarray(expected.length).every((b) => b === 0)).to.equal(true);
  });

  it('honours a larger alignment when general.alignment says so', () => {
    const path = join(dir, 'align64.gguf');
    writeGguf(path, [['general.alignment', gv.u32(64)]], sampleTensors(), { alignment: 64 });
    const f = readGguf(path);
    expect(f.alignment).to.equal(64);
    expect(f.dataStart % 64).to.equal(0);
    expect(f.tensors.every((t) => t.offset % 64 === 0)).to.equal(true);
    expect(() => serializeGgufHeader([], sampleTensors(), 64)).to.throw(ArgumentError, /general.alignment/);
    expect(() => serializeGgufHeader([['general.alignment', gv.u32(32)]], [], 64)).to.throw(ArgumentError, /must be uint32 64/);
  });

  it('refuses bad tensors and metadata when writing', () => {
    const t = sampleTensors()[0] as GgufTensor;
    expect(() =>
      serializeGgufHeader(
        [
          ['a', gv.u32(1)],
          ['a', gv.u32(2)],
        ],
        [],
      ),
    ).to.throw(ArgumentError, /given twice/);
    expect(() => serializeGgufHeader([['k', gv.u32(-1)]], [])).to.throw(ArgumentError, /does not fit type uint32/);
    expect(() => serializeGgufHeader([], [t, t])).to.throw(ArgumentError, /given twice/);
    expect(() => serializeGgufHeader([], [{ ...t, name: 'x'.repeat(64) }])).to.throw(ArgumentError, /1..63 bytes/);
    expect(() => serializeGgufHeader([], [{ ...t, dims: [4, 2] }])).to.throw(ShapeError, /24 bytes, expected 32/);
    expect(() => serializeGgufHeader([], [{ name: 'q', type: 'TQ2_0', dims: [128, 2], data: new Uint8Array(66) }])).to.throw(ShapeError, /multiple of 256/);
  });

  it('never leaves a partial file: a failing check before the rename removes the temporary file', () => {
    const path = join(dir, 'never.gguf');
    expect(() =>
      writeGguf(path, [], sampleTensors(), {
        beforeRename: (tmp) => {
          expect(existsSync(tmp)).to.equal(true);
          throw new Error('verification failed');
        },
      }),
    ).to.throw(/verification failed/);
    expect(readdirSync(dir).filter((f) => f.startsWith('never'))).to.deep.equal([]);
  });

  describe('reader checks every length and offset', () => {
    const good = (): Uint8Array => {
      const path = join(dir, 'good.gguf');
      writeGguf(path, sampleMeta, sampleTensors());
      return new Uint8Array(readFileSync(path));
    };
    const u32At = (b: Uint8Array, o: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(o, v, true);
    const u64At = (b: Uint8Array, o: number, v: bigint) => new DataView(b.buffer, b.byteOffset).setBigUint64(o, v, true);

    it('bad magic, version 1, unknown version', () => {
      const b = good();
      b[0] = 0x47 + 1;
      expect(() => parseGguf(b, 'f')).to.throw(FormatError, /magic/);
      const v1 = good();
      u32At(v1, 4, 1);
      expect(() => parseGguf(v1, 'f')).to.throw(UnsupportedError, /version 1/);
      const v9 = good();
      u32At(v9, 4, 9);
      expect(() => parseGguf(v9, 'f')).to.throw(FormatError, /version 9/);
    });

    it('truncation anywhere is a FormatError, never a crash or a huge allocation', () => {
      const b = good();
      for (const n of [0, 10, 23, 24, 40, 200, b.length - 100, b.length - 1]) expect(() => parseGguf(b.subarray(0, n), 'f'), `at ${n}`).to.throw(FormatError);
      const huge = good();
      u64At(huge, 16, 2n ** 40n); // metadata_kv_count
      expect(() => parseGguf(huge, 'f')).to.throw(FormatError, /cannot fit/);
      const long = good();
      u64At(long, 24, 2n ** 50n); // length of the first key
      expect(() => parseGguf(long, 'f')).to.throw(FormatError, /needs/);
    });

    it('duplicate keys, bad bools, unknown value and tensor types, misaligned or overlapping tensors', () => {
      const write = (meta: [string, GgufValue][], tensors: GgufTensor[]): Uint8Array => {
        const p = join(dir, 'x.gguf');
        writeGguf(p, meta, tensors);
        return new Uint8Array(readFileSync(p));
      };
      const dupe = write(
        [
          ['aa', gv.u32(1)],
          ['ab', gv.u32(2)],
        ],
        [],
      );
      dupe[24 + 8 + 1] = 'a'.charCodeAt(0); // rename 'ab' -> 'aa' (second key's last byte)
      dupe[24 + 8 + 2 + 4 + 4 + 8 + 1] = 'a'.charCodeAt(0);
      expect(() => parseGguf(dupe, 'f')).to.throw(FormatError, /appears twice/);
      const bool = write([['b', gv.bool(true)]], []);
      bool[24 + 8 + 1 + 4] = 2;
      expect(() => parseGguf(bool, 'f')).to.throw(FormatError, /bool byte is 2/);
      const vt = write([['b', gv.bool(true)]], []);
      u32At(vt, 24 + 8 + 1, 13);
      expect(() => parseGguf(vt, 'f')).to.throw(FormatError, /unknown metadata value type 13/);
      const one: GgufTensor[] = [
        { name: 't', type: 'F32', dims: [8], data: new Uint8Array(32) },
        { name: 'u', type: 'F32', dims: [8], data: new Uint8Array(32) },
      ];
      const infoAt = 24; // no metadata: the first tensor info follows the header
      const typeOff = infoAt + 8 + 1 + 4 + 8;
      const tt = write([], one);
      u32At(tt, typeOff, 12); // Q4_K
      expect(() => parseGguf(tt, 'f')).to.throw(UnsupportedError, /ggml type 12/);
      const mis = write([], one);
      u64At(mis, typeOff + 4, 4n);
      expect(() => parseGguf(mis, 'f')).to.throw(FormatError, /not a multiple of the alignment/);
      const ov = write([], one);
      u64At(ov, typeOff + 4 + 8 + 8 + 1 + 4 + 8 + 4, 0n); // second tensor's offset -> 0
      expect(() => parseGguf(ov, 'f')).to.throw(FormatError, /overlaps/);
      const past = write([], one);
      u64At(past, typeOff - 8, 1024n); // first tensor ne0 = 1024
      expect(() => parseGguf(past, 'f')).to.throw(FormatError, /overlaps|past the end/);
    });

    it('a file that is not GGUF is recognised as such', () => {
      const p = join(dir, 'not.gguf');
      writeFileSync(p, 'hello');
      expect(isGgufFile(p)).to.equal(false);
      expect(isGgufFile(join(dir, 'missing'))).to.equal(false);
    });
  });

  it('maps Hugging Face names to llama.cpp bitnet tensor names and back', () => {
    const pairs: [string, string][] = [
      ['model.embed_tokens.weight', 'token_embd.weight'],
      ['model.norm.weight', 'output_norm.weight'],
      ['model.layers.0.input_layernorm.weight', 'blk.0.attn_norm.weight'],
      ['model.layers.3.self_attn.q_proj.weight', 'blk.3.attn_q.weight'],
      ['model.layers.3.self_attn.attn_sub_norm.weight', 'blk.3.attn_sub_norm.weight'],
      ['model.layers.3.self_attn.o_proj.weight', 'blk.3.attn_output.weight'],
      ['model.layers.12.post_attention_layernorm.weight', 'blk.12.ffn_norm.weight'],
      ['model.layers.12.mlp.ffn_sub_norm.weight', 'blk.12.ffn_sub_norm.weight'],
      ['model.layers.12.mlp.down_proj.weight', 'blk.12.ffn_down.weight'],
    ];
    for (const [hf, g] of pairs) {
      expect(bitnetGgufName(hf)).to.equal(g);
      expect(bitnetHfName(g)).to.equal(hf);
    }
    expect(bitnetGgufName('lm_head.weight')).to.equal(null); // the bitnet graph reuses token_embd
    expect(bitnetGgufName('model.layers.0.self_attn.q_sub_norm.weight')).to.equal(null); // allnorm has no slot
    expect(bitnetHfName('output.weight')).to.equal(null);
  });
});
