// The one-call native decoder layer (kernels-cpu decodeLayer) against the runtime's op-by-op path, its twin:
// the same logits bit for bit, for a prefill, a second chunk of several positions and decoding steps one token
// at a time, with the f32 and the f16 KV cache, over every layer variant the loader builds (stacked q/k/v and
// gate/up or not, SubLN none / standard / allnorm with its own epsilon, q/k-norm, q/k/v biases, a layer with
// a dense projection that stays op by op).
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initKernels, nativeStatus } from '@bitdistill/kernels-cpu/runtime';
import { TernaryRuntime, type KvCacheMode, type RuntimeOptions } from '../src/index.ts';
import { BASE_CONFIG, exportTensors, writeExportDir } from './fixtures.ts';

const STORIES = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8')) as Record<string, unknown>;

/** Where the two paths first differ (as float32 bit patterns, so -0 / NaN count), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (ua.length !== ub.length) return 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if ((a[i] as number) > (a[best] as number)) best = i;
  return best;
}

/** Prefill, a chunk of 3 positions, then 6 decoding steps on the fused and the op-by-op runtimes: equal logits. */
function expectSameLogits(dir: string, kvCache: KvCacheMode, options: RuntimeOptions = {}): { fusedLayers: number } {
  const fused = TernaryRuntime.load(dir, { ...options, kvCache, fusedLayers: true });
  const ops = TernaryRuntime.load(dir, { ...options, kvCache, fusedLayers: false });
  expect(ops.info.fusedLayers).to.equal(0);
  const cf = fused.newCache(32);
  const co = ops.newCache(32);
  const prompt = Array.from({ length: 9 }, (_, i) => 1 + ((i * 131 + 7) % 500));
  const steps: { ids: number[]; allPositions: boolean }[] = [
    { ids: prompt, allPositions: true },
    { ids: [17, 301, 4], allPositions: true },
  ];
  for (const [i, s] of steps.entries()) {
    const a = fused.forward(s.ids, { cache: cf, allPositions: s.allPositions });
    const b = ops.forward(s.ids, { cache: co, allPositions: s.allPositions });
    expect(firstDifference(a, b), `chunk ${i}: first differing logit`).to.equal(-1);
  }
  let next = 5;
  for (let step = 0; step < 6; step++) {
    const a = fused.forward([next], { cache: cf });
    const b = ops.forward([next], { cache: co });
    expect(firstDifference(a, b), `decode step ${step}: first differing logit`).to.equal(-1);
    next = argmax(a);
  }
  expect(cf.length).to.equal(prompt.length + 3 + 6);
  return { fusedLayers: fused.info.fusedLayers };
}

describe('runtime: one native call per decoder layer', function () {
  this.timeout(60_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-fused-layer-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  before(function () {
    initKernels();
    if (!nativeStatus().native) this.skip(); // the layer call is native only; without the addon every layer runs op by op
  });

  const variants: [string, Record<string, unknown>, string[]][] = [
    ['llama, SubLN standard (stacked q/k/v and gate/up)', BASE_CONFIG, []],
    ['llama, SubLN none', { ...BASE_CONFIG, bitdistill: { subln: 'none', weightQuant: 'absmean' } }, []],
    [
      'llama, SubLN allnorm (every projection alone, with its gain)',
      { ...BASE_CONFIG, bitdistill: { subln: 'allnorm', weightQuant: 'absmean', sublnEps: 1e-6 } },
      [],
    ],
    ['qwen3 (q/k-norm), intermediate 30 (gate/up not stacked)', { ...BASE_CONFIG, model_type: 'qwen3', intermediate_size: 30 }, []],
    [
      'qwen3, 8/4 heads of 16 (q/k-norm over 8 rows at a time, attention in 16-lane blocks)',
      { ...BASE_CONFIG, model_type: 'qwen3', num_attention_heads: 8, num_key_value_heads: 4, head_dim: 16 },
      [],
    ],
    ['qwen2 (q/k/v biases, not stacked)', { ...BASE_CONFIG, model_type: 'qwen2' }, []],
    [
      'stories260K shape (5 layers, 8/4 heads of 8, ffn 172), SubLN standard',
      {
        ...STORIES,
        quantization_config: BASE_CONFIG['quantization_config'],
        bitdistill: { subln: 'standard', weightQuant: 'absmean', packing: 'hf-bitnet-u8' },
      },
      [],
    ],
    ['a dense o_proj in layer 1 (that layer op by op)', BASE_CONFIG, ['model.layers.1.self_attn.o_proj']],
  ];
  for (const [name, config, dense] of variants) {
    for (const kv of ['f32', 'f16'] as const) {
      it(`${name}, ${kv} KV cache: bit-identical logits`, () => {
        const dir = join(root, name.replace(/\W+/g, '-'));
        writeExportDir(dir, config, exportTensors(config, 3, dense));
        const { fusedLayers } = expectSameLogits(dir, kv);
        const layers = Number(config['num_hidden_layers']);
        expect(fusedLayers).to.equal(dense.length === 0 ? layers : layers - 1);
      });
    }
  }

  it('the bundled tiny-bitnet-hf export (bitlinear scales, a sublnEps override): bit-identical, every layer fused', () => {
    for (const kv of ['f32', 'f16'] as const) expect(expectSameLogits('test/fixtures/tiny-bitnet-hf', kv, { sublnEps: 1e-5 }).fusedLayers).to.equal(2);
  });

  it('generate() takes the same tokens both ways', () => {
    const dir = join(root, 'generate');
    writeExportDir(dir, BASE_CONFIG, exportTensors(BASE_CONFIG, 5));
    const prompt = [1, 40, 80, 120];
    const a = TernaryRuntime.load(dir, { fusedLayers: true }).generate(prompt, 12, null).ids;
    const b = TernaryRuntime.load(dir, { fusedLayers: false }).generate(prompt, 12, null).ids;
    expect(a).to.deep.equal(b);
  });

  it('forward refuses a cache of another runtime', () => {
    const dir = join(root, 'generate');
    const f32 = TernaryRuntime.load(dir, { kvCache: 'f32' });
    const f16 = TernaryRuntime.load(dir, { kvCache: 'f16' });
    expect(() => f32.forward([1, 2], { cache: f16.newCache(8) })).to.throw(/not one of this runtime/);
  });
});
