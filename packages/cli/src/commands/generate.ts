import type { CommandModule } from 'yargs';
import { BitDistillError } from '@bitdistill/core';
import { initKernels } from '@bitdistill/kernels-cpu/runtime';
import { EMBEDDING_MODES, KV_CACHE_MODES, TernaryRuntime, type EmbeddingMode, type KvCacheMode } from '@bitdistill/runtime';
import { makeContext, type GlobalArgs } from '../context.ts';
import { isExport } from '../exports.ts';

interface Args extends GlobalArgs {
  model: string;
  prompt: string;
  'max-new-tokens': number;
  embeddings?: EmbeddingMode;
  'kv-cache'?: KvCacheMode;
}

export const generateCommand: CommandModule<GlobalArgs, Args> = {
  command: 'generate',
  describe: 'greedy decoding from a prompt; prints prompt + continuation',
  builder: (y) =>
    y
      .option('model', {
        type: 'string',
        demandOption: true,
        describe: 'model folder (HF layout) or llama2.c .bin (tfjs); an export folder or .gguf runs on the kernels runtime',
      })
      .option('prompt', { type: 'string', demandOption: true })
      .option('max-new-tokens', { type: 'number', default: 64 })
      .option('embeddings', { choices: EMBEDDING_MODES, describe: 'kernels runtime: embeddings and lm_head as exported (fp32) or as int8 rows' })
      .option('kv-cache', {
        choices: KV_CACHE_MODES,
        describe: 'kernels runtime: KV cache in f32 (exact, default) or f16 (half the memory; moves logits slightly)',
      }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    if (isExport(args.model)) {
      initKernels({ logger: ctx.logger });
      const rt = TernaryRuntime.load(args.model, { embeddings: args.embeddings ?? 'fp32', kvCache: args['kv-cache'] ?? 'f32' });
      const tok = rt.tokenizer;
      const promptIds = tok.encode(args.prompt, { addBos: tok.bosId !== null });
      ctx.logger.debug({ promptIds }, 'prompt tokens');
      const g = rt.generate(promptIds, args['max-new-tokens']);
      process.stdout.write(`${tok.decode([...promptIds, ...g.ids])}\n`);
      ctx.logger.info(
        {
          runtime: 'kernels',
          embeddings: rt.info.embeddings,
          kvCache: rt.info.kvCache,
          newTokens: g.ids.length,
          prefillTokensPerSecond: Number((promptIds.length / g.prefillSeconds).toFixed(1)),
          // the first new token comes from the prefill's logits, the rest from decode steps (none: null)
          tokensPerSecond: g.ids.length > 1 ? Number(((g.ids.length - 1) / g.decodeSeconds).toFixed(1)) : null,
        },
        'generated',
      );
      return;
    }
    for (const flag of ['embeddings', 'kv-cache'] as const) {
      if (args[flag] !== undefined) {
        throw new BitDistillError('E_USAGE', `--${flag} applies to exports (the kernels runtime) only`, {
          hint: `drop --${flag}, or pass a folder written by \`bitdistill export --ternary\` or a .gguf file`,
        });
      }
    }
    await ctx.backend();
    const { loadModel, generateGreedy } = await import('@bitdistill/model');
    const { model, tokenizer } = loadModel(args.model, { trainable: false, logger: ctx.logger });
    const promptIds = tokenizer.encode(args.prompt, { addBos: tokenizer.bosId !== null });
    ctx.logger.debug({ promptIds }, 'prompt tokens');
    const t0 = performance.now();
    const ids = await generateGreedy(model, promptIds, { maxNewTokens: args['max-new-tokens'], eosId: tokenizer.eosId });
    const secs = (performance.now() - t0) / 1000;
    process.stdout.write(`${tokenizer.decode([...promptIds, ...ids])}\n`);
    ctx.logger.info({ newTokens: ids.length, tokensPerSecond: Number((ids.length / secs).toFixed(1)) }, 'generated');
    model.dispose();
  },
};
