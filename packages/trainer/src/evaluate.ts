/**
 * Dev-set evaluation with the tfjs model (the training-time view; the packed-ternary runtime has its own
 * evaluator in packages/eval). `label` mode scores only the task's label words at the first answer token.
 */
import * as tf from '@tensorflow/tfjs';
import { answerTokenIds, computeMetrics, encodeExample, labelWordIds, matchLabelWord, predictionValue, type Example, type TaskSpec, type Tokenizer } from '@bitdistill/data';
import { generateGreedy } from '@bitdistill/model';
import type { Decoder } from '@bitdistill/model';
import type { EvalResult } from './loop.ts';

export interface LabelScoringOptions {
  batchSize: number;
  maxLen: number;
}

/** Predicted label index per example: argmax over the label words' first tokens after the prompt. */
export async function predictLabels(model: Decoder, tokenizer: Tokenizer, task: TaskSpec, examples: readonly Example[], o: LabelScoringOptions): Promise<number[]> {
  const wordIds = labelWordIds(tokenizer, task);
  const preds: number[] = [];
  for (let s = 0; s < examples.length; s += o.batchSize) {
    const chunk = examples.slice(s, s + o.batchSize);
    const prompts = chunk.map((ex) => {
      const p = encodeExample(tokenizer, task, ex).promptIds;
      return p.length > o.maxLen ? p.slice(p.length - o.maxLen) : p;
    });
    const T = Math.max(...prompts.map((p) => p.length));
    const pad = tokenizer.padId ?? tokenizer.eosId ?? 0;
    const ids = new Int32Array(chunk.length * T).fill(pad);
    prompts.forEach((p, b) => ids.set(p, b * T));
    const scores = tf.tidy(() => {
      const { logits } = model.forward(tf.tensor2d(ids, [chunk.length, T], 'int32'));
      const V = model.config.vocabSize;
      const flat = tf.reshape(logits, [chunk.length * T, V]);
      const rows = tf.tensor1d(prompts.map((p, b) => b * T + p.length - 1), 'int32');
      const last = tf.gather(flat, rows); // [b, V]
      return tf.gather(last, tf.tensor1d(wordIds, 'int32'), 1); // [b, labels]
    });
    const sc = (await scores.data()) as Float32Array;
    scores.dispose();
    for (let b = 0; b < chunk.length; b++) {
      let best = 0;
      for (let k = 1; k < wordIds.length; k++) if ((sc[b * wordIds.length + k] as number) > (sc[b * wordIds.length + best] as number)) best = k;
      preds.push(best);
    }
  }
  return preds;
}

/**
 * The paper's protocol (PAPER.md section 6): greedy decoding after the prompt, the text read back as a label
 * word by exact match; anything else counts as wrong (-1). Slower than label scoring: one forward per token.
 */
export async function generateLabels(model: Decoder, tokenizer: Tokenizer, task: TaskSpec, examples: readonly Example[], o: LabelScoringOptions): Promise<number[]> {
  const maxNew = Math.max(...answerTokenIds(tokenizer, task).map((a) => a.length)) + 1;
  const preds: number[] = [];
  for (const ex of examples) {
    const p = encodeExample(tokenizer, task, ex).promptIds;
    const prompt = p.length > o.maxLen ? p.slice(p.length - o.maxLen) : p;
    const ids = await generateGreedy(model, prompt, { maxNewTokens: maxNew, eosId: tokenizer.eosId });
    preds.push(matchLabelWord(task, tokenizer.decode(ids)));
  }
  return preds;
}

export type EvalMode = 'label' | 'generate';

export async function evaluateLabelScoring(
  model: Decoder,
  tokenizer: Tokenizer,
  task: TaskSpec,
  examples: readonly Example[],
  o: LabelScoringOptions & { mode?: EvalMode },
): Promise<EvalResult> {
  const words = o.mode === 'generate' ? await generateLabels(model, tokenizer, task, examples, o) : await predictLabels(model, tokenizer, task, examples, o);
  const preds = words.map((w) => (w < 0 ? -1 : predictionValue(task, w)));
  const golds = examples.map((e) => e.label);
  const metrics = computeMetrics(task, preds, golds);
  const name = task.metrics[0] ?? 'accuracy';
  return { metric: name, value: metrics[name] ?? 0, examples: examples.length };
}
