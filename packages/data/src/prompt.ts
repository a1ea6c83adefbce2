/**
 * Examples -> token ids for supervised fine-tuning with the loss on the answer tokens only (PAPER.md section 6).
 *
 * A sequence is `BOS? prompt answer EOS?`. The answer token ids of each label word are fixed per (tokenizer,
 * task): they are what the tokenizer makes of the word after the template's closing text and one space
 * (`...Answer:` + ` positive`), minus the closing text's own tokens. The prompt is always `encode(prompt)`
 * alone. So training targets, greedy decoding and label scoring all see the same prompt ids followed by the
 * same answer ids, whatever the tokenizer does at the prompt/answer boundary.
 */
import { ArgumentError, BitDistillError } from '@bitdistill/core';
import { answerIndex, predictionValue, readAnswer, renderPrompt } from './tasks.ts';
import type { TaskSpec } from './tasks.ts';
import type { Example } from './readers.ts';

/** What this module needs from a tokenizer (the data package's Tokenizer satisfies it). */
export interface TokenizerLike {
  encode(text: string, opts?: { addBos?: boolean }): number[];
  decode(ids: number[]): string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
}

export interface EncodedExample {
  /** BOS (if the tokenizer has one) + the rendered prompt. */
  promptIds: number[];
  /** The label word's tokens + EOS (if the tokenizer has one). */
  answerIds: number[];
}

const answerCache = new WeakMap<TokenizerLike, WeakMap<TaskSpec, number[][]>>();

/** The template's text after its last placeholder: the fixed text the answer follows. */
function templateTail(task: TaskSpec): string {
  let end = 0;
  for (const m of task.template.matchAll(/\{[A-Za-z_][A-Za-z0-9_]*\}/g)) end = m.index + m[0].length;
  const tail = task.template.slice(end);
  // A template ending in a placeholder has no fixed tail; a period stands in for the end of the field text.
  return tail.length > 0 ? tail : '.';
}

/** For each label word (in labelWords order): the answer token ids, EOS included when the tokenizer has one. */
export function answerTokenIds(tokenizer: TokenizerLike, task: TaskSpec): number[][] {
  let perTask = answerCache.get(tokenizer);
  if (perTask === undefined) {
    perTask = new WeakMap();
    answerCache.set(tokenizer, perTask);
  }
  const cached = perTask.get(task);
  if (cached !== undefined) return cached;

  const tail = templateTail(task);
  const base = tokenizer.encode(tail, { addBos: false });
  const answers = task.labelWords.map((word) => {
    const joint = tokenizer.encode(`${tail} ${word}`, { addBos: false });
    const isPrefix = joint.length > base.length && base.every((id, i) => joint[i] === id);
    if (!isPrefix) {
      throw new BitDistillError(
        'E_DATA',
        `task ${task.name}: the tokenizer merges the end of the template with the label word '${word}' ` +
          `(${JSON.stringify(tail.slice(-12))} + ' ${word}'), so the answer has no tokens of its own`,
        { hint: 'end the template with punctuation such as ":" or change the label word (and bump templateVersion)' },
      );
    }
    const ids = joint.slice(base.length);
    if (tokenizer.eosId !== null) ids.push(tokenizer.eosId);
    return ids;
  });
  perTask.set(task, answers);
  return answers;
}

/**
 * The first answer token of each label word, for label scoring (argmax over these logits after the prompt).
 * Errors if two label words start with the same token, since scoring could not tell them apart.
 */
export function labelWordIds(tokenizer: TokenizerLike, task: TaskSpec): number[] {
  const answers = answerTokenIds(tokenizer, task);
  const first = answers.map((ids) => ids[0] as number);
  for (let i = 0; i < first.length; i++) {
    const j = first.indexOf(first[i] as number);
    if (j !== i) {
      throw new BitDistillError(
        'E_DATA',
        `task ${task.name}: label words '${task.labelWords[j]}' and '${task.labelWords[i]}' start with the same ` +
          `token ${first[i]} (${JSON.stringify(tokenizer.decode([first[i] as number]))})`,
        { hint: 'label scoring needs a distinct first token per label: pick other label words and bump templateVersion' },
      );
    }
  }
  return first;
}

