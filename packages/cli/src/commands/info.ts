import type { CommandModule } from 'yargs';
import { loadModel } from '@bitdistill/model';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  model: string;
  json: boolean;
}

export const infoCommand: CommandModule<GlobalArgs, Args> = {
  command: 'info',
  describe: 'print the architecture, parameter count and tensor shapes of a model',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'model folder (HF layout) or llama2.c .bin' })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of text' }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    await ctx.backend();
    const { model, tokenizer } = loadModel(args.model, { trainable: false, logger: ctx.logger });
    const c = model.config;
    const tensors = [...model.params].map(([name, v]) => ({ name, shape: v.shape, params: v.size }));
    const arch = {
      model_type: c.modelType,
      hidden_size: c.hiddenSize,
      intermediate_size: c.intermediateSize,
      num_hidden_layers: c.numLayers,
      num_attention_heads: c.numHeads,
      num_key_value_heads: c.numKvHeads,
      head_dim: c.headDim,
      vocab_size: c.vocabSize,
      tie_word_embeddings: c.tieWordEmbeddings,
      qk_norm: c.qkNorm,
      attention_bias: c.qkvBias,
      rope_theta: c.ropeTheta,
      rms_norm_eps: c.rmsNormEps,
      subln: c.subln,
    };
    const total = model.numParameters();
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ architecture: arch, parameters: total, tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize }, tensors }, null, 2)}\n`);
    } else {
      const lines = [`model: ${args.model}`, 'architecture:'];
      for (const [k, v] of Object.entries(arch)) lines.push(`  ${k}: ${String(v)}`);
      lines.push(`tokenizer: ${tokenizer.kind}, ${tokenizer.vocabSize} tokens`);
      lines.push(`parameters: ${total.toLocaleString('en-US')}`, 'tensors:');
      const w = Math.max(...tensors.map((t) => t.name.length));
      for (const t of tensors) lines.push(`  ${t.name.padEnd(w)}  [${t.shape.join(', ')}]`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    model.dispose();
  },
};
