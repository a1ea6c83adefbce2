/**
 * Know before you load: the estimated peak memory of each stage of a resolved TrainConfig, from the model's
 * config.json alone (no weights read, no tfjs), and the budget check `bitdistill train` runs before it loads
 * anything (issue 13, items 2-3).
 *
 * fp32 everywhere (4 bytes a value). Per stage, with G = trainable parameters (every parameter of the trained
 * model: the full-precision model in pretrain / teacher, the student with its SubLN gains otherwise):
 *
 *   weights      W   = the trained model's parameters
 *   grads        G   = one fp32 gradient per trainable value (tfjs materialises all of a step's gradients)
 *                      + G for the running sum while the next micro-batch's gradients form (gradAccum > 1)
 *   optimizer    2G  = AdamW's m and v (trainer/src/adamw.ts)
 *   update       the optimizer step's temporaries: AdamW updates one parameter at a time (on the native engine
 *                and cpu a fused loop writing one new parameter array; on wasm a tidy of ~14 parameter-sized
 *                tensors), and clipScale squares one gradient at a time: UPDATE_COPIES x the largest parameter.
 *   teacher      Wt  = the frozen teacher's parameters (distill with logit or attention KD only)
 *   activations  A   = what one micro-batch's forward + backward holds at the end of the backward pass:
 *                      the tfjs tape keeps every saved input/output of every op with a gradient (the fp32 ternary
 *                      codes of each student weight in bitMatmulInt among them), and the gradient of every
 *                      intermediate tensor stays in the backward pass's tidy until it ends. Per decoder layer,
 *                      in values (N = B*T rows, Q = heads*head_dim, K = kv_heads*head_dim, I = intermediate,
 *                      S = B*heads*T^2, Wlin = the layer's seven projection weights):
 *                        full precision  17.0 NC + 18.9 NQ + 18.3 NK + 11.1 NI + 7.3 S
 *                        ternary student 32.0 NC + 22.0 NQ + 18.3 NK + 14.1 NI + 7.3 S + 2.0 Wlin
 *                      (least-squares fits over 18 random shapes each, worst residual 3.0% / 1.8% of the
 *                      measured unique tensor bytes; native engine, Qwen3 q/k-norm, SubLN allnorm for the
 *                      student; scripts/memory/fit.ts). wasm has its own fitted table (TRAIN_*_WASM).
 *                      With optim.recompute only each block's input (and its gradient) is kept per layer, 2 NC,
 *                      plus one block's activations while it is recomputed.
 *                      (Decoder.recompute; measured within 9% on 6 shapes.)
 *                      Plus the vocabulary head and its loss, row-chunked (optim.lossChunkRows, losses'
 *                      fusedHeadLoss; null = 64 MiB blocks): 4 [r, V] blocks for CE, 6 with logit KD, r = min(chunk,
 *                      rows the loss reads), and 2 [V, C] (the head's dW accumulation, the tied embedding's gather
 *                      gradient); plus the attention-relation KD of one layer, batch-chunked: 8.3 b*R*T^2 +
 *                      2.0 B*T*(Q + 2K) (R relation heads, b = batch elements per 64 MiB chunk). All measured
 *                      (scripts/memory/profile-head.ts, profile-attn.ts).
 *                      The teacher's forward (distill, off the tape) is a full-precision forward; Decoder.forward
 *                      runs each block in a tidy, so two layers' intermediates at most (a block, and the captured
 *                      layer's, which lives until the forward returns): 6.9 NC + 10.8 NQ + 9.6 NK + 5.0 NI + 4.2 S
 *                      per layer (fitted when every layer's intermediates lived until the end).
 *   eval         the dev evaluation of task stages: the same forward-only figure at batch max(8, B) with logits
 *                at the answer positions only (ANSWER_ROWS_PER_EXAMPLE per prompt; trainer/src/evaluate.ts), while
 *                W, the moments and the teacher are alive.
 *   checkpoint   the files stream from the tensors' own storage (no copy on native / cpu); on wasm every read
 *                (`data()`) of the weights and both moments is a copy out of the heap, held while writing: 3G.
 *   slack        native engine: its buffer pool keeps freed kernel outputs up to BITDISTILL_POOL_MB (default an eighth
 *                of the memory, 1-4 GiB), and
 *                buffers it does not pool wait for the forced GC it runs every BITDISTILL_GC_MB (1 GiB) of them:
 *                min(GC step, G) in every phase (each update replaces every parameter's array) and min(pool
 *                cap, A) outside the step (the pool still holds the step's activations). wasm: the heap's
 *                allocator slack, WASM_HEAP_SLACK x the heap.
 *   overhead     Node + tfjs + the kernels addon + the data (measured: PROCESS_OVERHEAD_BYTES for a task
 *                stage, PROCESS_OVERHEAD_LM_BYTES with the corpus stream) plus the tokenizer
 *                (~TOKENIZER_BYTES_PER_TOKEN per vocabulary entry).
 *
 * Peak = overhead + max over the phases (native slack included as above)
 *   step   = W + 2G + G(+G accum) + Wt + A
 *   update = W + 2G + G(+G accum) + Wt + update
 *   eval   = W + 2G + Wt + forward(eval batch)
 *   ckpt   = W + 2G + Wt + checkpoint copies          (not on wasm: see below)
 * On wasm the heap never shrinks, so the checkpoint copies (JS side) come on top of the heap's peak:
 *   peak_wasm = overhead + WASM_HEAP_SLACK x max(step, update, eval) + checkpoint copies, and the heap part must
 *   stay under wasm32's 4 GiB (WASM_HEAP_LIMIT_BYTES).
 *
 * Calibration against real runs (peak RSS, VmHWM reset per stage): scripts/memory/calibrate.ts trains every
 * stage for 3 steps (checkpoint every 2, dev eval) on stories260K (B 16 x T 32), small-base (7.6M params, V 30,522,
 * 8 x 32) and a random Qwen3-shaped 42M model (V 151,936, 4 x 32): estimate / measured 0.85-1.26 on the native
 * engine and 0.88-1.24 on wasm over the 12 stage runs each (this 2-core machine, other work running). Larger
 * shapes, against step benchmarks measured by bench/train (step + update phases only): Qwen3-0.6B shape with 4
 * layers, teacher step at 8 x 128, 7.5 GiB estimated vs 6.05 GiB measured; all 28 layers with recompute 12.1 GiB
 * vs 11.57 GiB. test/memory-budget.test.ts keeps small-base within 30%; re-run calibrate.ts and fit.ts when
 * decoder.ts, the losses, the quantizers, adamw.ts or the backend change how many tensors live. Every number
 * above is a named constant below.
 */
