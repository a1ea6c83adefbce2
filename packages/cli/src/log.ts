/**
 * pino logger for the CLI: pretty and coloured on a TTY, JSON lines otherwise. Logs go to stderr so that
 * stdout carries only results (generated text, --json output).
 */
import { pino, type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = 'info'): PinoLogger {
  if (process.stderr.isTTY) {
    return pino({ level }, pretty({ colorize: true, destination: 2, sync: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' }));
  }
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}
