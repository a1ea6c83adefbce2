export { runEval, kernelsPredictor, taskForModel, defaultDataFile, reportMarkdown, readModelBlock } from './evaluate.ts';
export type { Predictor, EvalReport, EvalMode } from './evaluate.ts';
