/** What every command gets: the global options, a logger, and the backend (initialised on first use). */
import type { BackendInfo } from '@bitdistill/backend';
import type { BackendChoice } from '@bitdistill/config';
import type { Logger } from 'pino';
import { createLogger, type LogLevel } from './log.ts';

export interface GlobalArgs {
  'log-level': LogLevel;
  backend: BackendChoice;
  verbose: boolean;
}

export interface Context {
  logger: Logger;
  backend: () => Promise<BackendInfo>;
}

export function makeContext(args: GlobalArgs): Context {
  const logger = createLogger(args['log-level']);
  // tfjs loads only when a command asks for the backend: the kernels runtime's commands never do.
  return { logger, backend: async () => (await import('@bitdistill/backend')).initBackend(args.backend, logger) };
}
