import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FormatError, NotFoundError, Rng, ShapeError, UnsupportedError } from '@bitdistill/core';
import { parseLlama2c, readLlama2c, type F32Tensor } from '../src/index.ts';
import { halfToInterleavedRope, interleavedToHalfRope } from '../src/llama2c.ts';

const STORIES = fileURLToPath(new URL('../../../models/stories260K/source/stories260K.bin', import.meta.url));

/** A llama2.c v0 file from header ints and a float generator (called in file order). */
function synthFile(h: number[], floats: Float32Array): Uint8Array {
  const out = new Uint8Array(28 + 4 * floats.length);
  const dv = new DataView(out.buffer);
  h.forEach((v, i) => dv.setInt32(4 * i, v, true));
  floats.forEach((v, i) => dv.setFloat32(28 + 4 * i, v, true));
  return out;
}

function matvec(w: Float32Array, rows: number, cols: number, x: Float32Array): Float32Array {
  const y = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += (w[r * cols + c] as number) * (x[c] as number);
    y[r] = s;
  }
  return y;
}

/** llama2.c run.c RoPE: rotate adjacent pairs (2i, 2i+1) of each head by pos * 10000^(-2i/hd). */
function ropeInterleaved(v: Float32Array, nHeads: number, hd: number, pos: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = pos * Math.pow(10000, -(2 * i) / hd);
      const x0 = v[h * hd + 2 * i] as number;
      const x1 = v[h * hd + 2 * i + 1] as number;
      out[h * hd + 2 * i] = x0 * Math.cos(a) - x1 * Math.sin(a);
      out[h * hd + 2 * i + 1] = x0 * Math.sin(a) + x1 * Math.cos(a);
    }
  }
  return out;
}

/** HF Llama RoPE: q * cos + rotate_half(q) * sin, with rotate_half(x) = cat(-x2, x1) and cos/sin = cat(f, f). */
function ropeHalf(v: Float32Array, nHeads: number, hd: number, pos: number): Float64Array {
  const out = new Float64Array(v.length);
  const half = hd / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let d = 0; d < hd; d++) {
      const i = d % half;
      const a = pos * Math.pow(10000, -(2 * i) / hd);
      const rot = d < half ? -(v[h * hd + d + half] as number) : (v[h * hd + d - half] as number);
      out[h * hd + d] = (v[h * hd + d] as number) * Math.cos(a) + rot * Math.sin(a);
    }
  }
  return out;
}

function headDot(q: Float64Array, qh: number, k: Float64Array, kh: number, hd: number): number {
  let s = 0;
  for (let d = 0; d < hd; d++) s += (q[qh * hd + d] as number) * (k[kh * hd + d] as number);
  return s;
}

/** Attention scores q_h(pos_q) . k_{h / group}(pos_k) for every query head, both ways, must agree. */
function checkRopeEquivalence(
  wq: Float32Array,
  wk: Float32Array,
  hfq: Float32Array,
  hfk: Float32Array,
  dim: number,
  nHeads: number,
  nKv: number,
  x: Float32Array,
  y: Float32Array,
): void {
  const hd = dim / nHeads;
  const group = nHeads / nKv;
  for (const [pq, pk] of [
    [0, 0],
    [3, 1],
    [7, 7],
    [11, 2],
  ] as [number, number][]) {
    const qa = ropeInterleaved(matvec(wq, dim, dim, x), nHeads, hd, pq);
    const ka = ropeInterleaved(matvec(wk, nKv * hd, dim, y), nKv, hd, pk);
    const qb = ropeHalf(matvec(hfq, dim, dim, x), nHeads, hd, pq);
    const kb = ropeHalf(matvec(hfk, nKv * hd, dim, y), nKv, hd, pk);
    for (let h = 0; h < nHeads; h++) {
      const kh = Math.floor(h / group);
      const a = headDot(qa, h, ka, kh, hd);
      expect(headDot(qb, h, kb, kh, hd), `head ${h} pos ${pq},${pk}`).to.be.closeTo(a, 1e-4 * (1 + Math.abs(a)));
      // And element by element: HF slot j*hd/2 + i holds llama2.c slot 2i + j.
      for (let i = 0; i < hd / 2; i++) {
        for (let j = 0; j < 2; j++) expect(qb[h * hd + j * (hd / 2) + i]).to.be.closeTo(qa[h * hd + 2 * i + j] as number, 1e-4);
      }
    }
  }
}

