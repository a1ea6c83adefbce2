import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { NotFoundError } from '@bitdistill/core';
import { readLlama2c, writeSafetensors } from '@bitdistill/format';

import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  llama2c: string;
  tokenizer: string;
  out: string;
}

/** llama2.c checkpoint (+ its tokenizer) -> a Hugging Face style folder. No tfjs involved: tensors are copied. */
export const importCommand: CommandModule<GlobalArgs, Args> = {
  command: 'import',
  describe: 'convert a llama2.c checkpoint (.bin) and its tokenizer into a Hugging Face style model folder',
  builder: (y) =>
    y
      .option('llama2c', { type: 'string', demandOption: true, describe: 'llama2.c checkpoint (legacy v0 layout)' })
      .option('tokenizer', { type: 'string', demandOption: true, describe: 'llama2.c tokenizer (.bin)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder' }) as never,
  handler: (args) => {
    const ctx = makeContext(args);
    if (!existsSync(args.tokenizer)) throw new NotFoundError(args.tokenizer, `tokenizer '${args.tokenizer}' does not exist`);
    const ck = readLlama2c(args.llama2c);
    mkdirSync(args.out, { recursive: true });
    writeSafetensors(join(args.out, 'model.safetensors'), ck.tensors, { format: 'pt', source: 'llama2.c legacy v0 checkpoint' });
    writeFileSync(join(args.out, 'config.json'), `${JSON.stringify(ck.config, null, 2)}\n`);
    copyFileSync(args.tokenizer, join(args.out, 'tokenizer.bin'));
    ctx.logger.info({ out: args.out, tensors: ck.tensors.size }, 'imported llama2.c checkpoint');
  },
};
