/**
 * L_CE of Stage 3 (PAPER.md §5): token cross-entropy on the answer tokens only, the prompt masked out.
 */
import * as tf from '@tensorflow/tfjs';
import { ArgumentError, shapeToString } from '@bitdistill/core';
import { checkBT, checkRank } from './checks.ts';

const FN = 'answerCrossEntropy';

/**
 * Mean over the positions where `answerMask` is 1 of -log softmax(logits)[b, t, labels[b, t]].
 *
 * - `logits` [B, T, V] float32.
 * - `labels` [B, T] int32: the next-token target of each logits position, already shifted by the caller.
 *   At masked positions any value is fine (e.g. -100 padding): it selects no logit. At answer positions it
 *   must lie in [0, V); this is checked on the host (labels and mask are small, the logits are not read).
 * - `answerMask` [B, T] float 0/1.
 *
 * A batch without a single answer position returns 0, not NaN: the sum is divided by max(count, 1).
 */
export function answerCrossEntropy(logits: tf.Tensor, labels: tf.Tensor, answerMask: tf.Tensor): tf.Scalar {
  checkRank(FN, 'logits', logits.shape, '[B, T, V]');
  checkBT(FN, 'labels', labels.shape, 'logits', logits.shape);
  checkBT(FN, 'answerMask', answerMask.shape, 'logits', logits.shape);
  if (labels.dtype !== 'int32') {
    throw new ArgumentError(`${FN}: labels must be int32, got ${labels.dtype}`, { hint: 'build them with tf.tensor2d(ids, [B, T], "int32")' });
  }
  const V = logits.shape[2] as number;
  const labelData = labels.dataSync();
  const maskData = answerMask.dataSync();
  checkLabelRange(labelData, maskData, V, logits.shape);
  // Flat index of each position's label logit: a gather reads N values instead of masking all N x V of them
  // (a one-hot target of a 30k vocabulary costs more than the loss itself).
  const N = labelData.length;
  const flat = new Int32Array(N);
  for (let n = 0; n < N; n++) flat[n] = n * V + ((maskData[n] as number) !== 0 ? (labelData[n] as number) : 0);

  return tf.tidy(() => {
    const mask = tf.reshape(tf.cast(answerMask, 'float32'), [N]);
    const logProbs = tf.logSoftmax(logits); // [B, T, V]
    const picked = tf.gather(tf.reshape(logProbs, [N * V]), tf.tensor1d(flat, 'int32')); // [N]
    const count = tf.maximum(tf.sum(mask), 1);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, mask))), count) as tf.Scalar;
  });
}

function checkLabelRange(labels: ArrayLike<number>, mask: ArrayLike<number>, V: number, logitsShape: readonly number[]): void {
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] as number;
    if ((mask[i] as number) !== 0 && (y < 0 || y >= V)) {
      const T = logitsShape[1] as number;
      throw new ArgumentError(
        `${FN}: labels[${Math.floor(i / T)}, ${i % T}] = ${y} is outside [0, V) = [0, ${V}) of logits ${shapeToString(logitsShape)} at an answer position`,
        { hint: 'the tokenizer and the model disagree on the vocabulary, or answerMask marks a padding position' },
      );
    }
  }
}
