import { existsSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import type { Logger } from 'pino';
import {
  checkDeviceLimits,
  checkMemoryBudget,
  checkpointDiskBytes,
  diskWarning,
  estimateRun,
  loadConfig,
  STAGE_NAMES,
  type StageName,
  type TrainConfig,
} from '@bitdistill/config';
import { createLogger } from '../log.ts';
import { ProgressBar } from '../progress.ts';
import type { GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  config: string;
  overrides: string[];
  stage?: StageName;
  resume: string;
  'memory-check': boolean;
}

const MiB = 2 ** 20;

/** The stages `runTraining` will train: --stage or all, minus those whose final/ exists (unless --resume none). */
function stagesToRun(config: TrainConfig, stage: StageName | undefined, resume: string): StageName[] {
  const selected = stage !== undefined ? [stage] : [...config.stages];
  if (resume !== 'auto') return selected; // none retrains them; a checkpoint path names its own stage
  return selected.filter((s) => !existsSync(join(config.outputDir, config.name, s, 'final', 'config.json')));
}

/**
 * Know before you load: estimate each stage about to run from model.path's config.json and refuse (E_MEMORY,
 * exit 2) one that does not fit the available memory or the backend's heap, before any weight is read or
 * anything is written under the run folder.
 */
function memoryCheck(config: TrainConfig, backend: string, stages: StageName[], logger: Logger): void {
  if (stages.length === 0) return;
  const estimate = estimateRun(config, { backend, stages });
  if (estimate.unavailable !== null) {
    logger.warn({ reason: estimate.unavailable }, 'memory estimate unavailable: training without the memory check');
    return;
  }
  for (const s of estimate.stages) {
    logger.info(
      {
        stage: s.stage,
        estimatedPeakMiB: Math.round(s.bytes.total / MiB),
        phase: s.phase,
        availableMiB: Math.round(estimate.machine.availableBytes / MiB),
        backend,
      },
      `stage ${s.stage}: estimated peak memory ${Math.round(s.bytes.total / MiB)} MiB`,
    );
  }
  checkMemoryBudget(estimate, config, stages);
  diskCheck(config, estimate, stages, logger);
}

/** Warns when the stages' checkpoints may not fit the output folder's free disk (a real-size run fills tens of GB). */
function diskCheck(config: TrainConfig, estimate: ReturnType<typeof estimateRun>, stages: StageName[], logger: Logger): void {
  let free: number;
  try {
    let dir = resolve(config.outputDir); // the nearest folder that exists: nothing is created before the memory check passes
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
    const st = statfsSync(dir);
    free = st.bavail * st.bsize;
  } catch {
    return; // no statfs here: the write-time E_IO error still names the file and keeps the last checkpoint
  }
  const need = checkpointDiskBytes(estimate, stages, config.checkpoint.keepLast);
  const warning = diskWarning(need, free, config.outputDir);
  if (warning !== null) logger.warn({ needBytes: need, freeBytes: free, outputDir: config.outputDir }, warning);
}

export const trainCommand: CommandModule<GlobalArgs, Args> = {
  command: 'train [overrides..]',
  describe: 'run the stages of a YAML config (teacher, bitnet-sft, continual-pretrain, distill), resumably',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'YAML config file (see configs/)' })
      .positional('overrides', { type: 'string', array: true, default: [], describe: 'dotted.key=value overrides' })
      .option('stage', { choices: STAGE_NAMES, describe: 'run only this stage' })
      .option('resume', {
        type: 'string',
        default: 'auto',
        describe: 'auto: continue from the latest checkpoint; none: start over; PATH: resume from that checkpoint folder',
      })
      .option('memory-check', {
        type: 'boolean',
        default: true,
        describe: 'refuse a stage whose estimated peak memory exceeds the available memory (--no-memory-check: run anyway)',
      }) as never,
  handler: async (args) => {
    const logger = createLogger(args['log-level']);
    const { config, resolvedYaml } = loadConfig(args.config, args.overrides);
    // --backend on the command line wins over the config's backend key.
    const explicit = process.argv.some((a) => a === '--backend' || a.startsWith('--backend='));
    const { initBackend } = await import('@bitdistill/backend');
    const { runTraining, summaryMarkdown } = await import('@bitdistill/trainer');
    const backend = await initBackend(explicit ? args.backend : config.backend, logger);
    const toRun = stagesToRun(config, args.stage, args.resume);
    if (args['memory-check']) memoryCheck(config, backend.name, toRun, logger);
    // A GPU's per-buffer limit is not a matter of estimates: a tensor over it cannot run at all.
    if (backend.webgpu !== null) checkDeviceLimits(config, toRun, backend.webgpu.limits, backend.webgpu.description);
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
      configFile: args.config,
      ...(args.stage !== undefined ? { stage: args.stage } : {}),
      resume: args.resume,
      logger,
      hooks: {
        shouldStop: () => stopRequested,
        // Without a TTY there is no progress bar: the metrics records become the periodic log lines.
        onRecord: (r) => {
          // The stage's memory record is logged by the loop itself.
          if (!process.stderr.isTTY && r['type'] !== 'memory') logger.info(r, r['type'] === 'eval' ? 'eval' : 'train');
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
    process.stdout.write(summaryMarkdown(config.name, rows, config.note));
  },
};
