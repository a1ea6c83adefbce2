/**
 * Know before you load, for a GPU: the largest single tensors a stage forms, checked against the WebGPU
 * adapter's per-buffer limits before `bitdistill train` reads a weight (issue 14). A storage binding over
 * maxStorageBufferBindingSize is refused by the device; on a software adapter (lavapipe: 128 MiB) a Qwen3-0.6B
 * embedding ([151,936, 1,024] fp32, 622 MB) is over it, on desktop GPUs (typically 2-4 GiB) it is not.
 *
 * On the WebGPU backend every op runs op by op (no fused kernels), so the tensors listed are those of the
 * op-by-op forms: the [B*H, T, T] attention scores, [N, I] MLP activations, the loss's [r, V] logit chunks, and
 * the dev evaluation's logits at the answer positions. From the model's config.json alone, like memory.ts.
 */
import { DeviceLimitError } from '@bitdistill/core';
import { ANSWER_ROWS_PER_EXAMPLE, lossChunkRows, readModelShape, stageOptim, type ModelShape } from './memory.ts';
import type { StageName, TrainConfig } from './train-config.ts';

/** The per-buffer limits of a WebGPU device, in bytes (the names are WebGPU's). */
export interface DeviceBufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

export interface StageTensor {
  stage: StageName;
  /** What it is, e.g. 'model.embed_tokens.weight (and its gradient, AdamW m and v)'. */
  name: string;
  shape: number[];
  bytes: number;
}

/** The largest tensors of a stage, one per kind, largest first (fp32: 4 bytes a value). */
export function stageTensors(config: TrainConfig, stage: StageName, shape: ModelShape): StageTensor[] {
  const o = stageOptim(config, stage);
  const lm = stage === 'pretrain' || stage === 'continual-pretrain';
  const T = lm ? config.corpus.seqLen : config.model.maxSeqLen;
  const B = o.batchSize;
  const N = B * T;
  const C = shape.hiddenSize;
  const V = shape.vocabSize;
  const d = config.distill;
  const logitAll = lm || (stage === 'distill' && d.logit && d.logitPositions === 'all');
  const lossRows = Math.min(lossChunkRows(o, V), logitAll ? N : Math.min(N, B * ANSWER_ROWS_PER_EXAMPLE));
  const evalB = Math.max(8, B);
  const t = (name: string, dims: number[]): StageTensor => ({ stage, name, shape: dims, bytes: 4 * dims.reduce((a, b) => a * b, 1) });
  const out = [
    t('model.embed_tokens.weight (and its gradient, AdamW m and v)', [V, C]),
    t('the MLP activations (gate, up)', [N, shape.intermediateSize]),
    t('the attention scores', [B * shape.numHeads, T, T]),
    t('a chunk of the loss logits (optim.lossChunkRows rows)', [lossRows, V]),
  ];
  if (!shape.tieWordEmbeddings) out.push(t('lm_head.weight', [V, C]));
  if (!lm) out.push(t(`the dev evaluation's logits (batch ${evalB})`, [evalB * ANSWER_ROWS_PER_EXAMPLE, V]));
  return out.sort((a, b) => b.bytes - a.bytes);
}

const MiB = 2 ** 20;
const fmtMiB = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

/** The knob that shrinks a tensor of this kind, for the refusal's hint. */
function knobFor(t: StageTensor): string {
  if (t.name.includes('weight')) return 'a weight cannot be split here: use a GPU with a larger limit, or --backend native';
  if (t.name.includes('loss logits')) return 'lower optim.lossChunkRows';
  if (t.name.includes('evaluation')) return 'lower optim.batchSize (the dev evaluation uses max(8, batchSize)) or model.maxSeqLen';
  return 'lower optim.batchSize (optim.gradAccum keeps the effective batch) or the sequence length';
}

/** The smaller of the two per-buffer limits, and its name. */
function bufferLimit(limits: DeviceBufferLimits): { name: string; bytes: number } {
  return limits.maxStorageBufferBindingSize <= limits.maxBufferSize
    ? { name: 'maxStorageBufferBindingSize', bytes: limits.maxStorageBufferBindingSize }
    : { name: 'maxBufferSize', bytes: limits.maxBufferSize };
}

/**
 * For `eval --runtime tfjs` and other forward-only uses: throws DeviceLimitError when the model at `path` has a
 * weight (the [V, C] embedding or lm_head) that one buffer binding cannot hold. Passes when the shape cannot be
 * read (the loader reports that).
 */
export function checkWeightsOnDevice(path: string, limits: DeviceBufferLimits, adapter: string): void {
  const s = readModelShape(path);
  if (s.shape === null) return;
  const { name, bytes: limit } = bufferLimit(limits);
  const shape = [s.shape.vocabSize, s.shape.hiddenSize];
  const bytes = 4 * s.shape.vocabSize * s.shape.hiddenSize;
  if (bytes <= limit) return;
  throw new DeviceLimitError(
    name,
    limit,
    bytes,
    `${path}: the embedding [${shape.join(', ')}] is ${fmtMiB(bytes)}, more than the ${fmtMiB(limit)} one buffer may hold on this WebGPU adapter (${name}; ${adapter})`,
    { hint: 'a weight cannot be split here: use a GPU with a larger limit, or --backend native' },
  );
}

/**
 * Throws DeviceLimitError for the first tensor (largest first, over the stages about to run) that one buffer
 * binding of the device cannot hold. Passes when the model's shape cannot be read (the run then fails where
 * the loader does).
 */
export function checkDeviceLimits(config: TrainConfig, stages: readonly StageName[], limits: DeviceBufferLimits, adapter: string): void {
  const s = readModelShape(config.model.path);
  if (s.shape === null) return;
  const { name, bytes: limit } = bufferLimit(limits);
  for (const stage of stages) {
    const over = stageTensors(config, stage, s.shape).find((t) => t.bytes > limit);
    if (over === undefined) continue;
    throw new DeviceLimitError(
      name,
      limit,
      over.bytes,
      `stage '${stage}': ${over.name} [${over.shape.join(', ')}] is ${fmtMiB(over.bytes)}, more than the ${fmtMiB(limit)} one buffer may hold on this WebGPU adapter (${name}; ${adapter})`,
      { hint: knobFor(over) },
    );
  }
}
