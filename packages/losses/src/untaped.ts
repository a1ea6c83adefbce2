/**
 * Run a computation without recording it on the gradient tape: for the frozen teacher of distillation, whose
 * activations would otherwise stay alive (saved for a backward pass that never reaches them) until the
 * student's backward pass ends.
 *
 * How: tfjs does not record the ops run inside the forward function of a tf.customGrad (the engine raises its
 * kernel depth while a kernel runs, and records only at depth 0), and disposes their intermediates when it
 * returns. So `fn` runs there; its outputs are kept past that scope and handed back as clones tracked by the
 * caller's scope (tf.tidy disposes them as any other tensor). Only the outputs outlive the call.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * `fn()` without gradient tape: the returned tensors carry no gradient (like stopGradient) and nothing `fn`
 * computed on the way is saved for backward. Works the same with the tape off (then it is a plain tidy).
 */
export function untaped<T extends tf.Tensor[]>(fn: () => T): T {
  let outs: tf.Tensor[] = [];
  const run = tf.customGrad((..._noInputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    outs = fn();
    for (const t of outs) tf.keep(t);
    return { value: tf.scalar(0), gradFunc: () => [] };
  });
  run().dispose();
  // Clones belong to the caller's scope; the kept originals are released (the data lives on in the clones).
  const result = outs.map((t) => tf.clone(t));
  for (const t of outs) t.dispose();
  return result as T;
}
