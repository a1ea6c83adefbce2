export { AdamW, adamwRef } from './adamw.ts';
export type { AdamWOptions } from './adamw.ts';
export { learningRate, SCHEDULES } from './schedule.ts';
export type { ScheduleKind, ScheduleOptions } from './schedule.ts';
export { clipByGlobalNorm, clipScale } from './clip.ts';
export {
  saveCheckpoint,
  writeCheckpointDir,
  latestCheckpoint,
  listCheckpoints,
  readTrainerState,
  readOptimizerTensors,
  loadWeightsInto,
  checkpointName,
  verifyCheckpoint,
  findResumePoint,
  validateTrainerState,
  removeStaleTemporaries,
  fileDigest,
  MANIFEST_FILE,
} from './checkpoint.ts';
export type { TrainerState, CheckpointContent, WriteHook, CheckpointManifest, CheckpointExpectation, VerifiedCheckpoint, ResumePoint } from './checkpoint.ts';
export { runStage, averageCheckpointsInto, Interrupted } from './loop.ts';
export type { LoopSettings, LoopHooks, StageSpec, StageResult, EvalResult, MicroBatch, LossTerms, OptimSettings } from './loop.ts';
export { tfjsPredictor, evaluateLabelScoring } from './evaluate.ts';
export type { LabelScoringOptions } from './evaluate.ts';
export { SftStream, LmStream } from './streams.ts';
export { resolveTask, teacherStage, bitnetSftStage, continualPretrainStage, distillStage, resolveDistillLayer, resolveRelationHeads, answerCe, distillLoss, STAGE_FUNCTIONS } from './stages.ts';
export type { StageContext, DistillLossSettings } from './stages.ts';
export type { SftMicroBatch } from './streams.ts';
export { runTraining, summaryMarkdown, preflightTask } from './run.ts';
export type { TrainOptions, StageSummary } from './run.ts';
export { readRss, startStagePeak, readStagePeak } from './peak-rss.ts';
export type { RssReading, StagePeak } from './peak-rss.ts';
