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
