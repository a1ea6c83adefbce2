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
} from './tasks.ts';
export type { TaskSpec, TaskKind, MetricName, TsvLayout, DevSplit, GlueTaskName } from './tasks.ts';
export { readExamples, normaliseLabel, DATASET_EXTENSIONS } from './readers.ts';
export type { Example, ReadOptions } from './readers.ts';
export {
  encodeExample,
  encodePrompt,
  answerTokenIds,
  labelWordIds,
  truncatePrompt,
  makeSftBatch,
} from './prompt.ts';
export type { TokenizerLike, EncodedExample, SftBatch, SftBatchOptions } from './prompt.ts';
export { CorpusStream, expandCorpusPaths, CORPUS_EXTENSIONS } from './corpus.ts';
export type { CorpusCursor, CorpusOptions } from './corpus.ts';
export { accuracy, f1, matthews, pearson, spearman, averageRanks, computeMetrics } from './metrics.ts';
