export {
  BitDistillError,
  FormatError,
  ShapeError,
  ArgumentError,
  NotFoundError,
  UnsupportedError,
  ConfigError,
  MemoryBudgetError,
  DeviceError,
  DeviceLimitError,
  isBitDistillError,
} from './errors.ts';
export type { ErrorCode, BitDistillErrorOptions, ConfigIssue } from './errors.ts';
export type { Logger, LogFn } from './logger.ts';
export { silentLogger } from './logger.ts';
export { Rng } from './rng.ts';
export type { RngState } from './rng.ts';
export { assertShape, shapeSize, shapeToString } from './shape.ts';
export type { Shape } from './shape.ts';
export { setFusedOps, fusedOpsEnabled } from './fused.ts';
