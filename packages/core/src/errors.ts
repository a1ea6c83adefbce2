/**
 * Errors that reach a user carry a stable code, a one-line message naming the file/key/argument, and a hint
 * that says what to do. The CLI maps them to exit codes and prints a stack only with --verbose.
 */
export type ErrorCode =
  | 'E_USAGE' // bad command-line use
  | 'E_CONFIG' // invalid YAML config (see ConfigError for the list)
  | 'E_NOT_FOUND' // a file or folder that should exist does not
  | 'E_FORMAT' // a file exists but its bytes are not what the format says
  | 'E_UNSUPPORTED' // valid input that this version cannot handle (architecture, dtype, ...)
  | 'E_SHAPE' // tensors or arguments whose shapes do not fit
  | 'E_ARGUMENT' // a bad value passed to a library function
  | 'E_DATA' // a dataset row or corpus problem
  | 'E_NUMERIC' // NaN / Inf during training
  | 'E_MEMORY' // a stage's estimated peak memory exceeds the machine or the backend
  | 'E_DEVICE' // the GPU device failed (no adapter, a validation error, device lost)
  | 'E_DEVICE_LIMIT' // a tensor larger than the GPU adapter allows in one buffer
  | 'E_IO' // an OS-level read/write failure
  | 'E_INTERRUPTED'; // SIGINT / SIGTERM stopped a stage after saving a checkpoint

export interface BitDistillErrorOptions {
  hint?: string;
  cause?: unknown;
}

export class BitDistillError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: BitDistillErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BitDistillError';
    this.code = code;
    this.hint = options.hint;
  }
}

/** A file whose bytes do not follow its format. `file` is the path (or a label like "<buffer>"). */
export class FormatError extends BitDistillError {
  readonly file: string;
  constructor(file: string, message: string, options: BitDistillErrorOptions = {}) {
    super('E_FORMAT', `${file}: ${message}`, options);
    this.name = 'FormatError';
    this.file = file;
  }
}

export class ShapeError extends BitDistillError {
  constructor(message: string, options: BitDistillErrorOptions = {}) {
    super('E_SHAPE', message, options);
    this.name = 'ShapeError';
  }
}

export class ArgumentError extends BitDistillError {
  constructor(message: string, options: BitDistillErrorOptions = {}) {
    super('E_ARGUMENT', message, options);
    this.name = 'ArgumentError';
  }
}

export class NotFoundError extends BitDistillError {
  readonly path: string;
  constructor(path: string, message: string, options: BitDistillErrorOptions = {}) {
    super('E_NOT_FOUND', message, options);
    this.name = 'NotFoundError';
    this.path = path;
  }
}

export class UnsupportedError extends BitDistillError {
  constructor(message: string, options: BitDistillErrorOptions = {}) {
    super('E_UNSUPPORTED', message, options);
    this.name = 'UnsupportedError';
  }
}

/** A stage whose estimated peak memory (bytes) exceeds the limit (available RAM or the backend's heap). */
export class MemoryBudgetError extends BitDistillError {
  readonly stage: string;
  readonly estimateBytes: number;
  readonly limitBytes: number;
  constructor(stage: string, estimateBytes: number, limitBytes: number, message: string, options: BitDistillErrorOptions = {}) {
    super('E_MEMORY', message, options);
    this.name = 'MemoryBudgetError';
    this.stage = stage;
    this.estimateBytes = estimateBytes;
    this.limitBytes = limitBytes;
  }
}

/** The GPU device (WebGPU) failed: no adapter, a validation error it reported, or the device was lost. */
export class DeviceError extends BitDistillError {
  constructor(message: string, options: BitDistillErrorOptions = {}) {
    super('E_DEVICE', message, options);
    this.name = 'DeviceError';
  }
}

/**
 * A tensor the GPU cannot hold in one buffer: `bytes` over the adapter's `limit` (a WebGPU limit name such as
 * maxStorageBufferBindingSize) of `limitBytes`. Raised before a run when the estimate says so, or by the op
 * that would otherwise have been dropped by the device with a validation error (and read back as zeros).
 */
export class DeviceLimitError extends BitDistillError {
  readonly limit: string;
  readonly limitBytes: number;
  readonly bytes: number;
  constructor(limit: string, limitBytes: number, bytes: number, message: string, options: BitDistillErrorOptions = {}) {
    super('E_DEVICE_LIMIT', message, options);
    this.name = 'DeviceLimitError';
    this.limit = limit;
    this.limitBytes = limitBytes;
    this.bytes = bytes;
  }
}

/** One problem found in a config, with its dotted path (`optim.lr`, `stages[2]`). */
export interface ConfigIssue {
  path: string;
  message: string;
}

/**
 * All problems of one config at once: validation never stops at the first. `total` counts every problem found
 * when `issues` lists only the first ones (a hostile file can yield thousands).
 */
export class ConfigError extends BitDistillError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];
  readonly total: number;
  constructor(file: string, issues: readonly ConfigIssue[], total = issues.length) {
    const more = total > issues.length ? `\n  ... and ${total - issues.length} more not listed` : '';
    const lines = issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n') + more;
    super('E_CONFIG', `${file}: ${total} problem${total === 1 ? '' : 's'} in the config\n${lines}`, {
      hint: 'fix the keys listed above; `bitdistill validate --config FILE` re-checks without running',
    });
    this.name = 'ConfigError';
    this.file = file;
    this.issues = issues;
    this.total = total;
  }
}

export function isBitDistillError(e: unknown): e is BitDistillError {
  return e instanceof BitDistillError;
}
