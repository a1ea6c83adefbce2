// Seeded fuzzing of TernaryRuntime.load on mutated exports (folders and GGUF files). Every case must either be
// refused with a typed project error (BitDistillError), or load into a runtime whose forward pass gives finite
// logits of the vocabulary's length. Anything else (a RangeError, a TypeError, a JSON SyntaxError, NaN logits,
// a read past a buffer) is a loader bug. A failure names the case, the seed and the mutation.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBitDistillError, Rng } from '@bitdistill/core';
import { gv, parseGguf, serializeSafetensors, writeGguf, type GgufValue, type TensorEntry } from '@bitdistill/format';
import { TernaryRuntime } from '../src/index.ts';
import { BASE_CONFIG, GGUF_CONFIG, exportTensors, ggufFile, writeExportDir } from './fixtures.ts';

const SEED = 20250121;
const root = mkdtempSync(join(tmpdir(), 'bitdistill-rt-fuzz-'));
after(() => rmSync(root, { recursive: true, force: true }));

const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng.int(a.length)] as T;

type Tally = Record<string, number>;

/** 'loaded' or the error code; throws on anything that is not a typed refusal or a plausible runtime. */
function outcome(path: string): string {
  let rt: TernaryRuntime;
  try {
    rt = TernaryRuntime.load(path);
  } catch (e) {
    if (isBitDistillError(e)) return e.code;
    throw e;
  }
  const V = rt.config.vocabSize;
  const ids = [1, 5, 300, 42].map((i) => i % rt.tokenizer.vocabSize).slice(0, rt.config.maxPositionEmbeddings);
  const logits = rt.forward(ids, { allPositions: true });
  if (logits.length !== ids.length * V) throw new Error(`loaded, but forward gave ${logits.length} logits for ${ids.length} x ${V}`);
  const bad = logits.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`loaded, but logit ${bad} is ${logits[bad]}`);
  return 'loaded';
}

