/** Greedy decoding and teacher-forced likelihood with the tfjs decoder (no KV cache: simple, for small models). */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError } from '@bitdistill/core';
import type { Decoder } from './decoder.ts';

export interface GenerateOptions {
  maxNewTokens: number;
  /** Stop at this token (not included in the output). */
  eosId?: number | null;
  /** Called with each new token id as it is produced. */
  onToken?: (id: number) => void;
}

/** Returns the new token ids (prompt excluded). The context is cut to max_position_embeddings. */
export async function generateGreedy(model: Decoder, promptIds: readonly number[], options: GenerateOptions): Promise<number[]> {
  if (promptIds.length === 0) throw new ArgumentError('generateGreedy: the prompt encodes to no tokens');
  const maxCtx = model.config.maxPositionEmbeddings;
  const ids = [...promptIds];
  const out: number[] = [];
  for (let i = 0; i < options.maxNewTokens; i++) {
    const ctx = ids.slice(-maxCtx);
    const next = tf.tidy(() => {
      const { logits } = model.forward(tf.tensor2d(ctx, [1, ctx.length], 'int32'));
      const last = tf.slice(logits, [0, ctx.length - 1, 0], [1, 1, model.config.vocabSize]);
      return tf.argMax(tf.reshape(last, [-1]));
    });
    const id = (await next.data())[0] as number;
    next.dispose();
    if (options.eosId !== undefined && options.eosId !== null && id === options.eosId) break;
    ids.push(id);
    out.push(id);
    options.onToken?.(id);
  }
  return out;
}

/** Per-position log-probability of the next token (length ids.length - 1) for one sequence. */
export async function sequenceNll(model: Decoder, ids: readonly number[]): Promise<{ logprobs: Float32Array; meanNll: number }> {
  if (ids.length < 2) throw new ArgumentError('sequenceNll: need at least two tokens');
  const T = ids.length - 1;
  const lp = tf.tidy(() => {
    const { logits } = model.forward(tf.tensor2d(ids.slice(0, T), [1, T], 'int32'));
    const V = model.config.vocabSize;
    const logp = tf.reshape(tf.logSoftmax(tf.reshape(logits, [T, V])), [T * V]);
    return tf.gather(
      logp,
      tf.tensor1d(
        ids.slice(1).map((id, t) => t * V + id),
        'int32',
      ),
    );
  });
  const logprobs = (await lp.data()) as Float32Array;
  lp.dispose();
  let s = 0;
  for (const v of logprobs) s -= v;
  return { logprobs, meanNll: s / T };
}

/**
 * Mean next-token NLL (nats per token) over packed LM sequences of equal length L + 1 (inputs the first L tokens,
 * targets the last L, as the corpus packs them). Batches keep the [B, L, V] logits under 16M values.
 */
export function lmNll(model: Decoder, seqs: readonly Int32Array[]): { nll: number; tokens: number } {
  const first = seqs[0];
  if (first === undefined || first.length < 2) throw new ArgumentError('lmNll: need at least one sequence of two or more tokens');
  const L = first.length - 1;
  if (seqs.some((s) => s.length !== L + 1)) throw new ArgumentError(`lmNll: every sequence must hold ${L + 1} tokens, as the first does`);
  const V = model.config.vocabSize;
  const batch = Math.max(1, Math.min(16, Math.floor(2 ** 24 / (L * V))));
  let sum = 0;
  for (let b0 = 0; b0 < seqs.length; b0 += batch) {
    const part = seqs.slice(b0, b0 + batch);
    const B = part.length;
    const inputs = new Int32Array(B * L);
    const flat = new Int32Array(B * L); // row r's target as an index into the flattened [B * L, V] log-probabilities
    part.forEach((s, b) => {
      inputs.set(s.subarray(0, L), b * L);
      for (let t = 0; t < L; t++) flat[b * L + t] = (b * L + t) * V + (s[t + 1] as number);
    });
    const lp = tf.tidy(() => {
      const { logits } = model.forward(tf.tensor2d(inputs, [B, L], 'int32'));
      return tf.sum(tf.gather(tf.reshape(tf.logSoftmax(tf.reshape(logits, [B * L, V])), [B * L * V]), tf.tensor1d(flat, 'int32')));
    });
    sum -= (lp.dataSync() as Float32Array)[0] as number;
    lp.dispose();
  }
  return { nll: sum / (seqs.length * L), tokens: seqs.length * L };
}
