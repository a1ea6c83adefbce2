/**
 * The tfjs model as an evaluation Predictor (@bitdistill/eval; the packed-ternary runtime's is in
 * @bitdistill/runtime), used by every stage's dev evaluation and by `eval --runtime tfjs`. `label` mode scores
 * the task's label words after the prompt (data's labelScoring: the first answer token when the words differ
 * there, else each word's whole answer), in batches; `generate` decodes greedily and reads the text back.
 */
import * as tf from '@tensorflow/tfjs';
import {
  answerTokenIds,
  evalPrompt,
  labelScoring,
  logProbOf,
  predictionFromScores,
  readAnswer,
  type Example,
  type TaskSpec,
  type Tokenizer,
} from '@bitdistill/data';
import { runEval, type EvalMode, type Predictor } from '@bitdistill/eval';
import { generateGreedy } from '@bitdistill/model';
import type { Decoder } from '@bitdistill/model';
import type { EvalResult } from './loop.ts';

export interface LabelScoringOptions {
  batchSize: number;
  maxLen: number;
}

/**
 * Rows of [B, T, V] logits for right-padded sequences: for each (sequence b, position t) in `at`, the logits
 * row at b * T + t, as one Float32Array [at.length, V]. Only those rows go through the vocabulary projection
 * (Decoder.forward logitRows): the full [B*T, V] logits of a 151,936-token vocabulary at 8 x 128 are 2.4 GB,
 * more than one WebGPU buffer may hold on most GPUs.
 */
async function logitRows(model: Decoder, seqs: readonly number[][], at: readonly [number, number][], pad: number): Promise<Float32Array> {
  let T = 0;
  for (const s of seqs) T = Math.max(T, s.length);
  const ids = new Int32Array(seqs.length * T).fill(pad);
  seqs.forEach((s, b) => ids.set(s, b * T));
  const rows = tf.tidy(() => {
    const flatRows = tf.tensor1d(
      at.map(([b, t]) => b * T + t),
      'int32',
    );
    const { logits } = model.forward(tf.tensor2d(ids, [seqs.length, T], 'int32'), { logitRows: flatRows });
    return tf.reshape(logits, [at.length, model.config.vocabSize]);
  });
  const out = (await rows.data()) as Float32Array;
  rows.dispose();
  return out;
}

/**
 * The metric value per example by label scoring: a class index, or for regression the expected bucket value.
 * First-token mode: one forward of the prompt. Sequence mode: one forward of prompt + answer per label word,
 * scored by the answer's summed log-probabilities.
 */
async function predictLabels(
  model: Decoder,
  tokenizer: Tokenizer,
  task: TaskSpec,
  examples: readonly Example[],
  o: LabelScoringOptions,
): Promise<{ preds: number[]; tokens: number }> {
  const scoring = labelScoring(tokenizer, task);
  const V = model.config.vocabSize;
  const pad = tokenizer.padId ?? tokenizer.eosId ?? 0;
  const preds: number[] = [];
  let tokens = 0;
  for (let s = 0; s < examples.length; s += o.batchSize) {
    const prompts = examples.slice(s, s + o.batchSize).map((ex) => evalPrompt(tokenizer, task, ex, o.maxLen));
    for (const p of prompts) tokens += p.length;
    const scores = prompts.map(() => new Array<number>(scoring.answers.length).fill(0));
    if (scoring.mode === 'first-token') {
      const rows = await logitRows(
        model,
        prompts,
        prompts.map((p, b) => [b, p.length - 1]),
        pad,
      );
      prompts.forEach((_, b) => scoring.firstIds.forEach((id, k) => ((scores[b] as number[])[k] = rows[b * V + id] as number)));
    } else {
      for (const [k, answer] of scoring.answers.entries()) {
        // prompt + answer minus its last token: position P-1+t predicts answer token t.
        const seqs = prompts.map((p) => [...p, ...answer.slice(0, -1)]);
        const at: [number, number][] = [];
        prompts.forEach((p, b) => answer.forEach((_, t) => at.push([b, p.length - 1 + t])));
        const rows = await logitRows(model, seqs, at, pad);
        prompts.forEach((_, b) => {
          let lp = 0;
          answer.forEach((id, t) => (lp += logProbOf(rows.subarray((b * answer.length + t) * V, (b * answer.length + t + 1) * V), id)));
          (scores[b] as number[])[k] = lp;
        });
      }
    }
    for (const sc of scores) preds.push(predictionFromScores(task, sc));
  }
  return { preds, tokens };
}

/**
 * The paper's protocol (PAPER.md section 6): greedy decoding after the prompt, the text read back (data's
 * readAnswer: a label word by exact match, -1 for none; regression: the first number, NaN for none).
 * Slower than label scoring: one forward per token.
 */
async function generateLabels(
  model: Decoder,
  tokenizer: Tokenizer,
  task: TaskSpec,
  examples: readonly Example[],
  o: LabelScoringOptions,
): Promise<{ preds: number[]; tokens: number }> {
  let maxNew = 0;
  for (const a of answerTokenIds(tokenizer, task)) maxNew = Math.max(maxNew, a.length + 1);
  const preds: number[] = [];
  let tokens = 0;
  for (const ex of examples) {
    const prompt = evalPrompt(tokenizer, task, ex, o.maxLen);
    tokens += prompt.length;
    const ids = await generateGreedy(model, prompt, { maxNewTokens: maxNew, eosId: tokenizer.eosId });
    preds.push(readAnswer(task, tokenizer.decode(ids)));
  }
  return { preds, tokens };
}

/** The tfjs model as a Predictor; label scoring runs `batchSize` prompts per forward. */
export function tfjsPredictor(model: Decoder, tokenizer: Tokenizer, o: { batchSize: number }): Predictor {
  return {
    runtime: 'tfjs',
    tokenizer,
    predict: async (task, examples, mode, maxLen) => {
      const lo = { batchSize: o.batchSize, maxLen };
      // Each counts the prompt tokens it builds (the report's tokens/s).
      return mode === 'generate' ? generateLabels(model, tokenizer, task, examples, lo) : predictLabels(model, tokenizer, task, examples, lo);
    },
  };
}

/**
 * Every metric of the task on each dev set (several: MNLI matched / mismatched, keys `accuracy_m`,
 * `accuracy_mm`); the headline is the first metric of the first set.
 */
export async function evaluateLabelScoring(
  model: Decoder,
  tokenizer: Tokenizer,
  task: TaskSpec,
  devSets: readonly (readonly Example[])[],
  o: LabelScoringOptions & { mode?: EvalMode },
): Promise<EvalResult> {
  const r = await runEval(tfjsPredictor(model, tokenizer, o), task, devSets, { mode: o.mode ?? 'label', maxLen: o.maxLen, split: 'dev', model: 'training' });
  return { metric: r.metric, value: r.value, examples: r.examples, metrics: r.metrics };
}