import { existsSync, readFileSync, readSync, openSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { totalmem, freemem } from 'node:os';
import { parseDecoderConfig, type DecoderConfig, type SublnMode } from '@bitdistill/arch';
import { FormatError, MemoryBudgetError } from '@bitdistill/core';
import type { StageName, TrainConfig } from './train-config.ts';

/** Bytes of one fp32 value. */
const F32 = 4;
const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** optim.lossChunkRows: null = auto, [rows, V] blocks of this many bytes (losses' AUTO_CHUNK_BYTES). */
export const AUTO_CHUNK_BYTES = 64 * MiB;
/** Answer tokens per example that the task stages' answer-only CE reads (label word + EOS; generous). */
export const ANSWER_ROWS_PER_EXAMPLE = 4;

/** Per-layer activation coefficients, in fp32 values per unit of each shape product (see the header). */
export interface LayerCoefficients {
  NC: number;
  NQ: number;
  NK: number;
  NI: number;
  S: number;
  Wlin: number;
}
/**
 * Forward + backward of a full-precision decoder layer (teacher, pretrain), native engine with its fused ops
 * (fused causal attention: no [B, H, T, T] tensor is kept, hence the small S; fused SwiGLU). Fitted by
 * scripts/memory/fit.ts --backend native on 18 random shapes (worst residual 3.0%, 2026-12-04); with
 * BITDISTILL_FUSED=0 the op-by-op forms keep more (the earlier fit: NC 17.0, NQ 18.9, NK 18.3, NI 11.1, S 7.3).
 */
export const TRAIN_DENSE: LayerCoefficients = { NC: 16.6, NQ: 5.56, NK: 5.05, NI: 6.05, S: 0.24, Wlin: 0 };
/**
 * Forward + backward of a ternary student layer (bitLinear on the seven projections, SubLN allnorm), native
 * engine with the fused BitLinear (autograd keeps x and W, no quantized copies: Wlin 0), attention and SwiGLU;
 * same fit (worst residual 2.5%: NC 26.6, NQ 7.56, NI 8.05; op by op it was NC 32.0, NQ 22.0, NK 18.3, NI 14.1,
 * S 7.3, Wlin 2.0), less the SubLN-normalised inputs that BitDistillNormBitLinear no longer keeps (it recomputes
 * them in the backward): q, k, v, gate and up's [N, C] (5 NC), o_proj's [N, Q] (1 NQ) and down_proj's [N, I] (1 NI).
 */
export const TRAIN_STUDENT: LayerCoefficients = { NC: 21.6, NQ: 6.56, NK: 5.05, NI: 7.05, S: 0.24, Wlin: 0 };
/**
 * The op-by-op forms (BITDISTILL_FUSED=0 on the native engine: the earlier fits quoted above), which the WebGPU
 * backend runs (no fused kernel is registered there). Not re-fitted on WebGPU.
 */
export const TRAIN_DENSE_OP_BY_OP: LayerCoefficients = { NC: 17.0, NQ: 18.9, NK: 18.3, NI: 11.1, S: 7.3, Wlin: 0 };
export const TRAIN_STUDENT_OP_BY_OP: LayerCoefficients = { NC: 32.0, NQ: 22.0, NK: 18.3, NI: 14.1, S: 7.3, Wlin: 2.0 };
/** A forward pass without backward (frozen teacher, dev evaluation): every intermediate until it returns. */
export const FORWARD_DENSE: LayerCoefficients = { NC: 6.9, NQ: 10.8, NK: 9.6, NI: 5.0, S: 4.2, Wlin: 0 };
/** The same on wasm (explicit weight transposes in model/src/ops.ts matMulT, freed as they are used; 14 shapes each). */
export const TRAIN_DENSE_WASM: LayerCoefficients = { NC: 18.2, NQ: 19.9, NK: 14.8, NI: 10.9, S: 7.8, Wlin: 0 };
export const TRAIN_STUDENT_WASM: LayerCoefficients = { NC: 33.2, NQ: 23.0, NK: 14.8, NI: 13.9, S: 7.8, Wlin: 2.0 };
export const FORWARD_DENSE_WASM: LayerCoefficients = { NC: 7.4, NQ: 11.1, NK: 8.0, NI: 4.9, S: 4.4, Wlin: 0 };
/**
 * optim.recompute: values kept per layer for backward: the block input and its gradient (2 NC), and the
 * projection outputs the backward replays instead of recomputing (decoder.ts): q (NQ), k and v (2 NK),
 * o_proj and down_proj (2 NC), gate and up (2 NI).
 */
export const RECOMPUTE_KEPT_NC = 4;
export const RECOMPUTE_KEPT_NQ = 1;
export const RECOMPUTE_KEPT_NK = 2;
export const RECOMPUTE_KEPT_NI = 2;
/**
 * The fused row-chunked head + loss (losses' fusedHeadLoss): [r, V] blocks alive at once (CE alone / CE + logit
 * KD; measured 4 / 6), and [V, C] blocks beyond the gradients (its dW accumulation; the tied embedding's
 * gather gradient before it is added to the head's).
 */
export const HEAD_CE_BLOCKS = 4;
export const HEAD_KD_BLOCKS = 6;
export const HEAD_VC_BLOCKS = 2;
/**
 * The same with the engine's BitDistillHeadLoss kernel (native and wasm hosts): the student's logit block and the
 * gradient block it writes (CE), plus the teacher's block (KD); the kernel's inputs are freed as it returns.
 */
export const HEAD_CE_BLOCKS_FUSED = 2;
export const HEAD_KD_BLOCKS_FUSED = 3;
/**
 * Attention-relation KD of one layer, batch-chunked with a hand-written backward (losses' attentionRelationKd):
 * values per chunk*R*T^2 and per B*T*(Q+2K) (measured); auto chunk = [chunk, R, T, T] blocks of 64 MiB.
 */
export const ATTN_KD_REL = 8.3;
export const ATTN_KD_QKV = 2.0;
/**
 * The optimizer step's temporaries in copies of the largest parameter: fused AdamW on host storage, tf ops on
 * wasm (measured; WebGPU takes the same tf-ops path).
 */
export const UPDATE_COPIES_HOST = 1;
export const UPDATE_COPIES_WASM = 14;
/**
 * Checkpoint writing, in trainable-sized copies: the files are streamed tensor by tensor from the tensors'
 * storage (native, cpu: no copy), but on wasm every `data()` read of the weights and both moments is a copy out
 * of the heap, all held while the files are written (on WebGPU a host copy of each, kept by tfjs until the
 * tensor is replaced).
 */
export const CHECKPOINT_COPIES_WASM = 3;
export const CHECKPOINT_COPIES_NATIVE = 0;
/**
 * Node + tfjs + wasm module + kernels addon + the task data: peak RSS of a 1-step batch-1 x 8 stage of
 * stories260K (nothing else of size), measured through tsx at 216 MiB native / 204 MiB wasm for a task stage and
 * 289 / 318 MiB for an LM stage (corpus stream). The command now runs as a bundle without tsx
 * (scripts/build-cli.mjs): the same small-base stages measured 51 MiB (task) and 85 MiB (LM) lower that way
 * (test/memory-budget.test.ts; 454 -> 403 and 576 -> 491 MiB), so those are taken off. A process that runs the
 * sources through tsx (BITDISTILL_CLI_FROM_SOURCE=1, or a stale bundle) is that much above the estimate.
 */
export const PROCESS_OVERHEAD_BYTES = (216 - 51) * MiB;
export const PROCESS_OVERHEAD_LM_BYTES = (300 - 85) * MiB;
/** A parsed tokenizer.json's share of the JS heap per vocabulary entry (Qwen3's 151,936: ~46 MiB measured). */
export const TOKENIZER_BYTES_PER_TOKEN = 320;
/**
 * The native engine (backend/src/engine.ts) keeps freed kernel outputs in a pool up to BITDISTILL_POOL_MB
 * (default an eighth of the machine's memory, at least NATIVE_POOL_DEFAULT_MIB, at most 4 GiB): during the update it still holds the step's activations, min(cap, A). Buffers it does not
 * pool are left to V8 until BITDISTILL_GC_MB (default 1024 MiB) of them have died, then it forces a GC; each
 * update replaces every parameter's array, so up to min(that, G) of dead arrays can be resident.
 */
export const NATIVE_POOL_DEFAULT_MIB = 1024;
export const NATIVE_GC_DEFAULT_MIB = 1024;
/** wasm heap fragmentation / growth slack over the live tensor bytes (calibrated: measured / estimate 0.81-0.92 without it). */
export const WASM_HEAP_SLACK = 1.1;
/** wasm32's ceiling for the tfjs-backend-wasm heap that holds every tensor (emscripten getHeapMax()). */
export const WASM_HEAP_LIMIT_BYTES = 4 * GiB - 64 * 1024;

/** The shape of a decoder, from its Hugging Face config.json (the keys @bitdistill/arch parseDecoderConfig reads). */
export type ModelShape = Pick<
  DecoderConfig,
  'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'tieWordEmbeddings' | 'qkvBias' | 'oBias' | 'qkNorm'
>;

/** The few config.json keys the estimate needs, read by the decoder's own parser (@bitdistill/arch). */
export function parseModelShape(raw: Record<string, unknown>, file: string): ModelShape {
  const c = parseDecoderConfig(raw, file);
  return {
    vocabSize: c.vocabSize,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    numKvHeads: c.numKvHeads,
    headDim: c.headDim,
    tieWordEmbeddings: c.tieWordEmbeddings,
    qkvBias: c.qkvBias,
    oBias: c.oBias,
    qkNorm: c.qkNorm,
  };
}

/** A llama2.c checkpoint's header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (< 0: unshared head), seq_len. */
function llama2cShape(file: string): ModelShape {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(28);
  try {
    if (readSync(fd, buf, 0, 28, 0) !== 28) throw new FormatError(file, 'shorter than the 28-byte llama2.c header');
  } finally {
    closeSync(fd);
  }
  const h = [0, 1, 2, 3, 4, 5].map((i) => buf.readInt32LE(i * 4)) as [number, number, number, number, number, number];
  const [dim, hidden, layers, heads, kv, vocab] = h;
  if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kv <= 0 || vocab === 0) throw new FormatError(file, 'not a llama2.c checkpoint header');
  return {
    vocabSize: Math.abs(vocab),
    hiddenSize: dim,
    intermediateSize: hidden,
    numLayers: layers,
    numHeads: heads,
    numKvHeads: kv,
    headDim: dim / heads,
    tieWordEmbeddings: vocab > 0,
    qkvBias: false,
    oBias: false,
    qkNorm: false,
  };
}

export type ShapeResult = { shape: ModelShape; file: string } | { shape: null; reason: string };

/** The shape of the model at `path` (an HF folder's config.json, or a llama2.c .bin); never reads weights. */
export function readModelShape(path: string): ShapeResult {
  if (!existsSync(path)) return { shape: null, reason: `model path '${path}' does not exist` };
  try {
    if (statSync(path).isFile()) return { shape: llama2cShape(path), file: path };
    const file = join(path, 'config.json');
    if (!existsSync(file)) return { shape: null, reason: `no config.json in '${path}'` };
    const raw: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { shape: null, reason: `${file} is not a JSON object` };
    return { shape: parseModelShape(raw as Record<string, unknown>, file), file };
  } catch (e) {
    return { shape: null, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** Parameter counts of a model: all, and the seven projections of one layer (Wlin). */
export function parameterCounts(s: ModelShape, subln: SublnMode = 'none'): { total: number; perLayerLinear: number } {
  const C = s.hiddenSize;
  const Q = s.numHeads * s.headDim;
  const K = s.numKvHeads * s.headDim;
  const I = s.intermediateSize;
  const lin = C * Q + 2 * C * K + Q * C + 3 * C * I;
  let layer = lin + 2 * C;
  if (s.qkvBias) layer += Q + 2 * K;
  if (s.oBias) layer += C;
  if (s.qkNorm) layer += 2 * s.headDim;
  if (subln === 'standard') layer += Q + I;
  if (subln === 'allnorm') layer += 5 * C + Q + I;
  const total = s.vocabSize * C * (s.tieWordEmbeddings ? 1 : 2) + s.numLayers * layer + C;
  return { total, perLayerLinear: lin };
}

/** The relation-head count the distill stage uses (stages.ts resolveRelationHeads): divides every Q/K/V width. */
function relationHeads(wanted: number, widths: readonly number[]): number {
  for (let r = wanted; r >= 1; r--) if (widths.every((w) => w % r === 0)) return r;
  return 1;
}

function layerValues(c: LayerCoefficients, s: ModelShape, B: number, T: number): number {
  const N = B * T;
  const Q = s.numHeads * s.headDim;
  const K = s.numKvHeads * s.headDim;
  return (
    c.NC * N * s.hiddenSize +
    c.NQ * N * Q +
    c.NK * N * K +
    c.NI * N * s.intermediateSize +
    c.S * B * s.numHeads * T * T +
    c.Wlin * parameterCounts(s).perLayerLinear
  );
}

/**
 * A forward-only pass (teacher, evaluation) in bytes: Decoder.forward runs each block in a tidy, so one block's
 * intermediates at a time, plus those of a captured layer (run outside a tidy, alive until the forward returns),
 * and `logitRows` full logits.
 */
function forwardBytes(c: LayerCoefficients, s: ModelShape, B: number, T: number, logitRows: number): number {
  return F32 * (Math.min(2, s.numLayers) * layerValues(c, s, B, T) + 4 * B * T * s.hiddenSize + logitRows * s.vocabSize);
}

/** The size in values of the model's largest parameter (the optimizer updates one at a time). */
function largestParameter(s: ModelShape): number {
  const Q = s.numHeads * s.headDim;
  return Math.max(s.vocabSize * s.hiddenSize, s.intermediateSize * s.hiddenSize, Q * s.hiddenSize);
}

export interface EstimateOptions {
  /** The backend that will run (wasm: heap limit and copying reads); default from the config. */
  backend?: string;
  /** Override optim.recompute for every stage. */
  recompute?: boolean;
  /** Shape of the teacher when distill.teacherPath / this run's teacher differs from model.path. */
  teacherShape?: ModelShape;
  /** Bytes of the process before any tensor (default PROCESS_OVERHEAD_BYTES + tokenizer). */
  overheadBytes?: number;
  /** Assume a periodic checkpoint (optimizer state serialised) happens; default true. */
  checkpoints?: boolean;
}

export type Phase = 'step' | 'update' | 'eval' | 'checkpoint';

export interface StageEstimate {
  stage: StageName;
  /** Parameters of the trained model (with SubLN gains for a student) and of the teacher (0 if none). */
  params: number;
  teacherParams: number;
  batchSize: number;
  seqLen: number;
  gradAccum: number;
  recompute: boolean;
  /** Rows of one loss chunk ([r, V] blocks). */
  lossChunkRows: number;
  bytes: {
    weights: number;
    grads: number;
    optimizer: number;
    /** The optimizer step's temporaries (AdamW + clipping), alive only during the update. */
    update: number;
    teacher: number;
    /** Activations of one micro-batch incl. the head/loss and the teacher's forward. */
    activations: number;
    /** Checkpoint serialisation copies. */
    checkpoint: number;
    /** Backend slack: the native engine's pool and not-yet-collected buffers, or the wasm heap's allocator slack. */
    slack: number;
    overhead: number;
    /** The estimated peak RSS. */
    total: number;
    /** The tensors' share of the peak (what wasm must hold in its heap). */
    tensors: number;
  };
  /** The phase that sets the peak. */
  phase: Phase;
  phases: Record<Phase, number>;
}

/** The optim block a stage runs with (stageOptim overrides applied). */
export function stageOptim(config: TrainConfig, stage: StageName): TrainConfig['optim'] {
  return { ...config.optim, ...(config.stageOptim[stage] ?? {}) } as TrainConfig['optim'];
}

/** Rows per chunk of the fused head + loss: optim.lossChunkRows, or auto (AUTO_CHUNK_BYTES blocks) when null. */
export function lossChunkRows(o: TrainConfig['optim'], vocabSize: number): number {
  return o.lossChunkRows ?? Math.max(1, Math.floor(AUTO_CHUNK_BYTES / (4 * vocabSize)));
}

function isStudent(stage: StageName): boolean {
  return stage === 'bitnet-sft' || stage === 'continual-pretrain' || stage === 'distill';
}

/** Per-layer training coefficients: the native engine's fused forms, wasm's, or the op-by-op forms WebGPU runs. */
function trainCoefficients(backend: string, student: boolean): LayerCoefficients {
  if (backend === 'wasm') return student ? TRAIN_STUDENT_WASM : TRAIN_DENSE_WASM;
  if (backend === 'webgpu') return student ? TRAIN_STUDENT_OP_BY_OP : TRAIN_DENSE_OP_BY_OP;
  return student ? TRAIN_STUDENT : TRAIN_DENSE;
}

/** Estimated peak memory of one stage of a config for a model of shape `shape` (see the header for the model). */
export function estimateStage(config: TrainConfig, stage: StageName, shape: ModelShape, opts: EstimateOptions = {}): StageEstimate {
  const o = stageOptim(config, stage);
  const backend = opts.backend ?? config.backend;
  const lm = stage === 'pretrain' || stage === 'continual-pretrain';
  const T = lm ? config.corpus.seqLen : config.model.maxSeqLen;
  const B = o.batchSize;
  const N = B * T;
  const C = shape.hiddenSize;
  const V = shape.vocabSize;
  const recompute = opts.recompute ?? o.recompute;
  const chunk = lossChunkRows(o, V);
  const student = isStudent(stage);
  const subln = stage === 'bitnet-sft' || !student ? 'none' : config.student.subln;
  const params = parameterCounts(shape, subln).total;
  const d = config.distill;
  const withTeacher = stage === 'distill' && (d.logit || d.attention);
  const tShape = opts.teacherShape ?? shape;
  const teacherParams = withTeacher ? parameterCounts(tShape).total : 0;

  const W = F32 * params;
  const G = W; // every parameter of the trained model is trainable
  const accum = o.gradAccum > 1 ? G : 0;

  // Activations of one micro-batch: the decoder layers, the head + loss, attention KD, the teacher's forward.
  const wasm = backend === 'wasm';
  // WebGPU: op-by-op forms, AdamW in tf ops, host copies of what a checkpoint reads (see the constants).
  const webgpu = backend === 'webgpu';
  const coef = trainCoefficients(backend, student);
  const fwd = wasm ? FORWARD_DENSE_WASM : FORWARD_DENSE;
  const perLayer = layerValues(coef, shape, B, T);
  // Recompute keeps each block's input; the block being recomputed holds its activations (the distilled layer,
  // whose Q/K/V are captured, is not recomputed: one more block).
  const capturedLayers = stage === 'distill' && config.distill.attention ? 1 : 0;
  const kept = layerValues({ NC: RECOMPUTE_KEPT_NC, NQ: RECOMPUTE_KEPT_NQ, NK: RECOMPUTE_KEPT_NK, NI: RECOMPUTE_KEPT_NI, S: 0, Wlin: 0 }, shape, B, T);
  const layers = recompute ? shape.numLayers * kept + (1 + capturedLayers) * perLayer : shape.numLayers * perLayer;
  const logitAll = lm || (stage === 'distill' && d.logit && d.logitPositions === 'all');
  const lossRows = logitAll ? N : Math.min(N, B * ANSWER_ROWS_PER_EXAMPLE);
  const kd = stage === 'distill' && d.logit;
  const blocks = webgpu ? (kd ? HEAD_KD_BLOCKS : HEAD_CE_BLOCKS) : kd ? HEAD_KD_BLOCKS_FUSED : HEAD_CE_BLOCKS_FUSED;
  const head = blocks * Math.min(chunk, lossRows) * V + HEAD_VC_BLOCKS * V * C + 4 * N * C;
  let attn = 0;
  if (stage === 'distill' && d.attention) {
    const Q = shape.numHeads * shape.headDim;
    const K = shape.numKvHeads * shape.headDim;
    const widths = [Q, K, tShape.numHeads * tShape.headDim, tShape.numKvHeads * tShape.headDim];
    const R = relationHeads(d.relationHeads, widths);
    const chunkB = Math.min(B, Math.max(1, Math.floor(AUTO_CHUNK_BYTES / (4 * R * T * T))));
    attn = ATTN_KD_REL * chunkB * R * T * T + ATTN_KD_QKV * N * (Q + 2 * K);
  }
  const teacherAct = withTeacher ? forwardBytes(fwd, tShape, B, T, 0) : 0;
  const activations = F32 * (layers + head + attn) + teacherAct;
  const Wt = F32 * teacherParams;

  const update = F32 * largestParameter(shape) * (wasm || webgpu ? UPDATE_COPIES_WASM : UPDATE_COPIES_HOST);
  const optimizer = 2 * G;
  // Without periodic checkpoints only final/ is written: the weights alone.
  const checkpoint = wasm || webgpu ? (opts.checkpoints === false ? W : G * CHECKPOINT_COPIES_WASM) : G * CHECKPOINT_COPIES_NATIVE;
  const evalB = Math.max(8, B);
  const evalAct = lm ? 0 : forwardBytes(fwd, shape, evalB, config.model.maxSeqLen, evalB * ANSWER_ROWS_PER_EXAMPLE);
  const overhead = opts.overheadBytes ?? (lm ? PROCESS_OVERHEAD_LM_BYTES : PROCESS_OVERHEAD_BYTES) + TOKENIZER_BYTES_PER_TOKEN * V;

  // The native engine's slack (auto picks the native engine when the addon loads; stock cpu has neither):
  // its pool of freed kernel outputs, and the unpooled buffers that wait for its forced GC.
  const native = backend === 'native' || backend === 'auto';
  // During a step the pool's buffers are the step's own (the same sizes every step); in the other phases it
  // still holds the step's activations. Dead parameter arrays of the last update may wait for the GC throughout.
  const gcSlack = native ? Math.min(nativeGcStepBytes(), G) : 0;
  const poolSlack = native ? Math.min(nativePoolCapBytes(), activations) : 0;
  const base = W + optimizer + Wt + gcSlack;
  const phases: Record<Phase, number> = {
    step: base + accum + G + activations,
    update: base + G + accum + update + poolSlack,
    eval: base + evalAct + poolSlack,
    checkpoint: base + checkpoint + poolSlack,
  };
  let phase: Phase = 'step';
  for (const p of ['update', 'eval'] as const) if (phases[p] > phases[phase]) phase = p;
  let heap = phases[phase];
  let total: number;
  if (wasm) {
    // The wasm heap keeps its high-water mark (plus allocator slack): the checkpoint's JS-side copies come on top.
    heap *= WASM_HEAP_SLACK;
    total = overhead + heap + checkpoint;
    phases.checkpoint = heap + checkpoint;
  } else {
    if (phases.checkpoint > heap) phase = 'checkpoint';
    total = overhead + Math.max(heap, phases.checkpoint);
  }
  return {
    stage,
    params,
    teacherParams,
    batchSize: B,
    seqLen: T,
    gradAccum: o.gradAccum,
    recompute,
    lossChunkRows: chunk,
    bytes: {
      weights: W,
      grads: G + accum,
      optimizer,
      update,
      teacher: Wt,
      activations,
      checkpoint,
      slack: wasm ? heap - heap / WASM_HEAP_SLACK : gcSlack + (phase === 'step' ? 0 : poolSlack),
      overhead,
      total,
      tensors: heap,
    },
    phase,
    phases,
  };
}

/** The native engine's pool cap: BITDISTILL_POOL_MB, as backend/src/engine.ts reads it. */
export function nativePoolCapBytes(total = totalmem()): number {
  // The most the engine's default allows (backend/src/engine.ts defaultPoolCapBytes): an eighth of the memory,
  // 1-4 GiB; in use it is four times the largest buffer, so this bounds it from above.
  const dflt = Math.min(4 * GiB, Math.max(NATIVE_POOL_DEFAULT_MIB * MiB, Math.floor(total / 8 / MiB) * MiB));
  const env = process.env['BITDISTILL_POOL_MB'];
  const mb = Number(env);
  return env !== undefined && Number.isFinite(mb) && mb >= 0 ? mb * MiB : dflt;
}

/** Bytes of unpooled buffers the native engine lets die before it forces a GC: BITDISTILL_GC_MB (default 1024). */
export function nativeGcStepBytes(): number {
  const mb = Number(process.env['BITDISTILL_GC_MB'] ?? String(NATIVE_GC_DEFAULT_MIB));
  return Number.isFinite(mb) && mb > 0 ? mb * MiB : NATIVE_GC_DEFAULT_MIB * MiB;
}

export interface MachineMemory {
  /** MemAvailable from /proc/meminfo (os.freemem() elsewhere). */
  availableBytes: number;
  totalBytes: number;
  source: 'MemAvailable' | 'os.freemem';
}

export function machineMemory(): MachineMemory {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m !== null) return { availableBytes: Number(m[1]) * 1024, totalBytes: totalmem(), source: 'MemAvailable' };
  } catch {
    // not Linux
  }
  return { availableBytes: freemem(), totalBytes: totalmem(), source: 'os.freemem' };
}

/** The backend's own ceiling on tensor bytes: wasm's 4 GiB heap; null = none beyond RAM. */
export function backendLimitBytes(backend: string): number | null {
  return backend === 'wasm' ? WASM_HEAP_LIMIT_BYTES : null;
}

export interface RunEstimate {
  /** The backend the estimate assumed. */
  backend: string;
  machine: MachineMemory;
  backendLimitBytes: number | null;
  /** One per stage of the config (in order), or null with the reason when the model shape is unknown. */
  stages: StageEstimate[];
  unavailable: string | null;
  /** Where the shapes came from. */
  modelConfig: string | null;
  teacherConfig: string | null;
  notes: string[];
}

/** The teacher a distill stage reads: distill.teacherPath, or this run's teacher output once it exists. */
function teacherShapeOf(config: TrainConfig): ShapeResult | null {
  const p = config.distill.teacherPath ?? join(config.outputDir, config.name, 'teacher', 'final');
  const r = readModelShape(p);
  return r.shape === null ? null : r;
}

/** Estimates for every stage of the config (or `stages`), from model.path's config.json. */
export function estimateRun(config: TrainConfig, opts: EstimateOptions & { stages?: readonly StageName[]; machine?: MachineMemory } = {}): RunEstimate {
  const backend = opts.backend ?? config.backend;
  const machine = opts.machine ?? machineMemory();
  const limit = backendLimitBytes(backend);
  const notes: string[] = [];
  const base = readModelShape(config.model.path);
  if (base.shape === null) {
    return { backend, machine, backendLimitBytes: limit, stages: [], unavailable: base.reason, modelConfig: null, teacherConfig: null, notes };
  }
  const t = config.stages.includes('distill') ? teacherShapeOf(config) : null;
  const stages = (opts.stages ?? config.stages).map((s) =>
    estimateStage(config, s, base.shape, { ...opts, backend, ...(t?.shape != null ? { teacherShape: t.shape } : {}) }),
  );
  if (backend === 'auto') notes.push('backend auto: the native engine when the kernels addon loads (no limit beyond RAM), else wasm (4 GiB heap)');
  if (backend === 'webgpu')
    notes.push(
      'backend webgpu: tensors live in GPU memory, whose size WebGPU does not report; the estimate (op-by-op forms, not fitted on WebGPU) is checked against host memory, which is the GPU memory of a software adapter',
    );
  return {
    backend,
    machine,
    backendLimitBytes: limit,
    stages,
    unavailable: null,
    modelConfig: base.file,
    teacherConfig: t?.shape != null ? t.file : null,
    notes,
  };
}

const fmtMiB = (b: number): string => Math.round(b / MiB).toLocaleString('en-US');
const fmtGiB = (b: number): string => `${(b / GiB).toFixed(1)} GiB`;

/** The table `bitdistill validate` prints under the resolved config. */
export function formatMemoryTable(r: RunEstimate): string {
  const lines: string[] = ['', '# estimated peak memory per stage (fp32, MiB; peak = overhead + the largest phase)'];
  if (r.unavailable !== null) {
    lines.push(`# unavailable: ${r.unavailable} (the estimate needs the model's config.json)`);
  } else {
    const head = ['stage', 'params', 'B x T x accum', 'weights', 'grads', 'optimizer', 'update', 'teacher', 'activations', 'overhead', 'total', 'peak in'];
    const rows = r.stages.map((s) => [
      s.stage + (s.recompute ? ' (recompute)' : ''),
      `${(s.params / 1e6).toFixed(1)}M`,
      `${s.batchSize} x ${s.seqLen} x ${s.gradAccum}`,
      fmtMiB(s.bytes.weights),
      fmtMiB(s.bytes.grads),
      fmtMiB(s.bytes.optimizer),
      fmtMiB(s.bytes.update),
      s.bytes.teacher > 0 ? fmtMiB(s.bytes.teacher) : '-',
      fmtMiB(s.bytes.activations),
      fmtMiB(s.bytes.overhead),
      fmtMiB(s.bytes.total),
      s.phase,
    ]);
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
    const line = (cells: string[]) => `# ${cells.map((c, i) => (i === 0 ? c.padEnd(width[i] as number) : c.padStart(width[i] as number))).join('  ')}`;
    lines.push(line(head), ...rows.map(line));
    lines.push(`# model: ${r.modelConfig}${r.teacherConfig !== null ? `; teacher: ${r.teacherConfig}` : ''}`);
  }
  const m = r.machine;
  lines.push(`# available: ${fmtMiB(m.availableBytes)} MiB (${m.source}; total ${fmtMiB(m.totalBytes)} MiB)`);
  lines.push(
    `# backend ${r.backend}: ${r.backendLimitBytes === null ? 'no limit beyond RAM' : `tensors limited to the ${fmtMiB(r.backendLimitBytes)} MiB wasm32 heap`}`,
  );
  for (const s of r.stages) {
    const v = verdict(s, r);
    if (v !== null) lines.push(`# ${s.stage}: ${v}`);
  }
  for (const n of r.notes) lines.push(`# note: ${n}`);
  return `${lines.join('\n')}\n`;
}

/** Why a stage does not fit, or null when it does. */
function verdict(s: StageEstimate, r: RunEstimate): string | null {
  if (s.bytes.total > r.machine.availableBytes) return `exceeds the available memory (${fmtGiB(s.bytes.total)} > ${fmtGiB(r.machine.availableBytes)})`;
  if (r.backendLimitBytes !== null && s.bytes.tensors > r.backendLimitBytes)
    return `exceeds the wasm heap (${fmtGiB(s.bytes.tensors)} of tensors > ${fmtGiB(r.backendLimitBytes)})`;
  return null;
}

/** JSON view of an estimate (MiB numbers, for `validate --json`). */
export function memoryJson(r: RunEstimate): Record<string, unknown> {
  const mib = (b: number) => Math.round((b / MiB) * 10) / 10;
  return {
    unit: 'MiB',
    backend: r.backend,
    availableMiB: mib(r.machine.availableBytes),
    availableSource: r.machine.source,
    totalMiB: mib(r.machine.totalBytes),
    backendLimitMiB: r.backendLimitBytes === null ? null : mib(r.backendLimitBytes),
    unavailable: r.unavailable,
    modelConfig: r.modelConfig,
    teacherConfig: r.teacherConfig,
    stages: r.stages.map((s) => ({
      stage: s.stage,
      params: s.params,
      teacherParams: s.teacherParams,
      batchSize: s.batchSize,
      seqLen: s.seqLen,
      gradAccum: s.gradAccum,
      recompute: s.recompute,
      lossChunkRows: s.lossChunkRows,
      ...Object.fromEntries(Object.entries(s.bytes).map(([k, v]) => [`${k}MiB`, mib(v)])),
      peakPhase: s.phase,
      fits: verdict(s, r) === null,
    })),
    notes: r.notes,
  };
}

/** The knobs that lower a stage's estimate, for the refusal's hint. */
function knobs(s: StageEstimate, config: TrainConfig): string {
  const lm = s.stage === 'pretrain' || s.stage === 'continual-pretrain';
  const eff = s.batchSize * s.gradAccum;
  const half = Math.max(1, Math.floor(s.batchSize / 2));
  const parts = [
    `optim.batchSize=${half} optim.gradAccum=${Math.ceil(eff / half)} (same effective batch of ${eff}; or stageOptim.${s.stage}.batchSize)`,
    lm ? `corpus.seqLen (now ${config.corpus.seqLen})` : `model.maxSeqLen (now ${config.model.maxSeqLen})`,
    ...(s.recompute ? [] : ['optim.recompute=true']),
    `optim.lossChunkRows (now ${s.lossChunkRows})`,
  ];
  return parts.join(', ');
}

/**
 * Disk the stages about to run may fill under outputDir: per stage its final weights (4 bytes a parameter) and
 * checkpoint.keepLast checkpoints (weights + two AdamW moments, 12 bytes a parameter), all kept when the stage ends,
 * plus one more checkpoint written before the oldest is removed. An upper bound: resumed stages already hold part
 * of it; tokenizer and JSON files are not counted.
 */
export function checkpointDiskBytes(r: RunEstimate, stages: readonly StageName[], keepLast: number): number {
  let total = 0;
  let largest = 0;
  for (const s of r.stages) {
    if (!stages.includes(s.stage)) continue;
    total += 4 * s.params + 12 * s.params * keepLast;
    largest = Math.max(largest, 12 * s.params);
  }
  return total + largest;
}

/**
 * A warning (not an error: free space changes, and a resumed run already holds part of it) when the checkpoints
 * of the stages about to run may not fit the free space of the output folder's filesystem; null when they fit.
 */
export function diskWarning(needBytes: number, freeBytes: number, outputDir: string): string | null {
  if (needBytes <= freeBytes) return null;
  const size = (b: number): string => (b >= GiB ? fmtGiB(b) : `${(b / 2 ** 20).toFixed(1)} MiB`);
  return `the checkpoints of this run may need up to ${size(needBytes)} under ${outputDir}, which has ${size(freeBytes)} free: training would stop with E_IO (disk full) at a checkpoint (the previous one stays intact); free space, lower checkpoint.keepLast or point outputDir elsewhere`;
}

/**
 * Throws MemoryBudgetError for the first stage whose estimate exceeds the available memory or the backend's
 * limit. `stages` are those about to run. Estimates that could not be made (no config.json) pass.
 */
export function checkMemoryBudget(r: RunEstimate, config: TrainConfig, stages: readonly StageName[]): void {
  for (const s of r.stages) {
    if (!stages.includes(s.stage)) continue;
    const overAvail = s.bytes.total > r.machine.availableBytes;
    const overBackend = r.backendLimitBytes !== null && s.bytes.tensors > r.backendLimitBytes;
    if (!overAvail && !overBackend) continue;
    const limit = overAvail ? r.machine.availableBytes : (r.backendLimitBytes as number);
    const what = overAvail ? `the ${fmtGiB(limit)} of available memory (${r.machine.source})` : `the ${fmtGiB(limit)} wasm32 heap of backend ${r.backend}`;
    const amount = overAvail ? s.bytes.total : s.bytes.tensors;
    const fixed = s.bytes.weights + s.bytes.grads + s.bytes.optimizer + s.bytes.teacher + s.bytes.overhead;
    const floor =
      fixed > limit
        ? ` Weights, gradients, AdamW moments${s.bytes.teacher > 0 ? ' and the teacher' : ''} alone need ${fmtGiB(fixed)}: no batch or length setting fits this model here.`
        : '';
    const backendHint = overBackend && !overAvail ? ' or --backend native (no heap limit)' : '';
    throw new MemoryBudgetError(
      s.stage,
      amount,
      limit,
      `stage '${s.stage}' needs an estimated ${fmtGiB(amount)} at its peak (${s.phase} phase: weights ${fmtGiB(s.bytes.weights)}, grads ${fmtGiB(s.bytes.grads)}, optimizer ${fmtGiB(s.bytes.optimizer)}, update ${fmtGiB(s.bytes.update)}, teacher ${fmtGiB(s.bytes.teacher)}, activations ${fmtGiB(s.bytes.activations)}), more than ${what}.${floor}`,
      {
        hint: `lower it with ${knobs(s, config)}${backendHint}; \`bitdistill validate --config FILE\` prints the estimate of every stage; --no-memory-check runs anyway`,
      },
    );
  }
}