/**
 * How label scoring reads a model's output for a task (TASKS.md "Label scoring"):
 *   first-token  every label word's first answer token differs: the logits at the prompt's last position
 *                decide (one forward of the prompt). Exactly the argmax of each word's first-token probability.
 *   sequence     some label words share a first token (SentencePiece splits " 3" into "▁" + "3"): each word is
 *                scored by the log-probability of its whole answer (its tokens + EOS) after the prompt, one
 *                forward of prompt + answer per word. Works with any tokenizer whose answers differ at all.
 */
export interface LabelScoring {
  readonly mode: 'first-token' | 'sequence';
  /** Per label word: its answer ids (EOS included when the tokenizer has one). */
  readonly answers: readonly (readonly number[])[];
  /** Per label word: its first answer id (first-token mode). */
  readonly firstIds: readonly number[];
}

export function labelScoring(tokenizer: TokenizerLike, task: TaskSpec): LabelScoring {
  const answers = answerTokenIds(tokenizer, task);
  const firstIds = answers.map((a) => a[0] as number);
  const keys = answers.map((a) => a.join(','));
  for (let i = 0; i < keys.length; i++) {
    const j = keys.indexOf(keys[i] as string);
    if (j !== i) {
      throw new BitDistillError(
        'E_DATA',
        `task ${task.name}: label words '${task.labelWords[j]}' and '${task.labelWords[i]}' have the same tokens after the template`,
        {
          hint: 'no evaluation can tell them apart: pick other label words and bump templateVersion',
        },
      );
    }
  }
  const distinct = new Set(firstIds).size === firstIds.length;
  return { mode: distinct ? 'first-token' : 'sequence', answers, firstIds };
}

/** log softmax(row)[id] of one logits row. */
export function logProbOf(row: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let v = 0; v < row.length; v++) if ((row[v] as number) > max) max = row[v] as number;
  let sum = 0;
  for (let v = 0; v < row.length; v++) sum += Math.exp((row[v] as number) - max);
  return (row[id] as number) - max - Math.log(sum);
}

/**
 * The metric value from one score per label word (logits in first-token mode, answer log-probabilities in
 * sequence mode): the argmax class, or for regression the expected bucket value under softmax(scores), a finer
 * number than the argmax bucket.
 */
export function predictionFromScores(task: TaskSpec, scores: readonly number[]): number {
  let best = 0;
  for (let k = 1; k < scores.length; k++) if ((scores[k] as number) > (scores[best] as number)) best = k;
  if (task.kind !== 'regression') return best;
  const top = scores[best] as number;
  let z = 0;
  let mean = 0;
  scores.forEach((s, k) => {
    const w = Math.exp(s - top);
    z += w;
    mean += w * predictionValue(task, k);
  });
  return mean / z;
}

/**
 * Can this tokenizer train and evaluate this task? The problems, each a sentence (empty when it can): the
 * template's end merges into a label word, two label words tokenize alike, or (generate mode) an answer does not
 * decode back to its own word or number, so greedy decoding could never be read as right.
 */
export function taskTokenizerProblems(tokenizer: TokenizerLike, task: TaskSpec, mode: 'label' | 'generate'): string[] {
  let scoring: LabelScoring;
  try {
    scoring = labelScoring(tokenizer, task);
  } catch (e) {
    return [e instanceof BitDistillError && e.hint !== undefined ? `${e.message} (${e.hint})` : (e as Error).message];
  }
  const problems: string[] = [];
  if (mode === 'generate') {
    scoring.answers.forEach((ids, k) => {
      const word = tokenizer.eosId !== null && ids[ids.length - 1] === tokenizer.eosId ? ids.slice(0, -1) : ids;
      const text = tokenizer.decode([...word]);
      const want = predictionValue(task, k);
      if (readAnswer(task, text) !== want) {
        problems.push(
          `label word '${task.labelWords[k]}' decodes as ${JSON.stringify(text)}, which generate mode does not read back as '${task.labelWords[k]}' (a lowercasing or lossy tokenizer?)`,
        );
      }
    });
  }
  return problems;
}

export function encodePrompt(tokenizer: TokenizerLike, task: TaskSpec, fields: Readonly<Record<string, string>>): number[] {
  return tokenizer.encode(renderPrompt(task, fields), { addBos: tokenizer.bosId !== null });
}

export function encodeExample(tokenizer: TokenizerLike, task: TaskSpec, example: Example): EncodedExample {
  const answers = answerTokenIds(tokenizer, task);
  const answer = answers[answerIndex(task, example.label)] as number[];
  return { promptIds: encodePrompt(tokenizer, task, example.fields), answerIds: answer.slice() };
}

