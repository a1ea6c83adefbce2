/**
 * `bitdistill`: the command-line entry. Each command lives in src/commands/<name>.ts and is listed below.
 * This is the only place that chooses the tfjs backend (through the commands' use of `initBackend`).
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BACKEND_CHOICES } from '@bitdistill/config';
import { BitDistillError } from '@bitdistill/core';
import { LOG_LEVELS } from './log.ts';
import { EXIT_USAGE, exitCodeFor, reportError } from './errors.ts';
import { generateCommand } from './commands/generate.ts';
import { infoCommand } from './commands/info.ts';
import { validateCommand } from './commands/validate.ts';
import { trainCommand } from './commands/train.ts';
import { importCommand } from './commands/import.ts';
import { initCommand } from './commands/init.ts';
import { exportCommand } from './commands/export.ts';
import { evalCommand } from './commands/eval.ts';
import { quantizeCommand } from './commands/quantize.ts';
import { soupCommand } from './commands/soup.ts';

const argv = hideBin(process.argv);

/** Options that take several values; any other option given twice (`--model a --model b`) is a usage error. */
const LIST_OPTIONS = new Set(['_', '$0', 'overrides', 'data', 'corpus']);
/** Options that take several values in one command only (`soup --model a --model b`). */
const COMMAND_LIST_OPTIONS: Record<string, ReadonlySet<string>> = { soup: new Set(['model']) };

function refuseRepeatedOptions(parsed: Record<string, unknown>): void {
  const command = Array.isArray(parsed['_']) ? String(parsed['_'][0]) : '';
  for (const [key, value] of Object.entries(parsed)) {
    if (!Array.isArray(value) || LIST_OPTIONS.has(key) || COMMAND_LIST_OPTIONS[command]?.has(key) || /[A-Z]/.test(key)) continue;
    throw new BitDistillError('E_USAGE', `--${key} was given ${value.length} times; it takes one value`, { hint: `keep one --${key}` });
  }
}
const verbose = argv.includes('--verbose');

try {
  await yargs(argv)
    .scriptName('bitdistill')
    .usage('$0 <command> [options]\n\nBitNet Distillation: full-precision LLM -> task-specific 1.58-bit model.')
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as const, describe: 'log verbosity (logs go to stderr)', global: true })
    .option('backend', { choices: BACKEND_CHOICES, default: 'auto' as const, describe: 'tfjs backend', global: true })
    .option('verbose', { type: 'boolean', default: false, describe: 'print stack traces on errors', global: true })
    .command(generateCommand)
    .command(infoCommand)
    .command(validateCommand)
    .command(trainCommand)
    .command(importCommand)
    .command(initCommand)
    .command(exportCommand)
    .command(evalCommand)
    .command(quantizeCommand)
    .command(soupCommand)
    .middleware(refuseRepeatedOptions, true)
    .demandCommand(1, 'name a command; see bitdistill --help')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`error [E_USAGE]: ${msg}\nhint: see \`bitdistill --help\`\n`);
      process.exit(EXIT_USAGE);
    })
    .help()
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .parseAsync();
} catch (e) {
  reportError(e, verbose);
  process.exitCode = exitCodeFor(e);
}
