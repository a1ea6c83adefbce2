/**
 * tfjs has no stop_gradient: this is the identity whose gradient is zero, so the teacher side of a
 * distillation loss never sends gradient back even when its tensors are among the ones differentiated.
 */
import * as tf from '@tensorflow/tfjs';

const identityWithoutGradient = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = inputs[0] as tf.Tensor;
  return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] };
});

export function stopGradient<T extends tf.Tensor>(x: T): T {
  return identityWithoutGradient(x) as T;
}