/**
 * Cuts a prompt to at most `maxLen` tokens from the left (the end of the prompt, next to the answer, is what
 * the answer depends on most), keeping a leading BOS. Used by batching and by evaluation alike.
 */
export function truncatePrompt(promptIds: readonly number[], maxLen: number, bosId: number | null = null): number[] {
  if (promptIds.length <= maxLen) return promptIds.slice();
  const keepBos = bosId !== null && promptIds[0] === bosId;
  if (maxLen < (keepBos ? 2 : 1)) throw new ArgumentError(`cannot cut a prompt to ${maxLen} tokens`);
  return keepBos ? [bosId, ...promptIds.slice(promptIds.length - (maxLen - 1))] : promptIds.slice(promptIds.length - maxLen);
}

/**
 * The prompt evaluation feeds the model for one example: encodeExample's prompt cut to `maxLen` tokens from the
 * left as batching cuts it (truncatePrompt, a leading BOS kept), so a model is evaluated on prompts shaped as
 * it was trained on. The one truncation of every evaluator (kernels runtime, tfjs label scoring, generation).
 */
export function evalPrompt(tokenizer: TokenizerLike, task: TaskSpec, example: Example, maxLen: number): number[] {
  return truncatePrompt(encodeExample(tokenizer, task, example).promptIds, maxLen, tokenizer.bosId);
}

export interface SftBatch {
  /** [B, T] input token ids, right-padded with padId. */
  inputIds: Int32Array;
  /** [B, T] next-token targets: labels[b, t] = token at t+1 (padId where there is none). */
  labels: Int32Array;
  /** [B, T] 1 where labels[b, t] is an answer token (label word or EOS): the positions the SFT loss uses. */
  answerMask: Float32Array;
  /** [B, T] 1 on real (non-pad) input positions. */
  attentionMask: Float32Array;
  B: number;
  T: number;
}

export interface SftBatchOptions {
  /** A leading BOS survives truncation. */
  bosId?: number | null;
  /** `longest` (default): T = the longest sequence in the batch; `max`: T = maxLen (fixed shapes). */
  padTo?: 'longest' | 'max';
}

/**
 * Packs encoded examples into one right-padded batch. The sequence `prompt + answer` of length L gives L - 1
 * input positions (the last token is only a target). When L - 1 > maxLen the answer is kept whole and the prompt
 * is cut from the left (truncatePrompt), keeping a leading BOS.
 */
export function makeSftBatch(encoded: readonly EncodedExample[], maxLen: number, padId: number, options: SftBatchOptions = {}): SftBatch {
  if (encoded.length === 0) throw new ArgumentError('makeSftBatch: no examples');
  if (!Number.isInteger(maxLen) || maxLen < 1) {
    throw new ArgumentError(`makeSftBatch: maxLen must be a positive integer, got ${maxLen}`);
  }
  const rows = encoded.map((ex, b) => {
    if (ex.answerIds.length === 0) throw new ArgumentError(`makeSftBatch: example ${b} has no answer tokens`);
    const promptRoom = maxLen + 1 - ex.answerIds.length;
    if (promptRoom < 1) {
      throw new ArgumentError(`makeSftBatch: maxLen ${maxLen} leaves no room for a prompt before ${ex.answerIds.length} answer tokens`);
    }
    const prompt = truncatePrompt(ex.promptIds, promptRoom, options.bosId ?? null);
    if (prompt.length === 0) throw new ArgumentError(`makeSftBatch: example ${b} has an empty prompt`);
    return { seq: [...prompt, ...ex.answerIds], promptLen: prompt.length };
  });
  const B = rows.length;
  let longest = 0;
  for (const r of rows) longest = Math.max(longest, r.seq.length - 1);
  const T = options.padTo === 'max' ? maxLen : longest;
  const inputIds = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(padId);
  const answerMask = new Float32Array(B * T);
  const attentionMask = new Float32Array(B * T);
  rows.forEach(({ seq, promptLen }, b) => {
    for (let t = 0; t < seq.length - 1; t++) {
      const i = b * T + t;
      inputIds[i] = seq[t] as number;
      labels[i] = seq[t + 1] as number;
      attentionMask[i] = 1;
      // position t predicts token t+1: an answer token when t+1 >= promptLen
      if (t >= promptLen - 1) answerMask[i] = 1;
    }
  });
  return { inputIds, labels, answerMask, attentionMask, B, T };
}
