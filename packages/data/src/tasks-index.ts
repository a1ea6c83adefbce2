// The task / reader / prompt / corpus / metrics half of @bitdistill/data, re-exported by index.ts.
export {
  GLUE_TASKS,
  GLUE_TASK_NAMES,
  METRIC_NAMES,
  getTask,
  defineTask,
  renderPrompt,
  templatePlaceholders,
  answerIndex,
  predictionValue,
  matchLabelWord,
  readAnswer,
  scoreRange,
  taskRecord,
  taskFromConfig,
} from './tasks.ts';
export type { TaskSpec, TaskKind, MetricName, TsvLayout, DevSplit, GlueTaskName, TaskRecord } from './tasks.ts';
export { readExamples, normaliseLabel, datasetFormat, DATASET_EXTENSIONS, DATASET_FORMATS } from './readers.ts';
export type { Example, ReadOptions, DatasetFormat } from './readers.ts';
export {
  encodeExample,
  encodePrompt,
  answerTokenIds,
  labelWordIds,
  labelScoring,
  logProbOf,
  predictionFromScores,
  taskTokenizerProblems,
  truncatePrompt,
  evalPrompt,
  makeSftBatch,
} from './prompt.ts';
export type { TokenizerLike, EncodedExample, SftBatch, SftBatchOptions, LabelScoring } from './prompt.ts';
export { CorpusStream, expandCorpusPaths, sampleCorpusSets, CORPUS_EXTENSIONS } from './corpus.ts';
export type { CorpusCursor, CorpusOptions } from './corpus.ts';
export { accuracy, f1, matthews, pearson, spearman, averageRanks, computeMetrics } from './metrics.ts';
export { checkTaskConfig, devFiles, devSuffix } from './task-check.ts';
export type { TaskDataConfig } from './task-check.ts';
