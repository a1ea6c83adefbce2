// Seeded fuzzing of the llama2.c checkpoint reader: every mutated file must either parse into tensors whose shapes
// follow its header (and fill the file exactly) or be refused with a FormatError (UnsupportedError for the v1/v2
// "ak42" layouts). A RangeError, a TypeError or an allocation sized by a corrupt header is a reader bug.
// readLlama2c (header first, then the file) must reach the same outcome as parseLlama2c on the bytes.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@bitdistill/core';
import { addToInt, append, randomizeBytes, runCases, setInt, truncate, writeInt, type Mutator } from '../../../scripts/fuzz/mutate.ts';
import { parseLlama2c, readLlama2c, type Llama2cCheckpoint } from '../src/index.ts';
import { bothReaders } from './fixtures.ts';

const SEED = 20250121;

/** A v0 file: header ints, then as many random floats as the header implies. */
function synth(rng: Rng, h: [dim: number, hidden: number, layers: number, heads: number, kvHeads: number, vocab: number, seqLen: number]): Uint8Array {
  const [D, H, L, nh, nkv, V, S] = h;
  const hd = D / nh;
  const kv = nkv * hd;
  const floats = Math.abs(V) * D + L * (D + D * D + 2 * kv * D + D * D + D + 3 * H * D) + D + S * hd + (V < 0 ? -V * D : 0);
  const out = new Uint8Array(28 + 4 * floats);
  const dv = new DataView(out.buffer);
  h.forEach((v, i) => dv.setInt32(4 * i, v, true));
  for (let i = 0; i < floats; i++) dv.setFloat32(28 + 4 * i, rng.normal(), true);
  return out;
}

const INTS = [0, 1, -1, 2, 3, 7, 8, 16, 1023, 1024, 1025, 65536, 65537, 1 << 22, (1 << 22) + 1, 2 ** 31 - 1, -(2 ** 31), -8, -32];

const MUTATORS: Mutator[] = [
  truncate(),
  truncate(() => 29), // inside the header
  setInt({ kind: 'i32', at: (rng) => 4 * rng.int(7), values: INTS }),
  addToInt({ kind: 'i32', at: (rng) => 4 * rng.int(7), max: 4 }),
  randomizeBytes({ at: (rng, n) => rng.int(rng.int(2) === 0 ? 28 : n) }), // half of them in the header
  append({ max: 64, fill: 'zero' }),
  (rng, base) => {
    const out = base.slice();
    writeInt(out, 0, 'u32', 0x616b3432); // "ak42": a v1/v2 export
    writeInt(out, 4, 'i32', rng.int(4));
    return { what: 'v1 magic', bytes: out };
  },
];

function consistent(ck: Llama2cCheckpoint, bytes: number): void {
  const h = ck.header;
  const hd = h.dim / h.nHeads;
  const want = new Map<string, number[]>([
    ['model.embed_tokens.weight', [h.vocabSize, h.dim]],
    ['model.norm.weight', [h.dim]],
  ]);
  for (let l = 0; l < h.nLayers; l++) {
    const p = `model.layers.${l}`;
    want.set(`${p}.input_layernorm.weight`, [h.dim]);
    want.set(`${p}.post_attention_layernorm.weight`, [h.dim]);
    want.set(`${p}.self_attn.q_proj.weight`, [h.dim, h.dim]);
    want.set(`${p}.self_attn.k_proj.weight`, [h.nKvHeads * hd, h.dim]);
    want.set(`${p}.self_attn.v_proj.weight`, [h.nKvHeads * hd, h.dim]);
    want.set(`${p}.self_attn.o_proj.weight`, [h.dim, h.dim]);
    want.set(`${p}.mlp.gate_proj.weight`, [h.hiddenDim, h.dim]);
    want.set(`${p}.mlp.up_proj.weight`, [h.hiddenDim, h.dim]);
    want.set(`${p}.mlp.down_proj.weight`, [h.dim, h.hiddenDim]);
  }
  if (!h.sharedClassifier) want.set('lm_head.weight', [h.vocabSize, h.dim]);
  if (ck.tensors.size !== want.size) throw new Error(`${ck.tensors.size} tensors, expected ${want.size}`);
  let floats = h.seqLen * hd; // freq_cis_real + freq_cis_imag are read past, not returned
  for (const [name, shape] of want) {
    const t = ck.tensors.get(name);
    if (t === undefined || t.shape.join() !== shape.join() || t.data.length !== shape.reduce((a, b) => a * b, 1))
      throw new Error(`tensor ${name}: [${t?.shape.join(', ')}], expected [${shape.join(', ')}]`);
    floats += t.data.length;
  }
  if (28 + 4 * floats !== bytes) throw new Error(`tensors account for ${28 + 4 * floats} bytes of ${bytes}`);
}

function check(buf: Uint8Array, path: string): string {
  const r = bothReaders(buf, path, 'fuzz.bin', parseLlama2c, (p) => readLlama2c(p));
  if (r.parsed !== undefined) consistent(r.parsed[0], buf.length);
  return r.outcome;
}

describe('llama2.c reader fuzz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-llama2c-fuzz-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every mutated file parses consistently or throws FormatError / UnsupportedError, in both readers (seeded, 2000 cases)', async () => {
    const rng = new Rng(SEED);
    const bases = [synth(rng, [8, 12, 2, 2, 1, 32, 4]), synth(rng, [8, 8, 1, 1, 1, -16, 2]), synth(rng, [16, 24, 1, 4, 4, 8, 1])];
    const path = join(dir, 'case.bin');
    for (const b of bases) expect(check(b, path)).to.equal('parsed');
    const { outcomes: tally } = await runCases({ seed: SEED, rng, count: 2000, bases, mutators: MUTATORS, check: (buf) => check(buf, path) });
    console.log(`      outcomes: ${JSON.stringify(tally)}`);
    expect(tally['FormatError'] ?? 0).to.be.greaterThan(1000);
    expect(tally['parsed'] ?? 0).to.be.greaterThan(100);
  });
});
