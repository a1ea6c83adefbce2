/**
 * The kernels runtime as an evaluation Predictor (@bitdistill/eval): `label` mode scores the task's label words
 * after the prompt (data's labelScoring: the first answer token when the words differ there, else each word's
 * whole answer), `generate` decodes greedily and reads the text back (PAPER.md section 6).
 */
import { answerTokenIds, evalPrompt, labelScoring, logProbOf, predictionFromScores, readAnswer } from '@bitdistill/data';
import type { Predictor } from '@bitdistill/eval';
import type { TernaryRuntime } from './runtime.ts';

/** The packed-ternary runtime as a Predictor (one prompt at a time, KV-cached generation). */
export function kernelsPredictor(rt: TernaryRuntime): Predictor {
  return {
    runtime: rt.info.embeddings === 'fp32' ? 'kernels' : `kernels (${rt.info.embeddings} embeddings)`,
    tokenizer: rt.tokenizer,
    predict: async (task, examples, mode, maxLen) => {
      const tok = rt.tokenizer;
      const V = rt.config.vocabSize;
      const scoring = mode === 'label' ? labelScoring(tok, task) : null;
      let maxNew = 0;
      if (mode === 'generate') for (const a of answerTokenIds(tok, task)) maxNew = Math.max(maxNew, a.length + 1);
      // Prompt and answer must fit the model's positions (the KV cache holds max_position_embeddings): a longer
      // prompt is cut from the left like any over-long one, not refused.
      let answerLen = maxNew;
      if (scoring !== null && scoring.mode !== 'first-token') for (const a of scoring.answers) answerLen = Math.max(answerLen, a.length - 1);
      const promptLen = Math.max(1, Math.min(maxLen, rt.config.maxPositionEmbeddings - answerLen));
      const preds: number[] = [];
      let tokens = 0;
      for (const ex of examples) {
        const prompt = evalPrompt(tok, task, ex, promptLen);
        tokens += prompt.length;
        if (scoring === null) {
          const g = rt.generate(prompt, maxNew, tok.eosId);
          tokens += g.ids.length;
          preds.push(readAnswer(task, tok.decode(g.ids)));
        } else if (scoring.mode === 'first-token') {
          const logits = rt.forward(prompt);
          preds.push(
            predictionFromScores(
              task,
              scoring.firstIds.map((id) => logits[id] as number),
            ),
          );
        } else {
          // Each label word's whole answer after the prompt: position P-1+t predicts answer token t.
          const scores = scoring.answers.map((answer) => {
            const logits = rt.forward([...prompt, ...answer.slice(0, -1)], { allPositions: true });
            tokens += answer.length - 1;
            let lp = 0;
            answer.forEach((id, t) => (lp += logProbOf(logits.subarray((prompt.length - 1 + t) * V, (prompt.length + t) * V), id)));
            return lp;
          });
          preds.push(predictionFromScores(task, scores));
        }
        if (preds.length % 64 === 0) await new Promise((r) => setImmediate(r));
      }
      return { preds, tokens };
    },
  };
}
