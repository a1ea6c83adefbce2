/** What every command gets: the global options, a logger, and the backend (initialised on first use). */
import { initBackend, type BackendChoice, type BackendInfo } from '@bitdistill/backend';
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
  return { logger, backend: () => initBackend(args.backend, logger) };
}