describe('llama2.c v0 reader', () => {
  describe('synthetic checkpoint (GQA, unshared classifier)', () => {
    // dim 8, hidden 12, 2 layers, 2 heads (hd 4), 1 kv head, vocab -5 (unshared), seq 3.
    const [D, H, L, NH, NKV, V, S] = [8, 12, 2, 2, 1, 5, 3];
    const hd = D / NH;
    const kv = NKV * hd;
    const sizes = {
      emb: V * D,
      rmsAtt: L * D,
      wq: L * D * D,
      wk: L * kv * D,
      wv: L * kv * D,
      wo: L * D * D,
      rmsFfn: L * D,
      w1: L * H * D,
      w2: L * D * H,
      w3: L * H * D,
      rmsF: D,
      freq: S * hd,
      wcls: V * D,
    };
    const total = Object.values(sizes).reduce((a, b) => a + b, 0);
    const rng = new Rng(11);
    const floats = Float32Array.from({ length: total }, () => rng.normal());
    const bytes = synthFile([D, H, L, NH, NKV, -V, S], floats);
    const ck = parseLlama2c(bytes, 'synth.bin');
    const start: Record<string, number> = {};
    let off = 0;
    for (const [k, n] of Object.entries(sizes)) {
      start[k] = off;
      off += n;
    }
    const raw = (k: string, layer: number, n: number): Float32Array => floats.slice((start[k] as number) + layer * n, (start[k] as number) + (layer + 1) * n);
    const get = (name: string): F32Tensor => {
      const t = ck.tensors.get(name);
      if (t === undefined) throw new Error(`missing ${name}`);
      return t;
    };

    it('maps every array to its HF name and shape', () => {
      expect(ck.header).to.deep.equal({ dim: 8, hiddenDim: 12, nLayers: 2, nHeads: 2, nKvHeads: 1, vocabSize: 5, seqLen: 3, sharedClassifier: false });
      expect(ck.tensors.size).to.equal(1 + 9 * L + 2);
      expect(get('lm_head.weight').shape).to.deep.equal([V, D]);
      expect([...get('lm_head.weight').data]).to.deep.equal([...floats.slice(total - V * D)]);
      expect([...get('model.embed_tokens.weight').data]).to.deep.equal([...raw('emb', 0, V * D)]);
      expect(get('model.layers.1.self_attn.k_proj.weight').shape).to.deep.equal([kv, D]);
      expect([...get('model.layers.1.self_attn.v_proj.weight').data]).to.deep.equal([...raw('wv', 1, kv * D)]);
      expect([...get('model.layers.1.mlp.gate_proj.weight').data]).to.deep.equal([...raw('w1', 1, H * D)]);
      expect(get('model.layers.1.mlp.down_proj.weight').shape).to.deep.equal([D, H]);
      expect([...get('model.layers.1.mlp.down_proj.weight').data]).to.deep.equal([...raw('w2', 1, D * H)]);
      expect([...get('model.layers.0.mlp.up_proj.weight').data]).to.deep.equal([...raw('w3', 0, H * D)]);
      expect([...get('model.layers.1.post_attention_layernorm.weight').data]).to.deep.equal([...raw('rmsFfn', 1, D)]);
      expect([...get('model.norm.weight').data]).to.deep.equal([...raw('rmsF', 0, D)]);
      expect(ck.config.tie_word_embeddings).to.equal(false);
    });

    it('permuted wq/wk under HF rotate_half RoPE give the same q.k as llama2.c interleaved RoPE on the originals', () => {
      const x = Float32Array.from({ length: D }, () => rng.normal());
      const y = Float32Array.from({ length: D }, () => rng.normal());
      for (let l = 0; l < L; l++) {
        checkRopeEquivalence(
          raw('wq', l, D * D),
          raw('wk', l, kv * D),
          get(`model.layers.${l}.self_attn.q_proj.weight`).data,
          get(`model.layers.${l}.self_attn.k_proj.weight`).data,
          D,
          NH,
          NKV,
          x,
          y,
        );
      }
    });

    it('halfToInterleavedRope undoes interleavedToHalfRope', () => {
      const w = raw('wq', 0, D * D);
      expect([...halfToInterleavedRope(interleavedToHalfRope(w, NH, hd, D), NH, hd, D)]).to.deep.equal([...w]);
      expect([...interleavedToHalfRope(w, NH, hd, D)]).to.not.deep.equal([...w]);
      expect(() => interleavedToHalfRope(w, NH, 3, D)).to.throw(ShapeError);
    });

    it('checks the file size exactly', () => {
      expect(() => parseLlama2c(bytes.subarray(0, bytes.length - 4), 'synth.bin')).to.throw(
        FormatError,
        new RegExp(`^synth.bin: expected ${bytes.length} bytes .* got ${bytes.length - 4}`),
      );
      const padded = new Uint8Array(bytes.length + 1);
      padded.set(bytes);
      expect(() => parseLlama2c(padded, 'synth.bin')).to.throw(FormatError, new RegExp(`expected ${bytes.length} bytes .* got ${bytes.length + 1}`));
    });

    it('rejects bad headers', () => {
      const bad = (h: number[], re: RegExp, cls: typeof FormatError | typeof UnsupportedError = FormatError): void => {
        expect(() => parseLlama2c(synthFile(h, new Float32Array(4)), 'h.bin'), h.join(',')).to.throw(cls, re);
      };
      bad([0, H, L, NH, NKV, V, S], /dim = 0 is outside \[1, 65536\]/);
      bad([D, H, L, NH, NKV, 0, S], /vocabSize = 0/);
      bad([D, H, -1, NH, NKV, V, S], /nLayers = -1/);
      bad([D, H, L, 3, 1, V, S], /dim 8 is not a multiple of n_heads 3/);
      bad([D, H, L, 8, 8, V, S], /head size 1 is odd/);
      bad([D, H, L, 2, 4, V, S], /n_heads 2 is not a multiple of n_kv_heads 4/);
      bad([D, H, L, NH, NKV, 2 ** 30, S], /vocabSize = 1073741824 is outside/);
      bad([0x616b3432, 1, 0, 0, 0, 0, 0], /llama2.c export version 1 \(magic "ak42"\); only the legacy v0 layout is read/, UnsupportedError);
      expect(() => parseLlama2c(new Uint8Array(27), 'h.bin')).to.throw(FormatError, /file is 27 bytes; .*28-byte header/);
    });
  });

  describe('stories260K (real weights)', () => {
    const ck = readLlama2c(STORIES);
    const file = readFileSync(STORIES);
    const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const rawF = (i: number): number => dv.getFloat32(28 + 4 * i, true);

    it('reads the header and the HF config', () => {
      expect(ck.header).to.deep.equal({ dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, sharedClassifier: true });
      expect(ck.config).to.deep.equal({
        architectures: ['LlamaForCausalLM'],
        model_type: 'llama',
        hidden_size: 64,
        intermediate_size: 172,
        num_hidden_layers: 5,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        head_dim: 8,
        max_position_embeddings: 512,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        tie_word_embeddings: true,
        vocab_size: 512,
        attention_bias: false,
        hidden_act: 'silu',
        bos_token_id: 1,
        eos_token_id: 2,
      });
    });

    it('has the 47 HF tensors with HF shapes and no lm_head', () => {
      expect(ck.tensors.size).to.equal(47);
      expect(ck.tensors.has('lm_head.weight')).to.equal(false);
      const shapes = Object.fromEntries(
        [...ck.tensors].filter(([n]) => !n.startsWith('model.layers.') || n.startsWith('model.layers.4.')).map(([n, t]) => [n, t.shape]),
      );
      expect(shapes).to.deep.equal({
        'model.embed_tokens.weight': [512, 64],
        'model.layers.4.input_layernorm.weight': [64],
        'model.layers.4.self_attn.q_proj.weight': [64, 64],
        'model.layers.4.self_attn.k_proj.weight': [32, 64],
        'model.layers.4.self_attn.v_proj.weight': [32, 64],
        'model.layers.4.self_attn.o_proj.weight': [64, 64],
        'model.layers.4.post_attention_layernorm.weight': [64],
        'model.layers.4.mlp.gate_proj.weight': [172, 64],
        'model.layers.4.mlp.down_proj.weight': [64, 172],
        'model.layers.4.mlp.up_proj.weight': [172, 64],
        'model.norm.weight': [64],
      });
      let params = 0;
      for (const t of ck.tensors.values()) params += t.data.length;
      expect(params).to.equal(264128 - 2 * 512 * 4); // all floats but freq_cis
    });

    it('takes values from the right offsets (embedding, first layer norm, last layer, final norm)', () => {
      const emb = ck.tensors.get('model.embed_tokens.weight') as F32Tensor;
      expect(emb.data[0]).to.equal(rawF(0));
      expect(emb.data[512 * 64 - 1]).to.equal(rawF(512 * 64 - 1));
      expect((ck.tensors.get('model.layers.0.input_layernorm.weight') as F32Tensor).data[0]).to.equal(rawF(512 * 64));
      // rms_final sits right before the two freq_cis tables (2 * 512 * 4 floats) at the end of the file.
      const norm = ck.tensors.get('model.norm.weight') as F32Tensor;
      expect(norm.data[63]).to.equal(rawF(264128 - 2 * 2048 - 1));
      // freq_cis_real[pos, i] = cos(pos * 10000^(-2i/hd)), which confirms the layout and rope_theta.
      const freqReal = (pos: number, i: number): number => rawF(264128 - 2 * 2048 + pos * 4 + i);
      expect(freqReal(3, 1)).to.be.closeTo(Math.cos(3 * Math.pow(10000, -2 / 8)), 1e-6);
      expect(freqReal(100, 3)).to.be.closeTo(Math.cos(100 * Math.pow(10000, -6 / 8)), 1e-5);
    });

    it('permutes the real wq/wk so HF RoPE reproduces llama2.c attention scores', () => {
      const emb = (ck.tensors.get('model.embed_tokens.weight') as F32Tensor).data;
      const perLayerQ = 64 * 64;
      const qStart = 512 * 64 + 5 * 64;
      const kStart = qStart + 5 * perLayerQ;
      const rawSlice = (s: number, n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => rawF(s + i));
      const l = 3;
      checkRopeEquivalence(
        rawSlice(qStart + l * perLayerQ, perLayerQ),
        rawSlice(kStart + l * 32 * 64, 32 * 64),
        (ck.tensors.get(`model.layers.${l}.self_attn.q_proj.weight`) as F32Tensor).data,
        (ck.tensors.get(`model.layers.${l}.self_attn.k_proj.weight`) as F32Tensor).data,
        64,
        8,
        4,
        emb.slice(300 * 64, 301 * 64),
        emb.slice(17 * 64, 18 * 64),
      );
    });

    it('rejects a truncated or padded copy of the file', () => {
      const bytes = new Uint8Array(file);
      expect(() => parseLlama2c(bytes.subarray(0, 1056539), 'stories260K.bin')).to.throw(FormatError, /expected 1056540 bytes .* got 1056539/);
      const padded = new Uint8Array(1056544);
      padded.set(bytes);
      expect(() => parseLlama2c(padded, 'stories260K.bin')).to.throw(FormatError, /expected 1056540 bytes .* got 1056544/);
      expect(() => readLlama2c(`${STORIES}.missing`)).to.throw(NotFoundError);
    });
  });
});
