/** Maps errors to what a user sees: one message, a hint, an exit code; the stack only with --verbose. */
import { isBitDistillError } from '@bitdistill/core';

export const EXIT_USAGE = 2;

export function exitCodeFor(e: unknown): number {
  if (isBitDistillError(e)) {
    if (e.code === 'E_INTERRUPTED') return 130;
    // A refused memory budget or device limit is a usage problem too: nothing ran, the fix is a setting.
    return e.code === 'E_CONFIG' || e.code === 'E_USAGE' || e.code === 'E_MEMORY' || e.code === 'E_DEVICE_LIMIT' ? EXIT_USAGE : 1;
  }
  return 1;
}

export function reportError(e: unknown, verbose: boolean): void {
  if (isBitDistillError(e)) {
    process.stderr.write(`error [${e.code}]: ${e.message}\n`);
    if (e.hint !== undefined) process.stderr.write(`hint: ${e.hint}\n`);
    if (verbose && e.stack !== undefined) process.stderr.write(`${e.stack}\n`);
    else if (!verbose) process.stderr.write('(run with --verbose for the stack trace)\n');
    return;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`internal error: ${err.message}\n`);
  if (verbose && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('this is a bug in bitdistill; run with --verbose and report the stack trace\n');
}
