// Writes test/fixtures/tiny-bitnet-hf: `bitdistill export --ternary --hf-compat` of a tiny random student with
// standard SubLN and the default SubLN epsilon (1e-8), for test/interop-hf.test.ts. Its golden logits come from
// scripts/reference/hf_bitnet_forward.py, an independent numpy forward with transformers' BitNet semantics:
//   node --import tsx scripts/make-tiny-bitnet-fixture.ts
//   python3 scripts/reference/hf_bitnet_forward.py test/fixtures/tiny-bitnet-hf > test/golden/tiny-bitnet-hf.json
//   python3 scripts/reference/hf_bitnet_forward.py test/fixtures/tiny-bitnet-hf --subln-eps 1e-8 > test/golden/tiny-bitnet-hf-subln-1e-8.json
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { Rng } from '@bitdistill/core';
import { exportTernary } from '@bitdistill/export';
import { initDecoder, saveModel } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';

await initBackend('cpu');
const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
};
const model = initDecoder(config, 21); // std 0.02, as a fresh Hugging Face model
prepareStudent(model, { subln: 'standard', weightQuant: 'absmean' });
// Norm gains off 1 (SubLN and the model's own), so that a forward that dropped or moved one would be caught.
const rng = new Rng(22);
for (const [name, v] of model.params)
  if (name.endsWith('norm.weight'))
    v.assign(
      tf.tensor(
        Float32Array.from({ length: v.size }, () => 1 + 0.2 * rng.normal()),
        v.shape,
      ),
    );
const tmp = join(tmpdir(), 'tiny-bitnet-student'); // named in the export's bitdistill.exportedFrom
rmSync(tmp, { recursive: true, force: true });
await saveModel(model, tmp, { tokenizerFrom: 'models/stories260K' });
const r = exportTernary({ from: tmp, out: 'test/fixtures/tiny-bitnet-hf', hfCompat: true });
rmSync(tmp, { recursive: true, force: true });
console.log(r.out, r.parameters, 'parameters; SubLN epsilon mismatch:', r.sublnEps);
