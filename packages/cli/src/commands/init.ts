import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { ArgumentError, FormatError, NotFoundError } from '@bitdistill/core';
import { loadTokenizer } from '@bitdistill/data';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  arch: string;
  tokenizer: string;
  out: string;
  seed: number;
}

/**
 * A randomly initialised model folder (config.json from --arch, the tokenizer from --tokenizer): the starting
 * point of the `pretrain` stage when there is no pretrained base model to fine-tune.
 */
export const initCommand: CommandModule<GlobalArgs, Args> = {
  command: 'init',
  describe: 'create a randomly initialised model folder from an architecture config.json and a tokenizer',
  builder: (y) =>
    y
      .option('arch', { type: 'string', demandOption: true, describe: 'Hugging Face config.json (llama, qwen2 or qwen3) with the shape to build' })
      .option('tokenizer', { type: 'string', demandOption: true, describe: 'folder with tokenizer.json (+ tokenizer_config.json) or a llama2.c tokenizer' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (must not hold a model yet)' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the std-0.02 normal initialisation' }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    if (!existsSync(args.arch))
      throw new NotFoundError(args.arch, `--arch ${args.arch} does not exist`, {
        hint: 'give a config.json with model_type, hidden_size, num_hidden_layers, ...',
      });
    if (existsSync(join(args.out, 'model.safetensors'))) {
      throw new ArgumentError(`--out ${args.out} already holds a model.safetensors`, { hint: 'choose a new folder, or delete that one first' });
    }
    let arch: Record<string, unknown>;
    try {
      arch = JSON.parse(readFileSync(args.arch, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new FormatError(args.arch, `not valid JSON: ${(e as Error).message}`);
    }
    const tokenizer = loadTokenizer(args.tokenizer);
    const vocab = arch['vocab_size'];
    if (typeof vocab === 'number' && vocab < tokenizer.vocabSize) {
      throw new FormatError(args.arch, `vocab_size ${vocab} is smaller than the tokenizer's ${tokenizer.vocabSize} tokens`, {
        hint: `set vocab_size to at least ${tokenizer.vocabSize}`,
      });
    }
    await ctx.backend();
    const { copyTokenizerFiles, initDecoder, saveModel } = await import('@bitdistill/model');
    const model = initDecoder(arch, args.seed);
    await saveModel(model, args.out, { metadata: { format: 'pt', source: `bitdistill init --seed ${args.seed}` } });
    const copied = copyTokenizerFiles(args.tokenizer, args.out);
    const params = [...model.params.values()].reduce((a, p) => a + p.size, 0);
    model.dispose();
    ctx.logger.info({ out: args.out, params, tokenizer: copied }, 'initialised model');
  },
};
