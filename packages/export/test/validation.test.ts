// The exporters on corrupt checkpoints (issue 21): a config.json that is not a JSON object, or whose sizes
// disagree with the tensors (vocab_size, num_hidden_layers, projection shapes) or are absurd, is a FormatError
// naming the file and the key or tensor, raised before any loop runs over those sizes. Before, exportGguf padded
// the GGUF vocabulary up to vocab_size one token at a time and walked num_hidden_layers, so a corrupt value hung it.
import { expect } from 'chai';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, Rng } from '@bitdistill/core';
import { writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { TINY_LLAMA } from '../../format/test/fixtures.ts';
import { exportGguf, exportTernary, ggufTokenizerMetadata } from '../src/index.ts';

/** A student checkpoint's config.json: TINY_LLAMA (tied embeddings) with SubLN standard. */
const CONFIG: Record<string, unknown> = { ...TINY_LLAMA, bitdistill: { subln: 'standard', weightQuant: 'absmean' } };

/** The F32 tensors of a student checkpoint of CONFIG (latent weights, SubLN gains). */
function checkpointTensors(): Map<string, TensorEntry> {
  const rng = new Rng(7);
  const t = new Map<string, TensorEntry>();
  const f32 = (name: string, shape: number[], mean: number, std: number) => {
    t.set(name, { dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => mean + std * rng.normal()) });
  };
  f32('model.embed_tokens.weight', [512, 16], 0, 0.5);
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    f32(`${p}.input_layernorm.weight`, [16], 1, 0.1);
    f32(`${p}.post_attention_layernorm.weight`, [16], 1, 0.1);
    f32(`${p}.self_attn.q_proj.weight`, [16, 16], 0, 0.2);
    f32(`${p}.self_attn.k_proj.weight`, [8, 16], 0, 0.2);
    f32(`${p}.self_attn.v_proj.weight`, [8, 16], 0, 0.2);
    f32(`${p}.self_attn.attn_sub_norm.weight`, [16], 1, 0.1);
    f32(`${p}.self_attn.o_proj.weight`, [16, 16], 0, 0.2);
    f32(`${p}.mlp.gate_proj.weight`, [32, 16], 0, 0.2);
    f32(`${p}.mlp.up_proj.weight`, [32, 16], 0, 0.2);
    f32(`${p}.mlp.ffn_sub_norm.weight`, [32], 1, 0.1);
    f32(`${p}.mlp.down_proj.weight`, [16, 32], 0, 0.2);
  }
  f32('model.norm.weight', [16], 1, 0.1);
  return t;
}

