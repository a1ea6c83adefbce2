export { loadConfig } from './load.ts';
export type { LoadedConfig } from './load.ts';
export { STAGE_NAMES, PIPELINE_STAGES, validateConfig, formatConfig } from './train-config.ts';
export type {
  StageName,
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
  formatMemoryTable,
  memoryJson,
  machineMemory,
  backendLimitBytes,
  readModelShape,
  parseModelShape,
  parameterCounts,
  stageOptim,
  lossChunkRows,
  AUTO_CHUNK_BYTES,
  PROCESS_OVERHEAD_BYTES,
  WASM_HEAP_LIMIT_BYTES,
} from './memory.ts';
export type { ModelShape, StageEstimate, RunEstimate, EstimateOptions, MachineMemory, Phase } from './memory.ts';
