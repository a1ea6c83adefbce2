/**
 * Libraries never print: they take a Logger. pino's logger satisfies this interface structurally, and
 * `silentLogger` is the default for library callers that pass none.
 */
export interface LogFn {
  (msg: string): void;
  (obj: object, msg?: string): void;
}

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};

export const silentLogger: Logger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop };
