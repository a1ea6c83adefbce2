export { runEval, taskForModel, modelTask, defaultDataFile, defaultDataFiles, reportMarkdown, readModelBlock } from './evaluate.ts';
export type { Predictor, EvalReport, EvalMode, TaskChoice, TemplateSource } from './evaluate.ts';
