// Tensor names and shapes against literal Hugging Face key lists (written out by hand from transformers'
// Qwen3 / Llama state dicts), and the projection-name parser against its inverse.
import { expect } from 'chai';
import { expectedTensorShapes, parseDecoderConfig, parseProjectionWeight, projectionName, PROJECTIONS } from '../src/index.ts';

const qwen3 = parseDecoderConfig(
  {
    model_type: 'qwen3',
    vocab_size: 10,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 4,
    tie_word_embeddings: true,
  },
  'qwen3.json',
);

describe('arch/names', () => {
  it('a one-layer Qwen3 (GQA, head_dim 4, tied) needs exactly the keys of its HF state dict', () => {
    expect(Object.fromEntries(expectedTensorShapes(qwen3))).to.deep.equal({
      'model.embed_tokens.weight': [10, 8],
      'model.layers.0.input_layernorm.weight': [8],
      'model.layers.0.self_attn.q_proj.weight': [16, 8],
      'model.layers.0.self_attn.k_proj.weight': [8, 8],
      'model.layers.0.self_attn.v_proj.weight': [8, 8],
      'model.layers.0.self_attn.o_proj.weight': [8, 16],
      'model.layers.0.self_attn.q_norm.weight': [4],
      'model.layers.0.self_attn.k_norm.weight': [4],
      'model.layers.0.post_attention_layernorm.weight': [8],
      'model.layers.0.mlp.gate_proj.weight': [12, 8],
      'model.layers.0.mlp.up_proj.weight': [12, 8],
      'model.layers.0.mlp.down_proj.weight': [8, 12],
      'model.norm.weight': [8],
    });
  });

  it('a Llama student with attention_bias, untied head and allnorm SubLN adds biases, lm_head and seven gains', () => {
    const c = parseDecoderConfig(
      {
        model_type: 'llama',
        vocab_size: 10,
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        attention_bias: true,
        bitdistill: { subln: 'allnorm' },
      },
      'llama.json',
    );
    const m = expectedTensorShapes(c);
    const extra = [...m.keys()].filter((k) => /bias|sub_norm|lm_head/.test(k));
    expect(Object.fromEntries(extra.map((k) => [k, m.get(k)]))).to.deep.equal({
      'model.layers.0.self_attn.q_proj.bias': [8],
      'model.layers.0.self_attn.k_proj.bias': [8],
      'model.layers.0.self_attn.v_proj.bias': [8],
      'model.layers.0.self_attn.o_proj.bias': [8],
      'model.layers.0.self_attn.q_sub_norm.weight': [8],
      'model.layers.0.self_attn.k_sub_norm.weight': [8],
      'model.layers.0.self_attn.v_sub_norm.weight': [8],
      'model.layers.0.self_attn.attn_sub_norm.weight': [8],
      'model.layers.0.mlp.gate_sub_norm.weight': [8],
      'model.layers.0.mlp.up_sub_norm.weight': [8],
      'model.layers.0.mlp.ffn_sub_norm.weight': [12],
      'lm_head.weight': [10, 8],
    });
  });

  it('parseProjectionWeight inverts projectionName and refuses every other tensor', () => {
    for (const layer of [0, 7, 123])
      for (const proj of PROJECTIONS) expect(parseProjectionWeight(`${projectionName(layer, proj)}.weight`)).to.deep.equal({ layer, proj });
    for (const name of [
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.mlp.q_proj.weight',
      'model.layers.0.self_attn.gate_proj.weight',
      'model.layers.x.self_attn.q_proj.weight',
      'model.embed_tokens.weight',
      'lm_head.weight',
      'model.layers.0.self_attn.q_norm.weight',
    ]) {
      expect(parseProjectionWeight(name), name).to.equal(null);
    }
  });
});
