import type { CommandModule } from 'yargs';
import { loadConfig } from '@bitdistill/config';
import type { GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  config: string;
  overrides: string[];
}

export const validateCommand: CommandModule<GlobalArgs, Args> = {
  command: 'validate [overrides..]',
  describe: 'load a YAML config, apply dotted.key=value overrides, validate it and print the resolved config',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'YAML config file' })
      .positional('overrides', { type: 'string', array: true, default: [], describe: 'dotted.key=value overrides' }) as never,
  handler: (args) => {
    const { resolvedYaml } = loadConfig(args.config, args.overrides);
    process.stdout.write(resolvedYaml);
  },
};
