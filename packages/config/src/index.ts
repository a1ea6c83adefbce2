export { loadConfig } from './load.ts';
export type { LoadedConfig } from './load.ts';
export { STAGE_NAMES, BACKEND_CHOICES, SCHEDULES, GEMM_FORMATS, validateConfig, formatConfig } from './train-config.ts';
export type {
  StageName,
  BackendChoice,
  ScheduleKind,
  GemmFormat,
  TrainConfig,
  ModelConfig,
  TaskConfig,
  CorpusConfig,
  StudentConfig,
  OptimConfig,
  DistillConfig,
  AveragingConfig,
} from './train-config.ts';
export {
  estimateStage,
  estimateRun,
  checkMemoryBudget,
  checkpointDiskBytes,
  diskWarning,
  formatMemoryTable,
  memoryJson,
  readModelShape,
  stageOptim,
  lossChunkRows,
  AUTO_CHUNK_BYTES,
} from './memory.ts';
export { checkDeviceLimits, checkWeightsOnDevice, stageTensors } from './device-limits.ts';
export type { DeviceBufferLimits, StageTensor } from './device-limits.ts';
export type { ModelShape, StageEstimate, RunEstimate, EstimateOptions, MachineMemory, Phase } from './memory.ts';
