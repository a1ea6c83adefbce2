import type { CommandModule } from 'yargs';
import { estimateRun, formatMemoryTable, loadConfig, memoryJson } from '@bitdistill/config';
import type { GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  config: string;
  overrides: string[];
  json: boolean;
}

/**
 * The resolved config, then the estimated peak memory of each stage (YAML comments, so the output still loads
 * as a config) next to the machine's available memory and the backend's limit. No tfjs, no weights read: the
 * estimate needs only model.path's config.json; without it the estimate is reported unavailable, not an error.
 */
export const validateCommand: CommandModule<GlobalArgs, Args> = {
  command: 'validate [overrides..]',
  describe: 'load a YAML config, apply dotted.key=value overrides, validate it and print the resolved config and its memory estimate',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'YAML config file' })
      .positional('overrides', { type: 'string', array: true, default: [], describe: 'dotted.key=value overrides' })
      .option('json', { type: 'boolean', default: false, describe: 'print {config, memory} as JSON' }) as never,
  handler: (args) => {
    const { config, resolvedYaml } = loadConfig(args.config, args.overrides);
    // --backend on the command line wins over the config's backend key (as in `train`).
    const explicit = process.argv.some((a) => a === '--backend' || a.startsWith('--backend='));
    const estimate = estimateRun(config, { backend: explicit ? args.backend : config.backend });
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ config, memory: memoryJson(estimate) }, null, 2)}\n`);
      return;
    }
    process.stdout.write(resolvedYaml);
    process.stdout.write(formatMemoryTable(estimate));
  },
};
