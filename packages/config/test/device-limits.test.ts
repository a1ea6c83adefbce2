// The GPU per-buffer check `train` runs before loading (no GPU needed): the largest tensors of each stage, and
// the refusal naming the tensor, the limit and the knob.
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceLimitError } from '@bitdistill/core';
import { checkDeviceLimits, checkWeightsOnDevice, stageTensors, validateConfig, readModelShape, type ModelShape } from '@bitdistill/config';

const MiB = 2 ** 20;
const QWEN3_06B = {
  model_type: 'qwen3',
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  tie_word_embeddings: true,
};
/** lavapipe (Mesa 25.0.7) as Dawn reports it, and a desktop GPU's typical 2 GiB binding limit. */
const LAVAPIPE = { maxStorageBufferBindingSize: 128 * MiB, maxBufferSize: 4294967295 };
const DESKTOP = { maxStorageBufferBindingSize: 2048 * MiB, maxBufferSize: 4096 * MiB };

describe('device limits (WebGPU per-buffer check)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-device-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  before(() => {
    mkdirSync(join(tmp, 'q06'));
    writeFileSync(join(tmp, 'q06', 'config.json'), JSON.stringify(QWEN3_06B));
  });
  const config = (over: Record<string, unknown> = {}) =>
    validateConfig({
      name: 'd',
      model: { path: join(tmp, 'q06'), maxSeqLen: 128 },
      task: { name: 'sst2', train: 'a.tsv', dev: 'b.tsv' },
      corpus: { paths: ['c.txt'], seqLen: 128, maxTokens: 1000 },
      optim: { batchSize: 8 },
      ...over,
    });

  it('lists the embedding [V, C] as the largest tensor of Qwen3-0.6B at 8 x 128 (622 MB)', () => {
    const shape = readModelShape(join(tmp, 'q06')).shape as ModelShape;
    const t = stageTensors(config(), 'teacher', shape);
    expect(t[0]?.shape).to.deep.equal([151936, 1024]);
    expect(t[0]?.bytes).to.equal(622_329_856);
    expect(t.map((x) => x.bytes)).to.deep.equal([...t.map((x) => x.bytes)].sort((a, b) => b - a));
    // The loss's logit chunk follows optim.lossChunkRows (auto: 64 MiB blocks = 110 rows at this vocabulary).
    const chunk = stageTensors(config({ optim: { batchSize: 8, lossChunkRows: 512 } }), 'continual-pretrain', shape).find((x) =>
      x.name.includes('loss logits'),
    );
    expect(chunk?.shape).to.deep.equal([512, 151936]);
  });

  it('refuses the Qwen3-0.6B shape on a lavapipe-sized binding limit, naming tensor, limit and adapter', () => {
    let err: unknown = null;
    try {
      checkDeviceLimits(config(), ['teacher'], LAVAPIPE, 'llvmpipe (test)');
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(DeviceLimitError);
    const d = err as DeviceLimitError;
    expect(d.code).to.equal('E_DEVICE_LIMIT');
    expect(d.limit).to.equal('maxStorageBufferBindingSize');
    expect(d.limitBytes).to.equal(128 * MiB);
    expect(d.bytes).to.equal(622_329_856);
    expect(d.message).to.match(/stage 'teacher': model\.embed_tokens\.weight .*\[151936, 1024\] is 593\.5 MiB, more than the 128\.0 MiB .*llvmpipe \(test\)/);
    expect(d.hint).to.match(/--backend native/);
  });

  it('passes the same run on a 2 GiB binding limit, and refuses an oversized loss chunk there with its knob', () => {
    expect(() => checkDeviceLimits(config(), ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'], DESKTOP, 'gpu')).to.not.throw();
    // 4,096 rows x 151,936 x 4 bytes = 2.3 GiB: a continual-pretrain logit chunk over the limit.
    expect(() => checkDeviceLimits(config({ optim: { batchSize: 32, lossChunkRows: 4096 } }), ['continual-pretrain'], DESKTOP, 'gpu')).to.throw(
      DeviceLimitError,
      /loss logits.*\[4096, 151936\]/,
    );
    try {
      checkDeviceLimits(config({ optim: { batchSize: 32, lossChunkRows: 4096 } }), ['continual-pretrain'], DESKTOP, 'gpu');
    } catch (e) {
      expect((e as DeviceLimitError).hint).to.match(/optim\.lossChunkRows/);
    }
  });

  it('eval: the weights alone are checked (Qwen3-0.6B refused at 128 MiB, passed at 2 GiB)', () => {
    expect(() => checkWeightsOnDevice(join(tmp, 'q06'), LAVAPIPE, 'llvmpipe (test)')).to.throw(DeviceLimitError, /embedding \[151936, 1024\] is 593\.5 MiB/);
    expect(() => checkWeightsOnDevice(join(tmp, 'q06'), DESKTOP, 'gpu')).to.not.throw();
    expect(() => checkWeightsOnDevice('models/stories260K', LAVAPIPE, 'l')).to.not.throw();
  });

  it('the bundled tiny model passes on lavapipe; an unreadable model path passes (the loader reports it)', () => {
    expect(() => checkDeviceLimits(config({ model: { path: 'models/stories260K', maxSeqLen: 64 } }), ['teacher', 'distill'], LAVAPIPE, 'l')).to.not.throw();
    expect(() => checkDeviceLimits(config({ model: { path: join(tmp, 'missing'), maxSeqLen: 64 } }), ['teacher'], LAVAPIPE, 'l')).to.not.throw();
  });
});
