import type { CommandModule } from 'yargs';
import { loadConfig, STAGE_NAMES, type StageName } from '@bitdistill/config';
import { runTraining, summaryMarkdown } from '@bitdistill/trainer';
import { initBackend } from '@bitdistill/backend';
import { createLogger } from '../log.ts';
import { ProgressBar } from '../progress.ts';
import type { GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  config: string;
  overrides: string[];
  stage?: StageName;
  resume: string;
}

export const trainCommand: CommandModule<GlobalArgs, Args> = {
  command: 'train [overrides..]',
  describe: 'run the stages of a YAML config (teacher, bitnet-sft, continual-pretrain, distill), resumably',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'YAML config file (see configs/)' })
      .positional('overrides', { type: 'string', array: true, default: [], describe: 'dotted.key=value overrides' })
      .option('stage', { choices: STAGE_NAMES, describe: 'run only this stage' })
      .option('resume', { type: 'string', default: 'auto', describe: 'auto: continue from the latest checkpoint; none: start over; PATH: resume from that checkpoint folder' }) as never,
  handler: async (args) => {
    const logger = createLogger(args['log-level']);
    const { config, resolvedYaml } = loadConfig(args.config, args.overrides);
    // --backend on the command line wins over the config's backend key.
    const explicit = process.argv.some((a) => a === '--backend' || a.startsWith('--backend='));
    await initBackend(explicit ? args.backend : config.backend, logger);
    let stopRequested = false;
    const onSignal = (sig: string) => {
      if (stopRequested) process.exit(130);
      stopRequested = true;
      logger.warn({ signal: sig }, 'stopping: saving a checkpoint first (send again to quit at once)');
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    const bar = new ProgressBar();
    let barStage = '';
    const rows = await runTraining(config, resolvedYaml, {
      ...(args.stage !== undefined ? { stage: args.stage } : {}),
      resume: args.resume,
      logger,
      hooks: {
        shouldStop: () => stopRequested,
        // Without a TTY there is no progress bar: the metrics records become the periodic log lines.
        onRecord: (r) => {
          if (!process.stderr.isTTY) logger.info(r, r['type'] === 'eval' ? 'eval' : 'train');
        },
        onStep: (p) => {
          if (barStage !== `${p.totalSteps}`) {
            barStage = `${p.totalSteps}`;
            bar.start('train', p.totalSteps, p.step - 1);
          }
          bar.update(p);
          if (p.step === p.totalSteps) {
            bar.stop();
            barStage = '';
          }
        },
      },
    }).finally(() => bar.stop());
    process.stdout.write(summaryMarkdown(config.name, rows));
  },
};
