// Writes the tiny random Qwen3 / Qwen2 model folders under test/fixtures/ used by the decoder tests
// (golden logits for them come from scripts/reference/hf_decoder_forward.py, an independent numpy forward).
// Run: node --import tsx scripts/make-tiny-fixtures.ts
import { copyFileSync } from 'node:fs';
import { initBackend } from '@bitdistill/backend';
import { initDecoder, saveModel } from '@bitdistill/model';

await initBackend('cpu');
const common = {
  vocab_size: 512,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  hidden_act: 'silu',
  bos_token_id: 1,
  eos_token_id: 2,
};
const variants: Record<string, Record<string, unknown>> = {
  'tiny-qwen3': { ...common, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', attention_bias: false, tie_word_embeddings: true },
  'tiny-qwen2': { ...common, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: false },
};
let seed = 1;
for (const [name, cfg] of Object.entries(variants)) {
  const m = initDecoder(cfg, seed++, 0.2);
  // Non-trivial norm gains and biases, so that a forward that ignored them would be caught.
  for (const [pname, v] of m.params) {
    if (pname.endsWith('norm.weight') || pname.endsWith('.bias')) {
      const n = v.size;
      const vals = Float32Array.from({ length: n }, (_, i) => (pname.endsWith('.bias') ? 0.1 * Math.sin(i + 1) : 1 + 0.3 * Math.cos(i * 0.7)));
      v.assign((await import('@tensorflow/tfjs')).tensor(vals, v.shape));
    }
  }
  const dir = `test/fixtures/${name}`;
  await saveModel(m, dir);
  copyFileSync('models/stories260K/tokenizer.bin', `${dir}/tokenizer.bin`);
  console.log(dir, m.numParameters());
}
