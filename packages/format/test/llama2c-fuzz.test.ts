// Seeded fuzzing of the llama2.c checkpoint reader: every mutated file must either parse into tensors whose shapes
// follow its header (and fill the file exactly) or be refused with a FormatError (UnsupportedError for the v1/v2
// "ak42" layouts). A RangeError, a TypeError or an allocation sized by a corrupt header is a reader bug.
// readLlama2c (header first, then the file) must reach the same outcome as parseLlama2c on the bytes.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, Rng, UnsupportedError } from '@bitdistill/core';
import { parseLlama2c, readLlama2c, type Llama2cCheckpoint } from '../src/index.ts';

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

type Mutator = (rng: Rng, base: Uint8Array) => [string, Uint8Array];
const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)] as T;

const MUTATORS: Mutator[] = [
  (rng, base) => {
    const n = rng.int(base.length);
    return [`truncate to ${n}`, base.slice(0, n)];
  },
  (rng, base) => {
    const n = rng.int(29);
    return [`truncate to ${n} (header)`, base.slice(0, n)];
  },
  (rng, base) => {
    const out = base.slice();
    const i = rng.int(7);
    const v = pick(rng, INTS);
    new DataView(out.buffer).setInt32(4 * i, v, true);
    return [`header int ${i} = ${v}`, out];
  },
  (rng, base) => {
    const out = base.slice();
    const i = rng.int(7);
    const dv = new DataView(out.buffer);
    const d = rng.int(9) - 4;
    dv.setInt32(4 * i, dv.getInt32(4 * i, true) + d, true);
    return [`header int ${i} ${d >= 0 ? '+' : ''}${d}`, out];
  },
  (rng, base) => {
    const out = base.slice();
    const k = 1 + rng.int(4);
    for (let j = 0; j < k; j++) out[rng.int(rng.int(2) === 0 ? 28 : out.length)] = rng.int(256);
    return [`${k} random bytes`, out];
  },
  (rng, base) => {
    const extra = 1 + rng.int(64);
    const out = new Uint8Array(base.length + extra);
    out.set(base);
    return [`append ${extra} bytes`, out];
  },
  (rng, base) => {
    const out = base.slice();
    const dv = new DataView(out.buffer);
    dv.setUint32(0, 0x616b3432, true); // "ak42": a v1/v2 export
    dv.setInt32(4, rng.int(4), true);
    return ['v1 magic', out];
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
    if (t === undefined || t.shape.join() !== shape.join() || t.data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`tensor ${name}: [${t?.shape.join(', ')}], expected [${shape.join(', ')}]`);
    floats += t.data.length;
  }
  if (28 + 4 * floats !== bytes) throw new Error(`tensors account for ${28 + 4 * floats} bytes of ${bytes}`);
}

function check(buf: Uint8Array, path: string): string {
  const outcome = (read: () => Llama2cCheckpoint): [string, string | Llama2cCheckpoint] => {
    try {
      return ['parsed', read()];
    } catch (e) {
      if (e instanceof FormatError || e instanceof UnsupportedError) return [e.name, e.message.replace(path, 'FILE').replace('fuzz.bin', 'FILE')];
      throw e;
    }
  };
  const [a, pa] = outcome(() => parseLlama2c(buf, 'fuzz.bin'));
  writeFileSync(path, buf);
  const [b, pb] = outcome(() => readLlama2c(path));
  if (a !== b || (typeof pa === 'string' && pa !== pb)) throw new Error(`parseLlama2c: ${a} ${typeof pa === 'string' ? pa : ''}; readLlama2c: ${b} ${typeof pb === 'string' ? pb : ''}`);
  if (typeof pa !== 'string') consistent(pa, buf.length);
  return a;
}

describe('llama2.c reader fuzz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bitdistill-llama2c-fuzz-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every mutated file parses consistently or throws FormatError / UnsupportedError, in both readers (seeded, 2000 cases)', () => {
    const rng = new Rng(SEED);
    const bases = [synth(rng, [8, 12, 2, 2, 1, 32, 4]), synth(rng, [8, 8, 1, 1, 1, -16, 2]), synth(rng, [16, 24, 1, 4, 4, 8, 1])];
    const path = join(dir, 'case.bin');
    for (const b of bases) expect(check(b, path)).to.equal('parsed');
    const tally: Record<string, number> = {};
    for (let k = 0; k < 2000; k++) {
      const i = rng.int(bases.length);
      const m = rng.int(MUTATORS.length);
      const [what, buf] = (MUTATORS[m] as Mutator)(rng, bases[i] as Uint8Array);
      try {
        const o = check(buf, path);
        tally[o] = (tally[o] ?? 0) + 1;
      } catch (e) {
        throw new Error(`case ${k} (seed ${SEED}, base ${i}, mutator ${m}: ${what}) threw ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
      }
    }
    console.log(`      outcomes: ${JSON.stringify(tally)}`);
    expect(tally['FormatError'] ?? 0).to.be.greaterThan(1000);
    expect(tally['parsed'] ?? 0).to.be.greaterThan(100);
  });
});
