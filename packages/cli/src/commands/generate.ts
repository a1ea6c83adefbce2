import type { CommandModule } from 'yargs';
import { loadModel, generateGreedy } from '@bitdistill/model';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  model: string;
  prompt: string;
  'max-new-tokens': number;
}

export const generateCommand: CommandModule<GlobalArgs, Args> = {
  command: 'generate',
  describe: 'greedy decoding from a prompt; prints prompt + continuation',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'model folder (HF layout) or llama2.c .bin' })
      .option('prompt', { type: 'string', demandOption: true })
      .option('max-new-tokens', { type: 'number', default: 64 }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    await ctx.backend();
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
