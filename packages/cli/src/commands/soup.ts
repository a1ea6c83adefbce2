import type { CommandModule } from 'yargs';
import { soupCheckpoints } from '@bitdistill/export';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  model: string[];
  out: string;
}

export const soupCommand: CommandModule<GlobalArgs, Args> = {
  command: 'soup',
  describe: 'uniform model soup: the elementwise mean of checkpoints of one architecture (same tensors and shapes); config and tokenizer from the first',
  builder: (y) =>
    y
      .option('model', {
        type: 'string',
        array: true,
        demandOption: true,
        describe: 'a checkpoint folder or run stage folder (its final/); give --model two or more times',
      })
      .option('out', { type: 'string', demandOption: true, describe: 'output checkpoint folder (replaced if it exists)' }) as never,
  handler: (args) => {
    const ctx = makeContext(args);
    const r = soupCheckpoints({ models: args.model, out: args.out, logger: ctx.logger });
    process.stdout.write(
      `souped ${r.models.length} checkpoints -> ${r.out}: ${r.tensors} tensors, ${r.parameters.toLocaleString('en-US')} parameters (uniform mean)\n` +
        r.models.map((m) => `  ${m}\n`).join(''),
    );
  },
};
