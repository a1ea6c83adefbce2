// Fixtures shared by the format tests and the tests of the packages above (runtime, export, the end-to-end tests,
// the fuzz campaign): the small Llama config.json files they write, GGUF sample metadata and tensors, and the
// check that a reader gives the same outcome on bytes in memory and on the file.
import { writeFileSync } from 'node:fs';
import { FormatError, UnsupportedError } from '@bitdistill/core';
import { gv, packTernaryGgml, type GgufTensor, type GgufValue } from '../src/index.ts';
import { llama2cConfig } from '../src/llama2c.ts';

/**
 * Llama, 2 layers, hidden 16, 2 heads of 8 (1 KV head), tied embeddings, vocabulary 512 (the stories260K
 * tokenizer), as llama2cConfig writes it: the runtime's and the exporters' validation tests.
 */
export const TINY_LLAMA = llama2cConfig({ dim: 16, hiddenDim: 32, nLayers: 2, nHeads: 2, nKvHeads: 1, vocabSize: 512, seqLen: 64, sharedClassifier: true });

/**
 * Llama, 2 layers, hidden 256 (4 heads of 64, 2 KV heads), intermediate 512, tied, vocabulary 512: the smallest
 * student whose projections fill TQ2_0 / TQ1_0 blocks of 256 (the GGUF export tests, the fuzz campaign's exports).
 */
export const TQ_LLAMA = llama2cConfig({ dim: 256, hiddenDim: 512, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 512, seqLen: 256, sharedClassifier: true });

/** GGUF metadata of every scalar value type, at the edges of its range. */
export const SCALAR_META: readonly [string, GgufValue][] = [
  ['u8', { type: 'uint8', value: 255 }],
  ['i8', { type: 'int8', value: -128 }],
  ['u16', { type: 'uint16', value: 65535 }],
  ['i16', { type: 'int16', value: -32768 }],
  ['i32', gv.i32(-5)],
  ['f32', gv.f32(1e-5)],
  ['f64', { type: 'float64', value: 1e-300 }],
  ['u64', { type: 'uint64', value: 2n ** 64n - 1n }],
  ['i64', { type: 'int64', value: -(2n ** 63n) }],
  ['flag', gv.bool(true)],
];

/** GGUF tensors of type F32, F16 and TQ2_0. */
export function ggufSampleTensors(): GgufTensor[] {
  const f32 = new Float32Array([1, -2, 3.5, 0.25, 5, 6]);
  return [
    { name: 'token_embd.weight', type: 'F32', dims: [3, 2], data: new Uint8Array(f32.buffer) },
    { name: 'half', type: 'F16', dims: [4], data: new Uint8Array([0, 0x3c, 0, 0xc0, 0, 0, 0, 0x7c]) },
    { name: 'blk.0.attn_q.weight', type: 'TQ2_0', dims: [256, 2], data: packTernaryGgml('TQ2_0', new Int8Array(512).fill(1), 2, 256, Float32Array.of(0.5)) },
  ];
}

/**
 * Reads `buf` in memory (`parse`, as `name`) and from a file (`read`, after writing `buf` to `path`); the two
 * must agree: 'parsed', or the same typed error (FormatError, UnsupportedError) with the same message. Returns
 * the outcome and, when parsed, both results. Any other exception propagates: that is a reader bug.
 */
export function bothReaders<T extends object>(
  buf: Uint8Array,
  path: string,
  name: string,
  parse: (b: Uint8Array, name: string) => T,
  read: (path: string) => T,
): { outcome: string; parsed?: [T, T] } {
  const outcome = (f: () => T): [string, string | T] => {
    try {
      return ['parsed', f()];
    } catch (e) {
      if (e instanceof FormatError || e instanceof UnsupportedError) return [e.name, e.message.replace(path, 'FILE').replace(name, 'FILE')];
      throw e;
    }
  };
  const [a, pa] = outcome(() => parse(buf, name));
  writeFileSync(path, buf);
  const [b, pb] = outcome(() => read(path));
  if (a !== b || (typeof pa === 'string' && pa !== pb))
    throw new Error(`in memory: ${a} ${typeof pa === 'string' ? pa : ''}; from the file: ${b} ${typeof pb === 'string' ? pb : ''}`);
  return typeof pa === 'string' || typeof pb === 'string' ? { outcome: a } : { outcome: a, parsed: [pa, pb] };
}
