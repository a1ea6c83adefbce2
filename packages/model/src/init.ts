/** Random initialisation (std 0.02 normal weights, zero biases, unit norms), as HF's `_init_weights`. */
import * as tf from '@tensorflow/tfjs';
import { Rng, shapeSize } from '@bitdistill/core';
import { parseDecoderConfig } from '@bitdistill/arch';
import { Decoder } from './decoder.ts';
import { ownedVariable } from './ops.ts';

export function initDecoder(configJson: Record<string, unknown>, seed: number, std = 0.02): Decoder {
  const config = parseDecoderConfig(configJson, 'config');
  const rng = new Rng(seed);
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Decoder.expectedShapes(config)) {
    const n = shapeSize(shape);
    let data: Float32Array;
    if (name.endsWith('norm.weight')) data = new Float32Array(n).fill(1);
    else if (name.endsWith('.bias')) data = new Float32Array(n);
    else {
      // A plain loop: Float32Array.from with a map function took ~78 s for Qwen3-0.6B's 596M values.
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    }
    params.set(name, ownedVariable(tf.tensor(data, shape), true));
  }
  return new Decoder(config, params);
}
