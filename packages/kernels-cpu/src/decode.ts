/**
 * One decoder layer in one native call (native/decode_napi.cc), for the packed-ternary runtime: input RMSNorm,
 * int8 activation quantization, the ternary q/k/v products (stacked or per projection, with SubLN and bias),
 * q/k-norm, RoPE, K/V into the cache (float32 or binary16), causal attention, o_proj, residual, post-attention
 * RMSNorm, gate/up, SwiGLU, down_proj, residual. It computes exactly what the runtime's op-by-op path computes
 * (packages/runtime/src/runtime.ts run(): its fallback and twin, against which it is tested bit for bit), in one
 * N-API call instead of ~10 and with the small steps on the calling thread instead of in JavaScript.
 *
 * Native only: `decodeLayerWeights` returns null without the addon, and the caller keeps its own path.
 */
import { ArgumentError, ShapeError } from '@bitdistill/core';
import { nativeAddon } from './native.ts';
import type { RopeTables } from './ops.ts';
import { ternaryLayoutBytes, type TernaryMatrix, type TernarySegments } from './ternary.ts';

/** The projections of a layer in the order the native layer takes them. */
export const DECODE_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type DecodeProjection = (typeof DECODE_PROJECTIONS)[number];

/** A ternary projection: y = f32(acc * f32(scale / actScale)) (+ bias), its input RMSNorm'd by `subln` first. */
export interface DecodeLinear {
  w: TernaryMatrix;
  scale: number;
  bias: Float32Array | null;
  subln: Float32Array | null;
}

/** Projections stacked by rows (ternaryStack), bias-free and without their own SubLN; the parts are its slices. */
export interface DecodeStack {
  w: TernaryMatrix;
  seg: TernarySegments;
}

export interface DecodeLayerSpec {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  /** epsilon of the input, post-attention and q/k norms */
  rmsNormEps: number;
  /** epsilon of the SubLN norms */
  sublnEps: number;
  /** attention score scale, usually 1 / sqrt(headDim) */
  attnScale: number;
  inputNorm: Float32Array;
  postNorm: Float32Array;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  proj: Record<DecodeProjection, DecodeLinear>;
  /** q/k/v as one stack, or null (then each runs alone) */
  qkv: DecodeStack | null;
  /** gate/up as one stack, or null */
  gateUp: DecodeStack | null;
}

/** A layer's weights as the native layer holds them (its data pointers); keeps the spec's arrays alive. */
export interface DecodeLayerWeights {
  readonly handle: unknown;
  readonly spec: DecodeLayerSpec;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new ShapeError(`decodeLayerWeights: ${what}`);
}

