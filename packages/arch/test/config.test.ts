// hfConfigKeys against parseDecoderConfig: writing a config's keys and reading them back gives the same config.
import { expect } from 'chai';
import { hfConfigKeys, parseDecoderConfig, type DecoderConfig } from '../src/index.ts';

const strip = (c: DecoderConfig): Omit<DecoderConfig, 'raw'> => {
  const { raw: _raw, ...rest } = c;
  return rest;
};

describe('arch/config', () => {
  const cases: Record<string, unknown>[] = [
    {
      model_type: 'llama',
      vocab_size: 512,
      hidden_size: 64,
      intermediate_size: 172,
      num_hidden_layers: 5,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      max_position_embeddings: 512,
      bos_token_id: 1,
      eos_token_id: 2,
    },
    {
      model_type: 'llama',
      vocab_size: 32,
      hidden_size: 16,
      intermediate_size: 40,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      attention_bias: true,
      rope_theta: 500000,
      bitdistill: { subln: 'standard', sublnEps: 1e-6 },
    },
    {
      model_type: 'qwen2',
      vocab_size: 151936,
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
      rope_theta: 1e6,
      rms_norm_eps: 1e-6,
    },
    {
      model_type: 'qwen3',
      vocab_size: 151936,
      hidden_size: 1024,
      intermediate_size: 3072,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
      tie_word_embeddings: true,
      eos_token_id: [151645, 151643],
      bitdistill: { subln: 'allnorm' },
    },
  ];
  for (const raw of cases) {
    it(`${String(raw['model_type'])} ${JSON.stringify(raw['bitdistill'] ?? {})}: parseDecoderConfig(hfConfigKeys(c)) is c`, () => {
      const c = parseDecoderConfig(raw, 'in.json');
      const back = parseDecoderConfig(hfConfigKeys(c), 'out.json');
      expect(strip(back)).to.deep.equal(strip(c));
    });
  }

  it('writes the HF key names (spot check against a Qwen3-0.6B config.json)', () => {
    const k = hfConfigKeys(parseDecoderConfig(cases[3] as Record<string, unknown>, 'qwen3.json'));
    expect(k).to.include({
      model_type: 'qwen3',
      hidden_size: 1024,
      num_hidden_layers: 28,
      num_key_value_heads: 8,
      head_dim: 128,
      vocab_size: 151936,
      tie_word_embeddings: true,
      eos_token_id: 151645,
    });
  });
});
