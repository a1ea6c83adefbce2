// TernaryRuntime.load refuses a malformed export with a FormatError that names the file and the tensor or key,
// instead of running it as garbage (issue 21): every tensor the config implies is checked for shape, dtype and
// finite values, nothing may be missing or left over, scales and eps are > 0. A well-formed export of each
// variant (Llama / Qwen2 biases / Qwen3 q/k-norm, tied, allnorm, a dense projection, int8 embeddings) loads and
// gives finite logits.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, isBitDistillError, UnsupportedError } from '@bitdistill/core';
import { gv, readGguf, writeGguf, type GgufFile, type TensorEntry } from '@bitdistill/format';
import { TernaryRuntime, tokenizerFromGguf } from '../src/index.ts';
import { BASE_CONFIG, GGUF_CONFIG, exportTensors, ggufFile, writeExportDir } from './fixtures.ts';

const root = mkdtempSync(join(tmpdir(), 'bitdistill-rt-validate-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function exportDir(config: Record<string, unknown> = BASE_CONFIG, edit?: (t: Map<string, TensorEntry>) => void, dense: readonly string[] = []): string {
  const t = exportTensors(config, 1, dense);
  edit?.(t);
  return writeExportDir(join(root, `e${n++}`), config, t);
}

/** load() must throw a FormatError (code E_FORMAT) whose message matches every pattern. */
function refused(path: string, ...patterns: RegExp[]): FormatError {
  try {
    TernaryRuntime.load(path);
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    expect(e.code).to.equal('E_FORMAT');
    for (const p of patterns) expect(e.message).to.match(p);
    expect(e.hint, 'a hint saying what to do').to.be.a('string');
    return e;
  }
  return expect.fail(`load(${path}) succeeded`);
}

function plausible(rt: TernaryRuntime): void {
  const logits = rt.forward([1, 300, 301, 42]);
  expect(logits.length).to.equal(rt.config.vocabSize);
  expect(logits.every(Number.isFinite)).to.equal(true);
}

const Q0 = 'model.layers.0.self_attn.q_proj';

describe('TernaryRuntime.load: well-formed exports load', () => {
  const variants: [string, Record<string, unknown>, string[]][] = [
    ['llama, SubLN standard, untied', BASE_CONFIG, []],
    ['tied embeddings', { ...BASE_CONFIG, tie_word_embeddings: true }, []],
    ['SubLN allnorm', { ...BASE_CONFIG, bitdistill: { subln: 'allnorm', weightQuant: 'absmean' } }, []],
    ['qwen2 (q/k/v biases)', { ...BASE_CONFIG, model_type: 'qwen2' }, []],
    ['qwen3 (q/k norm)', { ...BASE_CONFIG, model_type: 'qwen3' }, []],
    ['llama attention_bias (o bias too)', { ...BASE_CONFIG, attention_bias: true }, []],
    ['a dense (excluded) projection', BASE_CONFIG, [Q0, 'model.layers.1.mlp.down_proj']],
  ];
  for (const [what, config, dense] of variants) {
    it(what, () => {
      const rt = TernaryRuntime.load(exportDir(config, undefined, dense));
      plausible(rt);
      expect(rt.info.denseProjections).to.equal(dense.length);
    });
  }

  it('int8 embeddings', () => {
    plausible(TernaryRuntime.load(exportDir(), { embeddings: 'int8' }));
  });

  it('F16 / BF16 norms and embeddings', () => {
    const d = exportDir(BASE_CONFIG, (t) => {
      t.set('model.norm.weight', { dtype: 'F16', shape: [16], data: new Uint16Array(16).fill(0x3c00) });
      t.set('model.layers.0.input_layernorm.weight', { dtype: 'BF16', shape: [16], data: new Uint16Array(16).fill(0x3f80) });
    });
    plausible(TernaryRuntime.load(d));
  });

  it('a dense GGUF and a TQ2_0 GGUF, with and without bitdistill.hf_config_json', () => {
    for (const hfConfig of [false, true]) {
      const p = join(root, `ok-${n++}.gguf`);
      ggufFile(p, GGUF_CONFIG, { hfConfig });
      plausible(TernaryRuntime.load(p));
    }
    const p = join(root, `tq-${n++}.gguf`);
    ggufFile(
      p,
      { ...GGUF_CONFIG, hidden_size: 256, intermediate_size: 256, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, num_hidden_layers: 1 },
      { ternary: true },
    );
    const rt = TernaryRuntime.load(p);
    expect(rt.info.ternaryProjections).to.equal(7);
    plausible(rt);
  });
});

describe('TernaryRuntime.load: malformed exports are refused with a FormatError naming what is wrong', () => {
  it('a dense projection whose shape disagrees with config.json (was: linear() read past its buffer, NaN logits)', () => {
    const d = exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight`, { dtype: 'F32', shape: [16, 8], data: new Float32Array(128) }), [Q0]);
    refused(d, /model\.safetensors/, /tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' is F32 \[16, 8\]; expected F32, F16 or BF16 \[16, 16\]/);
    const down = 'model.layers.1.mlp.down_proj';
    refused(
      exportDir(BASE_CONFIG, (t) => t.set(`${down}.weight`, { dtype: 'F32', shape: [32, 16], data: new Float32Array(512) }), [down]),
      /down_proj\.weight' is F32 \[32, 16\]; expected .*\[16, 32\]/,
    );
  });

  it('a packed projection of the wrong shape', () => {
    refused(
      exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight`, { dtype: 'U8', shape: [2, 16], data: new Uint8Array(32).fill(0x55) })),
      /q_proj\.weight' is U8 \[2, 16\]; expected \[4, 16\]/,
    );
  });

  it('a transposed [hidden, vocab] embedding or lm_head', () => {
    const transpose = (name: string) => (t: Map<string, TensorEntry>) =>
      t.set(name, { dtype: 'F32', shape: [16, 512], data: (t.get(name) as { data: Float32Array }).data });
    refused(
      exportDir(BASE_CONFIG, transpose('model.embed_tokens.weight')),
      /'model\.embed_tokens\.weight' is F32 \[16, 512\]; expected .*\[512, 16\] \(\[vocab_size, hidden_size\]\)/,
    );
    refused(exportDir(BASE_CONFIG, transpose('lm_head.weight')), /'lm_head\.weight' is F32 \[16, 512\]/);
  });

  it('weight_scale 0, negative, NaN or infinite', () => {
    for (const v of [0, -0.5, NaN, Infinity, -Infinity, 1e30]) {
      refused(
        exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight_scale`, { dtype: 'F32', shape: [1], data: Float32Array.of(v) })),
        new RegExp(`q_proj\\.weight_scale' is ${v === 1e30 ? '1\\.0000000150474662e\\+30' : v}; a ternary weight scale is > 0 and at most 65504`),
      );
    }
  });

  it('weight_scale of the wrong dtype or count; a perRow scale is a valid export this runtime cannot run', () => {
    refused(
      exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight_scale`, { dtype: 'F16', shape: [1], data: Uint16Array.of(0x3c00) })),
      /weight_scale' is F16 \[1\]; expected F32 \[1\]/,
    );
    refused(
      exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight_scale`, { dtype: 'F32', shape: [3], data: Float32Array.of(1, 1, 1) })),
      /weight_scale' has 3 values; expected one scale per tensor/,
    );
    const perRow = exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight_scale`, { dtype: 'F32', shape: [16], data: new Float32Array(16).fill(0.1) }));
    expect(() => TernaryRuntime.load(perRow)).to.throw(UnsupportedError, /has 16 values; the kernels runtime supports one scale per tensor/);
  });

  it('rms_norm_eps <= 0 or not finite; rope_theta < 1', () => {
    const t = exportTensors(BASE_CONFIG);
    const with_ = (edit: Record<string, unknown>) => writeExportDir(join(root, `e${n++}`), { ...BASE_CONFIG, ...edit }, t);
    for (const eps of [0, -1e-5]) refused(with_({ rms_norm_eps: eps }), /config\.json/, new RegExp(`key 'rms_norm_eps' must be a number > 0, got ${eps}`));
    const d = with_({});
    writeFileSync(join(d, 'config.json'), JSON.stringify(BASE_CONFIG).replace('"rms_norm_eps":0.00001', '"rms_norm_eps":1e999'));
    refused(d, /key 'rms_norm_eps' must be a finite number, got Infinity/); // JSON.parse reads 1e999 as Infinity
    refused(with_({ rope_theta: 0 }), /key 'rope_theta' must be a number >= 1 \(a RoPE base, e\.g\. 10000\), got 0/);
    refused(with_({ rope_theta: -10000 }), /key 'rope_theta' must be a number >= 1/);
    refused(with_({ rope_theta: 1e-320 }), /key 'rope_theta' must be a number >= 1 .*got 1e-320/); // was: every logit NaN
  });

  it('dimensions beyond sane bounds, fractional, or an odd head_dim', () => {
    const t = exportTensors(BASE_CONFIG);
    const with_ = (edit: Record<string, unknown>) => writeExportDir(join(root, `e${n++}`), { ...BASE_CONFIG, ...edit }, t);
    refused(with_({ vocab_size: 1e9 }), /key 'vocab_size' is 1000000000, beyond the 4194304 this project accepts/);
    refused(with_({ num_hidden_layers: 2 ** 40 }), /key 'num_hidden_layers' is 1099511627776, beyond the 1024/);
    refused(with_({ hidden_size: 16.5 }), /key 'hidden_size' must be a positive integer, got 16\.5/);
    refused(with_({ intermediate_size: -32 }), /key 'intermediate_size' must be a positive integer, got -32/);
    refused(with_({ head_dim: 7 }), /head_dim 7 is odd/);
    refused(with_({ num_attention_heads: 0 }), /key 'num_attention_heads' must be a positive integer, got 0/);
  });

  it('a config with fewer layers than the file holds (was: loaded 1 of 2 layers silently)', () => {
    const t = exportTensors(BASE_CONFIG);
    const d = writeExportDir(join(root, `e${n++}`), { ...BASE_CONFIG, num_hidden_layers: 1 }, t);
    refused(d, /tensor 'model\.layers\.1\.[a-z_.]+' is not part of the model the config describes: it belongs to layer 1, and num_hidden_layers is 1/);
  });

  it('a config with more layers than the file holds', () => {
    const t = exportTensors(BASE_CONFIG);
    refused(writeExportDir(join(root, `e${n++}`), { ...BASE_CONFIG, num_hidden_layers: 3 }, t), /tensor 'model\.layers\.2\.[a-z_.]+' is missing/);
  });

  it('an extra tensor: unknown name, a bias the config has not, lm_head with tied embeddings, a scale of a dense projection', () => {
    const extra = (name: string) => (t: Map<string, TensorEntry>) => t.set(name, { dtype: 'F32', shape: [16], data: new Float32Array(16) });
    refused(exportDir(BASE_CONFIG, extra('model.layers.0.mlp.extra.weight')), /tensor 'model\.layers\.0\.mlp\.extra\.weight' is not part of the model/);
    refused(
      exportDir(BASE_CONFIG, extra(`${Q0}.bias`)),
      /q_proj\.bias' is not part of the model the config describes: model_type llama with attention_bias false has no bias there/,
    );
    refused(
      exportDir({ ...BASE_CONFIG, tie_word_embeddings: true }, (t) => t.set('lm_head.weight', t.get('model.embed_tokens.weight') as TensorEntry)),
      /'lm_head\.weight' is not part of the model the config describes: tie_word_embeddings is true/,
    );
    refused(
      exportDir(BASE_CONFIG, (t) => t.set(`${Q0}.weight_scale`, { dtype: 'F32', shape: [1], data: Float32Array.of(1) }), [Q0]),
      /q_proj\.weight_scale' is not part of the model the config describes: only a packed \(U8\) ternary projection has a weight_scale/,
    );
    refused(exportDir(BASE_CONFIG, extra('model.layers.0.self_attn.q_norm.weight')), /q_norm\.weight' is not part .*only model_type qwen3/);
    refused(exportDir(BASE_CONFIG, extra('model.layers.0.mlp.up_sub_norm.weight')), /up_sub_norm\.weight' is not part .*bitdistill\.subln is 'standard'/);
  });

  it('a missing tensor: norm, bias, q_norm, SubLN gain', () => {
    refused(
      exportDir(BASE_CONFIG, (t) => t.delete('model.layers.1.post_attention_layernorm.weight')),
      /tensor 'model\.layers\.1\.post_attention_layernorm\.weight' is missing/,
    );
    refused(
      exportDir({ ...BASE_CONFIG, model_type: 'qwen2' }, (t) => t.delete('model.layers.0.self_attn.v_proj.bias')),
      /v_proj\.bias' is missing/,
    );
    refused(
      exportDir({ ...BASE_CONFIG, model_type: 'qwen3' }, (t) => t.delete('model.layers.0.self_attn.k_norm.weight')),
      /k_norm\.weight' is missing/,
    );
    refused(
      exportDir(BASE_CONFIG, (t) => t.delete('model.layers.0.mlp.ffn_sub_norm.weight')),
      /ffn_sub_norm\.weight' is missing/,
    );
    refused(
      exportDir(BASE_CONFIG, (t) => t.delete(`${Q0}.weight_scale`)),
      /q_proj\.weight_scale' is missing/,
    );
  });

  it('norms, q/k norms, SubLN gains and biases of the wrong size or dtype', () => {
    const set = (name: string, e: TensorEntry) => (t: Map<string, TensorEntry>) => t.set(name, e);
    refused(
      exportDir(BASE_CONFIG, set('model.norm.weight', { dtype: 'F32', shape: [15], data: new Float32Array(15) })),
      /'model\.norm\.weight' is F32 \[15\]; expected F32, F16 or BF16 \[16\] \(\[hidden_size\]\)/,
    );
    refused(exportDir(BASE_CONFIG, set('model.norm.weight', { dtype: 'I32', shape: [16], data: new Int32Array(16) })), /'model\.norm\.weight' is I32 \[16\]/);
    refused(
      exportDir(BASE_CONFIG, set('model.norm.weight', { dtype: 'F32', shape: [1, 16], data: new Float32Array(16) })),
      /'model\.norm\.weight' is F32 \[1, 16\]/,
    );
    refused(
      exportDir(
        { ...BASE_CONFIG, model_type: 'qwen3' },
        set('model.layers.1.self_attn.q_norm.weight', { dtype: 'F32', shape: [16], data: new Float32Array(16) }),
      ),
      /q_norm\.weight' is F32 \[16\]; expected .*\[8\] \(\[head_dim\]\)/,
    );
    refused(
      exportDir(BASE_CONFIG, set('model.layers.0.mlp.ffn_sub_norm.weight', { dtype: 'F32', shape: [16], data: new Float32Array(16) })),
      /ffn_sub_norm\.weight' is F32 \[16\]; expected .*\[32\]/,
    );
    refused(
      exportDir(
        { ...BASE_CONFIG, model_type: 'qwen2' },
        set('model.layers.0.self_attn.k_proj.bias', { dtype: 'F32', shape: [16], data: new Float32Array(16) }),
      ),
      /k_proj\.bias' is F32 \[16\]; expected .*\[8\]/,
    );
  });

  it('a NaN, an infinity or a value beyond fp16 range in a float tensor', () => {
    const poison = (name: string, v: number) => (t: Map<string, TensorEntry>) => ((t.get(name) as { data: Float32Array }).data[5] = v);
    refused(
      exportDir(BASE_CONFIG, poison('model.embed_tokens.weight', NaN)),
      /'model\.embed_tokens\.weight' holds NaN at index 5; the weights of a decoder are finite and within ±65504/,
    );
    refused(exportDir(BASE_CONFIG, poison('model.layers.1.input_layernorm.weight', Infinity)), /input_layernorm\.weight' holds Infinity at index 5/);
    refused(
      exportDir(BASE_CONFIG, poison('model.layers.1.mlp.down_proj.weight', -1e9), ['model.layers.1.mlp.down_proj']),
      /down_proj\.weight' holds -1000000000 at index 5/,
    );
    const d = exportDir(BASE_CONFIG, poison('lm_head.weight', -Infinity));
    expect(() => TernaryRuntime.load(d, { embeddings: 'int8' })).to.throw(FormatError, /'lm_head\.weight' cannot be held as int8 rows/);
    const big = exportDir(BASE_CONFIG, poison('model.embed_tokens.weight', 1e20));
    expect(() => TernaryRuntime.load(big, { embeddings: 'int8' })).to.throw(
      FormatError,
      /'model\.embed_tokens\.weight' holds 1\d{20} at row 0 \(its max \|w\|\)/,
    );
  });

  it('a packed byte holding the invalid code 3', () => {
    refused(
      exportDir(BASE_CONFIG, (t) => ((t.get(`${Q0}.weight`) as { data: Uint8Array }).data[3] = 0xff)),
      /q_proj\.weight/,
      /code 3/,
    );
  });

  it('config.json that is not JSON, or JSON but not an object', () => {
    for (const [text, what] of [
      ['{"vocab_size": 5', /not valid JSON/],
      ['null', /expected a JSON object, found null/],
      ['[1, 2]', /found an array/],
      ['3', /found number/],
      ['"config"', /found string/],
    ] as const) {
      const d = exportDir();
      writeFileSync(join(d, 'config.json'), text);
      refused(d, /config\.json: /, what);
    }
  });
});

describe('TernaryRuntime.load: malformed GGUF files', () => {
  function gguf(
    edit: (meta: Map<string, ReturnType<typeof gv.str>>, f: GgufFile) => void,
    o: { hfConfig?: boolean; ternary?: boolean; config?: Record<string, unknown> } = {},
  ): string {
    const p = join(root, `g${n++}.gguf`);
    ggufFile(p, o.config ?? GGUF_CONFIG, o);
    const f = readGguf(p);
    edit(f.metadata, f);
    writeGguf(p, [...f.metadata], f.tensors);
    return p;
  }

  it('bitdistill.hf_config_json that is not JSON or not an object', () => {
    refused(
      gguf((m) => m.set('bitdistill.hf_config_json', gv.str('{"model_type": ')), { hfConfig: true }),
      /bitdistill\.hf_config_json is not valid JSON/,
    );
    refused(
      gguf((m) => m.set('bitdistill.hf_config_json', gv.str('null')), { hfConfig: true }),
      /bitdistill\.hf_config_json is not a JSON object/,
    );
    refused(
      gguf((m) => m.set('bitdistill.hf_config_json', gv.str('[]')), { hfConfig: true }),
      /bitdistill\.hf_config_json is not a JSON object/,
    );
  });

  it('block_count smaller than the blocks in the file names the first tensor left over (by its GGUF name)', () => {
    refused(
      gguf((m) => m.set('bitnet.block_count', gv.u32(1))),
      /tensor 'model\.layers\.1\.[a-z_.]+' \('blk\.1\.[a-z_.]+' in the file\) is not part of the model the config describes: it belongs to layer 1/,
    );
  });

  it('epsilon 0 or negative, rope base 0', () => {
    refused(
      gguf((m) => m.set('bitnet.attention.layer_norm_rms_epsilon', gv.f32(0))),
      /rms_norm_eps' must be a number > 0, got 0/,
    );
    refused(
      gguf((m) => m.set('bitnet.attention.layer_norm_rms_epsilon', gv.f32(-1e-5))),
      /rms_norm_eps' must be a number > 0/,
    );
    refused(
      gguf((m) => m.set('bitnet.rope.freq_base', gv.f32(0))),
      /rope_theta' must be a number >= 1 .*got 0/,
    );
  });

  it('a TQ2_0 block scale that is negative', () => {
    const config = {
      ...GGUF_CONFIG,
      hidden_size: 256,
      intermediate_size: 256,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 64,
      num_hidden_layers: 1,
    };
    const p = gguf(
      (_m, f) => {
        const t = f.tensors.find((x) => x.name === 'blk.0.attn_k.weight');
        if (t === undefined) throw new Error('fixture has no attn_k');
        t.data[65 + 66] = 0xae; // block 1: d = -0.1
      },
      { ternary: true, config },
    );
    refused(p, /tensor 'blk\.0\.attn_k\.weight' block 1 has scale d = -0\.0999/);
  });
});

describe('tokenizerFromGguf', () => {
  it('rebuilds a SentencePiece vocabulary of 150k tokens (Math.max(...pieces) threw RangeError)', () => {
    const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), '\u2581'];
    while (tokens.length < 150_000) tokens.push(`t${tokens.length}`);
    const f: GgufFile = {
      version: 3,
      alignment: 32,
      metadata: new Map([
        ['tokenizer.ggml.model', gv.str('llama')],
        ['tokenizer.ggml.tokens', gv.strings(tokens)],
        ['tokenizer.ggml.scores', gv.f32s(new Float32Array(tokens.length))],
      ]),
      tensors: [],
      dataStart: 0,
    };
    const tok = tokenizerFromGguf(f, 'big.gguf');
    expect(tok.vocabSize).to.equal(150_000);
    expect(tok.idToToken(149_999)).to.equal('t149999');
  });

  it('a corrupt embedded tokenizer.json ("gpt2") is a FormatError naming the GGUF and the key, not a temporary copy', () => {
    for (const text of ['{"model": ', 'null', '[]']) {
      const f: GgufFile = {
        version: 3,
        alignment: 32,
        metadata: new Map([
          ['tokenizer.ggml.model', gv.str('gpt2')],
          ['tokenizer.huggingface.json', gv.str(text)],
        ]),
        tensors: [],
        dataStart: 0,
      };
      try {
        tokenizerFromGguf(f, 'x.gguf');
        expect.fail(`accepted ${text}`);
      } catch (e) {
        expect(e).to.be.instanceOf(FormatError);
        expect((e as Error).message).to.match(/^x\.gguf: tokenizer\.huggingface\.json: /);
        expect((e as Error).message).to.not.contain('bitdistill-gguf-tok-');
      }
    }
  });

  it('a malformed vocabulary is a typed error', () => {
    const f: GgufFile = {
      version: 3,
      alignment: 32,
      metadata: new Map([
        ['tokenizer.ggml.model', gv.str('llama')],
        ['tokenizer.ggml.tokens', gv.strings(['a', 'b'])],
        ['tokenizer.ggml.scores', gv.f32s([0])],
      ]),
      tensors: [],
      dataStart: 0,
    };
    expect(() => tokenizerFromGguf(f, 'x.gguf')).to.throw(FormatError, /1 scores for 2 tokens/);
    f.metadata.set('tokenizer.ggml.scores', gv.f32s([0, 0]));
    try {
      tokenizerFromGguf(f, 'x.gguf');
      expect.fail('accepted a 2-token vocabulary');
    } catch (e) {
      expect(isBitDistillError(e)).to.equal(true);
    }
  });
});
