// The f16 KV cache option: half the cache bytes, logits close to the exact f32 cache's on a ternary fixture, and
// a clear error for an unknown mode. (The kernel's numerics are tested in kernels-cpu's decode-ops test.)
import { expect } from 'chai';
import { ArgumentError } from '@bitdistill/core';
import { initKernels } from '@bitdistill/kernels-cpu/runtime';
import { TernaryRuntime, type KvCacheMode } from '../src/index.ts';

const FIXTURE = 'test/fixtures/tiny-bitnet-hf';

describe('runtime KV cache modes', () => {
  before(() => initKernels());
  const ids = Array.from({ length: 40 }, (_, i) => 1 + ((i * 97) % 500));

  it('f16 holds the cache as binary16 in half the bytes of f32, and says so in info', () => {
    const f32 = TernaryRuntime.load(FIXTURE, { kvCache: 'f32' });
    const f16 = TernaryRuntime.load(FIXTURE, { kvCache: 'f16' });
    expect(f32.info.kvCache).to.equal('f32');
    expect(f16.info.kvCache).to.equal('f16');
    const a = f32.newCache(64);
    const b = f16.newCache(64);
    expect(b.mode).to.equal('f16');
    expect(b.k[0]).to.be.instanceOf(Uint16Array);
    expect((b.k[0] as Uint16Array).byteLength * 2).to.equal((a.k[0] as Float32Array).byteLength);
  });

  it('f16 logits stay within 2% of the logit range of the exact cache, with the same argmax at >= 90% of positions', () => {
    const f32 = TernaryRuntime.load(FIXTURE, { kvCache: 'f32' });
    const f16 = TernaryRuntime.load(FIXTURE, { kvCache: 'f16' });
    const V = f32.config.vocabSize;
    const la = f32.forward(ids, { allPositions: true });
    const lb = f16.forward(ids, { allPositions: true });
    let maxDiff = 0;
    let range = 0;
    let same = 0;
    for (let t = 0; t < ids.length; t++) {
      let ia = 0;
      let ib = 0;
      for (let i = 0; i < V; i++) {
        const x = la[t * V + i] as number;
        const y = lb[t * V + i] as number;
        maxDiff = Math.max(maxDiff, Math.abs(x - y));
        range = Math.max(range, Math.abs(x));
        if (x > (la[t * V + ia] as number)) ia = i;
        if (y > (lb[t * V + ib] as number)) ib = i;
      }
      if (ia === ib) same++;
    }
    expect(maxDiff).to.be.greaterThan(0); // the rounding is really there
    expect(maxDiff / range).to.be.below(0.02);
    expect(same / ids.length).to.be.at.least(0.9);
    // generate() reuses the runtime's cache: its first token is the argmax of a fresh f16 prefill's last logits.
    const last = f16.forward(ids.slice(0, 20));
    let best = 0;
    for (let i = 1; i < V; i++) if ((last[i] as number) > (last[best] as number)) best = i;
    const g = f16.generate(ids.slice(0, 20), 5, null);
    expect(g.ids.length).to.equal(5);
    expect(g.ids[0]).to.equal(best);
  });

  it('refuses an unknown mode with the choices', () => {
    expect(() => TernaryRuntime.load(FIXTURE, { kvCache: 'f8' as KvCacheMode })).to.throw(ArgumentError, /kvCache must be one of f16, f32/);
  });
});