describe('exporters on corrupt checkpoints', function () {
  this.timeout(60_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-export-validate-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  function checkpoint(config: Record<string, unknown> | string = CONFIG, tensors = checkpointTensors()): string {
    const dir = join(root, `ckpt-${n++}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    copyFileSync('models/stories260K/tokenizer.bin', join(dir, 'tokenizer.bin'));
    return dir;
  }

  /** Both exporters refuse `from` with a FormatError matching every pattern. */
  function refused(from: string, ...patterns: RegExp[]): void {
    for (const run of [
      () => exportTernary({ from, out: join(root, `out-${n++}`) }),
      () => exportGguf({ from, out: join(root, `out-${n++}.gguf`), allowFallback: true }),
    ]) {
      try {
        run();
        expect.fail('the export succeeded');
      } catch (e) {
        expect(e).to.be.instanceOf(FormatError);
        expect((e as FormatError).code).to.equal('E_FORMAT');
        for (const p of patterns) expect((e as Error).message).to.match(p);
      }
    }
  }

  it('an intact checkpoint exports both ways', () => {
    const from = checkpoint();
    expect(exportTernary({ from, out: join(root, 'ok') }).quantizedTensors).to.equal(14);
    expect(exportGguf({ from, out: join(root, 'ok.gguf'), allowFallback: true }).fallbackTensors).to.have.length(14);
  });

  it('config.json that is not JSON, or not an object', () => {
    for (const [text, what] of [
      ['{"model_type": "llama",', /not valid JSON/],
      ['null', /expected a JSON object, found null/],
      ['[]', /found an array/],
      ['7', /found number/],
    ] as const) {
      refused(checkpoint(text), /config\.json: /, what);
    }
  });

  it('vocab_size that disagrees with the embedding fails before the tokenizer is padded to it', () => {
    const t0 = performance.now();
    refused(
      checkpoint({ ...CONFIG, vocab_size: 1 << 22 }),
      /model\.safetensors: tensor 'model\.embed_tokens\.weight' is \[512, 16\]; config\.json implies \[4194304, 16\] \(\[vocab_size, hidden_size\]\)/,
    );
    expect(performance.now() - t0).to.be.lessThan(5000);
    refused(checkpoint({ ...CONFIG, vocab_size: 2 ** 40 }), /config\.json: key 'vocab_size' is 1099511627776, beyond the 4194304/);
    refused(checkpoint({ ...CONFIG, vocab_size: 511.5 }), /key 'vocab_size' must be a positive integer, got 511\.5/);
    refused(checkpoint({ ...CONFIG, vocab_size: -512 }), /key 'vocab_size' must be a positive integer, got -512/);
  });

  it('num_hidden_layers that disagrees with the layers in the file', () => {
    refused(
      checkpoint({ ...CONFIG, num_hidden_layers: 1 }),
      /tensor 'model\.layers\.1\.[a-z_.]+' belongs to layer 1, and config\.json's num_hidden_layers is 1/,
    );
    refused(checkpoint({ ...CONFIG, num_hidden_layers: 1000 }), /tensor 'model\.layers\.2\.self_attn\.q_proj\.weight' is missing/);
    refused(checkpoint({ ...CONFIG, num_hidden_layers: 1e6 }), /key 'num_hidden_layers' is 1000000, beyond the 1024/);
  });

  it('a projection whose shape disagrees with the config', () => {
    const t = checkpointTensors();
    t.set('model.layers.1.mlp.down_proj.weight', { dtype: 'F32', shape: [32, 16], data: new Float32Array(512) });
    refused(checkpoint(CONFIG, t), /tensor 'model\.layers\.1\.mlp\.down_proj\.weight' is \[32, 16\]; config\.json implies \[16, 32\]/);
    refused(checkpoint({ ...CONFIG, intermediate_size: 48 }), /gate_proj\.weight' is \[32, 16\]; config\.json implies \[48, 16\]/);
  });

  it('untied embeddings without an lm_head of [vocab_size, hidden_size] (the safetensors export; GGUF refuses untied models)', () => {
    const from = checkpoint({ ...CONFIG, tie_word_embeddings: false });
    expect(() => exportTernary({ from, out: join(root, `out-${n++}`) })).to.throw(FormatError, /tensor 'lm_head\.weight' is missing/);
    const t = checkpointTensors();
    t.set('lm_head.weight', { dtype: 'F32', shape: [16, 512], data: new Float32Array(8192) });
    const transposed = checkpoint({ ...CONFIG, tie_word_embeddings: false }, t);
    expect(() => exportTernary({ from: transposed, out: join(root, `out-${n++}`) })).to.throw(
      FormatError,
      /'lm_head\.weight' is \[16, 512\]; config\.json implies \[512, 16\]/,
    );
  });

  it('rms_norm_eps <= 0, rope_theta < 1', () => {
    refused(checkpoint({ ...CONFIG, rms_norm_eps: 0 }), /key 'rms_norm_eps' must be a number > 0, got 0/);
    refused(checkpoint({ ...CONFIG, rope_theta: -1 }), /key 'rope_theta' must be a number >= 1 \(a RoPE base, e\.g\. 10000\), got -1/);
  });

  it('a tokenizer_config.json that is not a JSON object (byte-level BPE vocabulary); a vocabSize beyond bounds', () => {
    const dir = join(root, 'qwen-tok');
    cpSync('models/qwen3-tokenizer', dir, { recursive: true });
    const good = ggufTokenizerMetadata(dir, 151936, {});
    expect(good.problems).to.deep.equal([]);
    for (const text of ['{"add_bos_token": ', '[]', 'null']) {
      writeFileSync(join(dir, 'tokenizer_config.json'), text);
      expect(() => ggufTokenizerMetadata(dir, 151936, {})).to.throw(FormatError, /tokenizer_config\.json/);
    }
    writeFileSync(join(dir, 'tokenizer_config.json'), readFileSync('models/qwen3-tokenizer/tokenizer_config.json'));
    expect(() => ggufTokenizerMetadata(dir, 2 ** 40, {})).to.throw(/vocabSize must be an integer in \[1, 2\^22\]/);
  });
});
