/**
 * L_LD of Stage 3 (PAPER.md §5): KL(teacher || student) of the temperature-softened distributions over the
 * whole vocabulary, at every position the mask keeps (the official code: every non-pad position).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, shapeToString } from '@bitdistill/core';
import { checkBT, checkRank, checkTemperature } from './checks.ts';
import { stopGradient } from './stop-gradient.ts';

const FN = 'logitKd';

/**
 * sum over kept positions of KL(softmax(teacher / temperature) || softmax(student / temperature)), divided by
 * the number of kept positions (batchmean over valid tokens), times temperature^2 (the official code's
 * normalisation, which keeps the gradient scale independent of the temperature).
 *
 * - `teacherLogits`, `studentLogits` [B, T, V]; the teacher side gets no gradient.
 * - `mask` [B, T] float 0/1. No kept position gives 0 (divided by max(count, 1)).
 */
export function logitKd(teacherLogits: tf.Tensor, studentLogits: tf.Tensor, mask: tf.Tensor, temperature: number): tf.Scalar {
  checkRank(FN, 'teacherLogits', teacherLogits.shape, '[B, T, V]');
  checkRank(FN, 'studentLogits', studentLogits.shape, '[B, T, V]');
  if (teacherLogits.shape.some((d, i) => d !== studentLogits.shape[i])) {
    throw new ShapeError(
      `${FN}: teacherLogits ${shapeToString(teacherLogits.shape)} and studentLogits ${shapeToString(studentLogits.shape)} must have the same [B, T, V]`,
      { hint: 'teacher and student must see the same batch and share the vocabulary' },
    );
  }
  checkBT(FN, 'mask', mask.shape, 'studentLogits', studentLogits.shape);
  checkTemperature(FN, temperature);

  return tf.tidy(() => {
    const keep = tf.cast(mask, 'float32');
    const logPT = tf.logSoftmax(tf.div(stopGradient(teacherLogits), temperature)); // [B, T, V]
    const logPS = tf.logSoftmax(tf.div(studentLogits, temperature));
    const kl = tf.sum(tf.mul(tf.exp(logPT), tf.sub(logPT, logPS)), -1); // [B, T]
    const count = tf.maximum(tf.sum(keep), 1);
    return tf.mul(tf.div(tf.sum(tf.mul(kl, keep)), count), temperature * temperature) as tf.Scalar;
  });
}