function run(name: string, cases: number, make: (rng: Rng, k: number) => [string, string]): Tally {
  const rng = new Rng(SEED);
  const tally: Tally = {};
  for (let k = 0; k < cases; k++) {
    const [what, path] = make(rng, k);
    let o: string;
    try {
      o = outcome(path);
    } catch (e) {
      throw new Error(`${name} case ${k} (seed ${SEED}: ${what}) threw ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
    }
    tally[o] = (tally[o] ?? 0) + 1;
    rmSync(path, { recursive: true, force: true });
  }
  return tally;
}

// ---------------------------------------------------------------------------------------------- export folders

interface Base {
  config: Record<string, unknown>;
  tensors: Map<string, TensorEntry>;
}

const BASES: Base[] = [
  { config: BASE_CONFIG, tensors: exportTensors(BASE_CONFIG, 1, ['model.layers.1.mlp.up_proj']) },
  { config: { ...BASE_CONFIG, model_type: 'qwen3', tie_word_embeddings: true, bitdistill: { subln: 'allnorm', weightQuant: 'absmean' } }, tensors: new Map() },
  { config: { ...BASE_CONFIG, model_type: 'qwen2' }, tensors: new Map() },
];
for (const b of BASES) if (b.tensors.size === 0) b.tensors = exportTensors(b.config, 2);

const CONFIG_KEYS = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'max_position_embeddings',
  'rms_norm_eps',
  'rope_theta',
  'tie_word_embeddings',
  'attention_bias',
  'model_type',
  'bitdistill',
  'quantization_config',
  'hidden_act',
];
const BAD_VALUES: unknown[] = [
  0,
  -1,
  1,
  2,
  1.5,
  3,
  7,
  8,
  16,
  32,
  64,
  511,
  513,
  1024,
  1e9,
  2 ** 53,
  1e-30,
  1e30,
  null,
  'x',
  true,
  false,
  [],
  {},
  'qwen3',
  'qwen2',
  { subln: 'allnorm' },
  { subln: 'none' },
  { linear_class: 'bitlinear' },
];
const SCALES = [0, -0, -1, NaN, Infinity, -Infinity, 1e-30, 1e-45, 1e30, 3.4e38];

function clone(t: TensorEntry): TensorEntry {
  return { ...t, shape: [...t.shape], data: t.data.slice() } as TensorEntry;
}

type FolderMutation = {
  what: string;
  config?: Record<string, unknown>;
  configText?: string;
  tensors?: Map<string, TensorEntry>;
  bytes?: (st: Uint8Array) => Uint8Array;
  tokenizer?: (t: Uint8Array) => Uint8Array;
};

const FOLDER_MUTATORS: ((rng: Rng, b: Base) => FolderMutation)[] = [
  (rng, b) => {
    const key = pick(rng, CONFIG_KEYS);
    const v = pick(rng, BAD_VALUES);
    return { what: `config ${key} = ${JSON.stringify(v)}`, config: { ...b.config, [key]: v } };
  },
  (rng, b) => {
    const key = pick(rng, CONFIG_KEYS);
    const config = { ...b.config };
    delete config[key];
    return { what: `config without ${key}`, config };
  },
  (rng, b) => {
    const text = JSON.stringify(b.config);
    const choice = rng.int(4);
    if (choice === 0) {
      const at = rng.int(text.length);
      return { what: `config.json cut at ${at}`, configText: text.slice(0, at) };
    }
    if (choice === 1) return { what: 'config.json not an object', configText: pick(rng, ['null', '[]', '42', '"config"', 'true', '[{}]']) };
    const at = rng.int(text.length);
    const c = String.fromCharCode(pick(rng, [0x22, 0x2c, 0x3a, 0x7b, 0x7d, 0x5b, 0x5d, 0x30 + rng.int(10), 0x2d, 0x65]));
    return { what: `config.json char ${at} -> ${c}`, configText: text.slice(0, at) + c + text.slice(at + 1) };
  },
  (rng, b) => {
    const name = pick(rng, [...b.tensors.keys()]);
    const t = new Map(b.tensors);
    t.delete(name);
    return { what: `without ${name}`, tensors: t };
  },
  (rng, b) => {
    const src = pick(rng, [...b.tensors.keys()]);
    const L = b.config['num_hidden_layers'] as number;
    const name = pick(rng, [
      src.replace(/^model\.layers\.\d+\./, `model.layers.${L}.`),
      `${src}.extra`,
      src.replace(/\.weight$/, '.bias'),
      'lm_head.weight',
      'model.layers.0.self_attn.q_norm.weight',
      'model.layers.0.mlp.gate_sub_norm.weight',
      'model.rotary_emb.inv_freq',
    ]);
    const t = new Map(b.tensors);
    t.set(name, clone(b.tensors.get(src) as TensorEntry));
    return { what: `${src} copied as ${name}`, tensors: t };
  },
  (rng, b) => {
    const names = [...b.tensors].filter(([, t]) => t.shape.length === 2).map(([n]) => n);
    const name = pick(rng, names);
    const t = new Map(b.tensors);
    const e = clone(b.tensors.get(name) as TensorEntry);
    e.shape = rng.int(2) === 0 ? [e.shape[1] as number, e.shape[0] as number] : [e.shape.reduce((a, x) => a * x, 1)];
    t.set(name, e);
    return { what: `${name} reshaped to [${e.shape.join(', ')}]`, tensors: t };
  },
  (rng, b) => {
    // Drop the last row (or value) of a tensor, data and shape together.
    const name = pick(rng, [...b.tensors.keys()]);
    const t = new Map(b.tensors);
    const e = clone(b.tensors.get(name) as TensorEntry);
    const row = e.shape.length === 2 ? (e.shape[1] as number) : 1;
    if ((e.shape[0] as number) <= 1) return { what: `${name} unchanged`, tensors: t };
    t.set(name, { ...e, shape: [(e.shape[0] as number) - 1, ...e.shape.slice(1)], data: e.data.slice(0, e.data.length - row) } as TensorEntry);
    return { what: `${name} one row short`, tensors: t };
  },
  (rng, b) => {
    const names = [...b.tensors].filter(([, t]) => t.dtype === 'F32').map(([n]) => n);
    const name = pick(rng, names);
    const t = new Map(b.tensors);
    const e = b.tensors.get(name) as Extract<TensorEntry, { dtype: 'F32' }>;
    const to = pick(rng, ['I32', 'F16', 'BF16', 'U8', 'I8'] as const);
    if (to === 'I32') t.set(name, { dtype: 'I32', shape: [...e.shape], data: new Int32Array(e.data.buffer.slice(0)) });
    else if (to === 'U8' || to === 'I8')
      t.set(name, {
        dtype: to,
        shape: [...e.shape],
        data: to === 'U8' ? new Uint8Array(e.data.length).fill(0x55) : new Int8Array(e.data.length),
      } as TensorEntry);
    else
      t.set(name, {
        dtype: to,
        shape: [...e.shape],
        data: Uint16Array.from(e.data, (v) => (to === 'BF16' ? new Uint32Array(Float32Array.of(v).buffer)[0]! >>> 16 : 0x3c00)),
      });
    return { what: `${name} as ${to}`, tensors: t };
  },
  (rng, b) => {
    const names = [...b.tensors.keys()].filter((n) => n.endsWith('.weight_scale'));
    const name = pick(rng, names);
    const t = new Map(b.tensors);
    const v = pick(rng, SCALES);
    const two = rng.int(5) === 0;
    t.set(name, { dtype: 'F32', shape: two ? [2] : pick(rng, [[1], [], [1, 1]]), data: two ? Float32Array.of(v, v) : Float32Array.of(v) });
    return { what: `${name} = ${v}${two ? ' (twice)' : ''}`, tensors: t };
  },
  (rng, b) => {
    const names = [...b.tensors].filter(([, t]) => t.dtype === 'F32' && !t.shape.every((d) => d === 1)).map(([n]) => n);
    const name = pick(rng, names);
    const t = new Map(b.tensors);
    const e = clone(b.tensors.get(name) as TensorEntry) as Extract<TensorEntry, { dtype: 'F32' }>;
    const i = rng.int(e.data.length);
    const v = pick(rng, [NaN, Infinity, -Infinity]);
    e.data[i] = v;
    t.set(name, e);
    return { what: `${name}[${i}] = ${v}`, tensors: t };
  },
  (rng, b) => {
    const names = [...b.tensors].filter(([, t]) => t.dtype === 'U8').map(([n]) => n);
    const name = pick(rng, names);
    const t = new Map(b.tensors);
    const e = clone(b.tensors.get(name) as TensorEntry);
    const i = rng.int(e.data.length);
    const v = rng.int(256);
    (e.data as Uint8Array)[i] = v;
    t.set(name, e);
    return { what: `${name} byte ${i} = 0x${v.toString(16)}`, tensors: t };
  },
  (rng, b) => {
    // Two tensors trade names (same layer or not).
    const names = [...b.tensors.keys()];
    const x = pick(rng, names);
    const y = pick(rng, names);
    const t = new Map(b.tensors);
    t.set(x, b.tensors.get(y) as TensorEntry);
    t.set(y, b.tensors.get(x) as TensorEntry);
    return { what: `${x} <-> ${y}`, tensors: t };
  },
  (rng) => {
    const choice = rng.int(3);
    return {
      what: ['model.safetensors truncated', 'model.safetensors bytes changed', 'model.safetensors header bytes changed'][choice] as string,
      bytes: (st) => {
        if (choice === 0) return st.slice(0, rng.int(st.length));
        const out = st.slice();
        const headerEnd = 8 + Number(new DataView(st.buffer, st.byteOffset).getBigUint64(0, true));
        for (let j = 0; j < 1 + rng.int(4); j++) out[choice === 1 ? rng.int(out.length) : rng.int(headerEnd)] = rng.int(256);
        return out;
      },
    };
  },
  (rng) => ({
    what: 'tokenizer.bin mutated',
    tokenizer: (tok) => {
      if (rng.int(2) === 0) return tok.slice(0, rng.int(tok.length));
      const out = tok.slice();
      for (let j = 0; j < 1 + rng.int(4); j++) out[rng.int(out.length)] = rng.int(256);
      return out;
    },
  }),
];

function folderCase(rng: Rng, k: number): [string, string] {
  const b = pick(rng, BASES);
  const m = rng.int(FOLDER_MUTATORS.length);
  const mut = (FOLDER_MUTATORS[m] as (rng: Rng, b: Base) => FolderMutation)(rng, b);
  const dir = writeExportDir(join(root, `f${k}`), mut.config ?? b.config, mut.tensors ?? b.tensors);
  if (mut.configText !== undefined) writeFileSync(join(dir, 'config.json'), mut.configText);
  if (mut.bytes !== undefined) writeFileSync(join(dir, 'model.safetensors'), mut.bytes(serializeSafetensors(mut.tensors ?? b.tensors, { format: 'pt' })));
  if (mut.tokenizer !== undefined) writeFileSync(join(dir, 'tokenizer.bin'), mut.tokenizer(new Uint8Array(readFileSync(join(dir, 'tokenizer.bin')))));
  return [`base ${BASES.indexOf(b)}, mutator ${m}: ${mut.what}`, dir];
}

// ---------------------------------------------------------------------------------------------- GGUF files

const TQ_CONFIG = {
  ...GGUF_CONFIG,
  hidden_size: 256,
  intermediate_size: 256,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  num_hidden_layers: 1,
};
const GGUF_BASES: Uint8Array[] = (() => {
  const out: Uint8Array[] = [];
  for (const [config, o] of [
    [GGUF_CONFIG, { hfConfig: true }],
    [GGUF_CONFIG, {}],
    [TQ_CONFIG, { ternary: true, hfConfig: true }],
  ] as const) {
    const p = join(root, `base-${out.length}.gguf`);
    ggufFile(p, config, o);
    out.push(new Uint8Array(readFileSync(p)));
  }
  return out;
})();

const META_VALUES: GgufValue[] = [
  gv.u32(0),
  gv.u32(1),
  gv.u32(3),
  gv.u32(7),
  gv.u32(16),
  gv.u32(2 ** 32 - 1),
  gv.i32(-1),
  gv.f32(0),
  gv.f32(-1),
  gv.f32(NaN),
  gv.f32(Infinity),
  gv.f32(1e-30),
  gv.str(''),
  gv.str('gpt2'),
  gv.str('{'),
  gv.str('null'),
  gv.str('{"model_type":"llama"}'),
  gv.bool(true),
  gv.strings([]),
  gv.f32s([1, 2]),
];

/** A GGUF edited through the reader and writer: metadata values, dropped / renamed tensors. */
function editGguf(
  rng: Rng,
  bytes: Uint8Array,
): [string, Uint8Array] | [string, null, [string, GgufValue][], { name: string; type: 'F32'; dims: number[]; data: Uint8Array }[]] {
  const f = parseGguf(bytes, 'base.gguf');
  const meta = [...f.metadata];
  const tensors = f.tensors.map((t) => ({ name: t.name, type: t.type, dims: t.dims, data: t.data }));
  const choice = rng.int(4);
  if (choice === 0) {
    const i = rng.int(meta.length);
    const v = pick(rng, META_VALUES);
    const key = (meta[i] as [string, GgufValue])[0];
    meta[i] = [key, v];
    return [`metadata ${key} = ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x))}`, null, meta, tensors as never];
  }
  if (choice === 1) {
    const i = rng.int(meta.length);
    const key = (meta[i] as [string, GgufValue])[0];
    meta.splice(i, 1);
    return [`without metadata ${key}`, null, meta, tensors as never];
  }
  if (choice === 2) {
    const i = rng.int(tensors.length);
    const name = (tensors[i] as { name: string }).name;
    tensors.splice(i, 1);
    return [`without tensor ${name}`, null, meta, tensors as never];
  }
  const i = rng.int(tensors.length);
  const t = tensors[i] as { name: string };
  const from = t.name;
  t.name = pick(rng, [from.replace(/^blk\.\d+/, 'blk.7'), 'output.weight', `${from}x`, from.replace('attn_q', 'attn_k'), 'blk.0.attn_q_norm.weight']);
  if (tensors.filter((x) => x.name === t.name).length > 1) t.name = `${t.name}.dup`;
  return [`tensor ${from} renamed ${t.name}`, null, meta, tensors as never];
}

function ggufCase(rng: Rng, k: number): [string, string] {
  const b = rng.int(GGUF_BASES.length);
  const base = GGUF_BASES[b] as Uint8Array;
  const path = join(root, `g${k}.gguf`);
  const choice = rng.int(4);
  if (choice === 0) {
    const n = rng.int(base.length);
    writeFileSync(path, base.subarray(0, n));
    return [`base ${b} truncated to ${n}`, path];
  }
  if (choice === 1) {
    // Bytes in the header and metadata (the first ~10 KB: counts, keys, the tokenizer), where structure lives.
    const out = base.slice();
    const span = Math.min(out.length, 12_000);
    const at: number[] = [];
    for (let j = 0; j < 1 + rng.int(4); j++) {
      const i = rng.int(span);
      out[i] = rng.int(256);
      at.push(i);
    }
    writeFileSync(path, out);
    return [`base ${b} header bytes ${at.join(', ')} changed`, path];
  }
  const edited = editGguf(rng, base);
  if (edited[1] !== null) {
    writeFileSync(path, edited[1]);
    return [edited[0], path];
  }
  try {
    writeGguf(path, edited[2], edited[3]);
  } catch (e) {
    if (!isBitDistillError(e)) throw e;
    // The writer refuses (e.g. a duplicate name): fall back to a byte change in the tensor data.
    const out = base.slice();
    out[out.length - 1 - rng.int(1000)] = rng.int(256);
    writeFileSync(path, out);
    return [`base ${b} data byte changed`, path];
  }
  return [`base ${b}: ${edited[0]}`, path];
}

describe('TernaryRuntime.load fuzz', function () {
  this.timeout(120_000);

  it('the unmutated bases load', () => {
    for (const b of BASES) expect(outcome(writeExportDir(join(root, `ok-${BASES.indexOf(b)}`), b.config, b.tensors))).to.equal('loaded');
    GGUF_BASES.forEach((bytes, i) => {
      const p = join(root, `ok-${i}.gguf`);
      writeFileSync(p, bytes);
      expect(outcome(p)).to.equal('loaded');
    });
  });

  it('mutated export folders are refused with a typed error or load plausibly (seeded, 500 cases)', () => {
    const tally = run('folder', 500, folderCase);
    console.log(`      outcomes: ${JSON.stringify(tally)}`);
    expect(tally['E_FORMAT'] ?? 0).to.be.greaterThan(300);
    expect(tally['loaded'] ?? 0).to.be.greaterThan(10);
  });

  it('mutated GGUF files are refused with a typed error or load plausibly (seeded, 300 cases)', () => {
    const tally = run('gguf', 300, ggufCase);
    console.log(`      outcomes: ${JSON.stringify(tally)}`);
    expect(tally['E_FORMAT'] ?? 0).to.be.greaterThan(150);
  });
});
