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
