import type { CommandModule } from 'yargs';
import { ConfigError } from '@bitdistill/core';
import { estimateRun, formatMemoryTable, loadConfig, memoryJson } from '@bitdistill/config';
import { checkTaskConfig, loadTokenizer, type Tokenizer } from '@bitdistill/data';
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
 * The task is checked as `train` checks it before its first step: the definition, the data files (present, the
 * task's columns, at least one row) and the label words against model.path's tokenizer; any problem is an
 * E_CONFIG error listing them all (exit 2). Without a loadable tokenizer that one check is skipped, and said so.
 */
export const validateCommand: CommandModule<GlobalArgs, Args> = {
  command: 'validate [overrides..]',
  describe: 'load a YAML config, apply dotted.key=value overrides, validate it and print the resolved config and its memory estimate',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'YAML config file' })
      .positional('overrides', { type: 'string', array: true, default: [], describe: 'dotted.key=value overrides' })
      .option('json', { type: 'boolean', default: false, describe: 'print {config, memory} as JSON' }) as never,
  handler: async (args) => {
    const { config, resolvedYaml } = loadConfig(args.config, args.overrides);
    let tokenizer: Tokenizer | null = null;
    let tokenizerNote = '';
    try {
      tokenizer = loadTokenizer(config.model.path);
    } catch (e) {
      tokenizerNote = `# task: label words not checked against a tokenizer (${(e as Error).message.split('\n')[0]})\n`;
    }
    const { issues } = await checkTaskConfig(config.task, tokenizer, config.eval.mode, args.config);
    if (issues.length > 0) throw new ConfigError(args.config, issues);
    // --backend on the command line wins over the config's backend key (as in `train`).
    const explicit = process.argv.some((a) => a === '--backend' || a.startsWith('--backend='));
    const estimate = estimateRun(config, { backend: explicit ? args.backend : config.backend });
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ config, memory: memoryJson(estimate) }, null, 2)}\n`);
      return;
    }
    process.stdout.write(resolvedYaml);
    process.stdout.write(tokenizerNote);
    process.stdout.write(formatMemoryTable(estimate));
  },
};