/** The layer's weights for decodeLayer (checked here and again natively), or null without the native addon. */
export function decodeLayerWeights(spec: DecodeLayerSpec): DecodeLayerWeights | null {
  const addon = nativeAddon();
  if (addon === null) return null;
  const { hidden: C, heads: H, kvHeads: Hkv, headDim: d, intermediate: I } = spec;
  if (![C, H, Hkv, d, I].every((v) => Number.isInteger(v) && v >= 1 && v <= 2 ** 20) || H % Hkv !== 0 || d % 2 !== 0)
    throw new ArgumentError(`decodeLayerWeights: bad shape hidden ${C}, heads ${H}/${Hkv} of ${d}, intermediate ${I}`);
  if (!(spec.rmsNormEps > 0) || !(spec.sublnEps > 0) || !Number.isFinite(spec.attnScale))
    throw new ArgumentError('decodeLayerWeights: epsilons must be > 0, the scale finite');
  const shapes: Record<DecodeProjection, [number, number]> = {
    q_proj: [H * d, C],
    k_proj: [Hkv * d, C],
    v_proj: [Hkv * d, C],
    o_proj: [C, H * d],
    gate_proj: [I, C],
    up_proj: [I, C],
    down_proj: [C, I],
  };
  check(spec.inputNorm.length === C && spec.postNorm.length === C, 'input / post-attention norms are not [hidden]');
  check(
    (spec.qNorm === null) === (spec.kNorm === null) && (spec.qNorm === null || (spec.qNorm.length === d && spec.kNorm?.length === d)),
    'q_norm / k_norm are not both [headDim]',
  );
  const proj = DECODE_PROJECTIONS.map((pr) => {
    const p = spec.proj[pr];
    const [rows, cols] = shapes[pr];
    check(p.w.rows === rows && p.w.cols === cols && p.w.data.length >= ternaryLayoutBytes(rows, cols), `${pr} is not a [${rows}, ${cols}] TernaryMatrix`);
    check(p.bias === null || p.bias.length === rows, `${pr} bias is not [${rows}]`);
    check(p.subln === null || p.subln.length === cols, `${pr} SubLN gain is not [${cols}]`);
    return [p.w.data, p.bias, p.subln];
  });
  const stack = (s: DecodeStack | null) => (s === null ? null : [s.w.data, s.seg.ends, s.seg.scales]);
  const dims = Float64Array.of(C, H, Hkv, d, I, spec.rmsNormEps, spec.sublnEps, spec.attnScale);
  const scales = Float64Array.from(DECODE_PROJECTIONS, (pr) => spec.proj[pr].scale);
  const handle = addon.decodeLayerInit(dims, [spec.inputNorm, spec.postNorm, spec.qNorm, spec.kNorm], proj, scales, [stack(spec.qkv), stack(spec.gateUp)]);
  return { handle, spec };
}

/** The layer's slice of a KV cache: kc, vc [kvHeads, capacity, headDim] (Float32Array, or Uint16Array binary16). */
export type DecodeCache = { k: Float32Array; v: Float32Array } | { k: Uint16Array; v: Uint16Array };

/**
 * The layer on x [tokens, hidden] in place, for positions start .. start+tokens-1: their K and V go into the cache
 * at those positions, and each attends to cache rows 0 .. its own. `rope` holds the tables of those positions.
 */
export function decodeLayer(
  layer: DecodeLayerWeights,
  x: Float32Array,
  tokens: number,
  cache: DecodeCache,
  capacity: number,
  start: number,
  rope: RopeTables,
): void {
  const addon = nativeAddon();
  if (addon === null) throw new ArgumentError('decodeLayer: the native addon is not loaded (decodeLayerWeights returned null)');
  const s = layer.spec;
  if (!Number.isInteger(tokens) || tokens < 1 || !Number.isInteger(start) || start < 0 || !Number.isInteger(capacity) || start + tokens > capacity)
    throw new ArgumentError(`decodeLayer: positions ${start} .. ${start + tokens - 1} do not fit a cache of ${capacity}`);
  if (x.length !== tokens * s.hidden) throw new ShapeError(`decodeLayer: x has ${x.length} values, expected [${tokens}, ${s.hidden}]`);
  const n = s.kvHeads * capacity * s.headDim;
  if (cache.k.length !== n || cache.v.length !== n) throw new ShapeError(`decodeLayer: the cache is not [${s.kvHeads}, ${capacity}, ${s.headDim}]`);
  if (rope.headDim !== s.headDim || rope.cos.length < tokens * s.headDim)
    throw new ShapeError(`decodeLayer: RoPE tables do not cover ${tokens} positions of ${s.headDim}`);
  addon.decodeLayer(layer.handle, x, tokens, cache.k, cache.v, capacity, start, rope.cos, rope.sin);
}

/** The first index of the largest value (greedy decoding's next token): NaN never wins, a NaN at 0 stays. */
export function argmax(x: Float32Array): number {
  const addon = nativeAddon();
  if (addon !== null) return addon.argmaxF32(x);
  return argmaxTs(x);
}

/** TypeScript twin of argmax (the fallback). */
export function argmaxTs(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if ((x[i] as number) > (x[best] as number)) best = i;
  return best;
}
