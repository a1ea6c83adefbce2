import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import {
  allocAligned,
  allocHugePages,
  availableIsas,
  HugePageArena,
  initKernels,
  ISAS,
  nativeStatus,
  repackTernary,
  setIsa,
  setThreads,
} from '../src/index.ts';
import { nativeAddon } from '../src/native.ts';
import { ArgumentError, UnsupportedError } from '@bitdistill/core';

const INDEX = new URL('../src/index.ts', import.meta.url).href;

/** Runs a snippet in a fresh Node process (tsx) with extra environment; returns its stdout parsed as JSON. */
function runChild(env: Record<string, string>, body: string): unknown {
  const code = `import * as k from ${JSON.stringify(INDEX)};\n${body}`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

// A logger that records what it is told, to check the "says so once" contract in a child process.
const RECORDING_LOGGER = `
const lines = [];
const rec = (level) => (a, b) => lines.push([level, typeof a === 'string' ? a : b]);
const logger = { trace: rec('trace'), debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };`;

describe('native addon loading and dispatch', () => {
  const status = nativeStatus();

  it('reports its status', () => {
    if (status.native) {
      expect(ISAS).to.include(status.isa);
      expect(status.threads).to.be.at.least(1);
      expect(availableIsas()).to.include('scalar');
      expect(availableIsas().at(-1)).to.equal(status.isa);
    } else {
      expect(status.isa).to.equal('typescript');
      expect(status.reason).to.be.a('string');
    }
  });

  it('rejects an ISA the CPU lacks and a bad thread count', function () {
    if (!status.native) this.skip();
    const missing = ISAS.filter((i) => !availableIsas().includes(i));
    for (const isa of missing) expect(() => setIsa(isa)).to.throw(UnsupportedError);
    expect(() => setThreads(0)).to.throw(ArgumentError);
    expect(() => setThreads(1.5)).to.throw(ArgumentError);
  });

  it('puts repacked weights and aligned buffers on a 64-byte boundary', function () {
    const addon = nativeAddon();
    if (addon === null) this.skip();
    for (const n of [1, 63, 64, 1000, 4097]) expect(addon.misalignment(allocAligned(n)), `${n} bytes`).to.equal(0);
    expect(addon.misalignment(repackTernary(new Uint8Array(3 * 5).fill(0x55), 9, 5).data)).to.equal(0);
  });

  it('puts large weights on 2 MiB boundaries (huge pages) and carves an arena into aligned, disjoint, zeroed slices', function () {
    const addon = nativeAddon();
    if (addon === null) this.skip();
    const big = allocHugePages(9 << 20);
    expect(big.length).to.equal(9 << 20);
    expect(addon.adviseHugePages(big), 'offset of its first 2 MiB boundary').to.equal(0);
    const small = allocHugePages(1000);
    expect(addon.misalignment(small)).to.equal(0);
    const arena = new HugePageArena();
    const parts = [1000, 64, 3 << 20, 5, 12 << 20, 777].map((n) => arena.take(n));
    parts.forEach((p, i) => {
      expect(p.length).to.equal([1000, 64, 3 << 20, 5, 12 << 20, 777][i]);
      expect(addon.misalignment(p)).to.equal(0);
      expect(p.every((v) => v === 0)).to.equal(true);
      p.fill(i + 1);
    });
    parts.forEach((p, i) =>
      expect(
        p.every((v) => v === i + 1),
        `slice ${i} untouched by the others`,
      ).to.equal(true),
    );
  });

  it('checks sizes with overflow-safe arithmetic: extreme dimensions are typed E_ARGUMENT errors naming the kernel, not crashes', function () {
    const addon = nativeAddon();
    if (addon === null) this.skip();
    const big = 2 ** 31;
    const f = (n: number) => new Float32Array(n);
    const cases: [string, () => unknown, RegExp][] = [
      ['gemmBatchF32', () => addon.gemmBatchF32(f(4), f(4), f(16), big, 1, big, false, false, new Int32Array(4), new Int32Array(4)), /c too small/],
      ['gemmBatchF32', () => addon.gemmBatchF32(f(4), f(4), f(4), 1, big, 1, false, false, Int32Array.of(big - 1), Int32Array.of(0)), /aidx out of range/],
      ['gemmF32', () => addon.gemmF32(f(4), f(4), f(4), big, big, big, false, false), /array too small/],
      ['attentionF32', () => addon.attentionF32(f(8), f(8), f(8), f(8), big, 2 ** 16, 1, 2 ** 16, big, 0, 1), /array too small/],
      ['attentionTrainF32', () => addon.attentionTrainF32(f(8), f(8), f(8), f(8), f(8), big, big, big, 1, 2, 1, f(8)), /shapes do not match/],
      ['relationKdF32', () => addon.relationKdF32(f(8), big, big, f(8), big, big, big, big, 1, false, null), /shapes do not match/],
      ['headLossF32', () => addon.headLossF32(f(8), null, big, big, null, null, null, 1, 1, 1, null, new Float64Array(2)), /shapes do not match/],
      ['repackTernary', () => addon.repackTernary(new Uint8Array(4), big, big, new Uint8Array(4)), /hf is not/],
      ['reduceF32', () => addon.reduceF32(0, f(4), f(4), big, big, big), /array too small/],
      ['bitLinearF32', () => addon.bitLinearF32(f(4), f(4), big, big, big, false, f(4)), /x or w too small/],
      ['matvecF32', () => addon.matvecF32(f(4), f(4), f(4), big, big, 1), /array too small/],
    ];
    for (const [fn, call, re] of cases) {
      try {
        call();
        expect.fail(`${fn} accepted extreme sizes`);
      } catch (e) {
        expect(e, `${fn}: ${String(e)}`).to.be.instanceOf(ArgumentError);
        expect((e as ArgumentError).code).to.equal('E_ARGUMENT');
        expect((e as Error).message)
          .to.match(new RegExp(`^kernels-cpu native ${fn}: `))
          .and.to.match(re);
      }
    }
  });

  it('initKernels applies options and returns the status', function () {
    if (!status.native) this.skip();
    try {
      expect(initKernels({ isa: 'scalar', threads: 1 })).to.deep.include({ native: true, isa: 'scalar', threads: 1 });
    } finally {
      setIsa(status.isa as (typeof ISAS)[number]);
      setThreads(status.threads);
    }
  });

  it('falls back to the TypeScript kernels with BITDISTILL_NATIVE=0 and says so once', () => {
    const got = runChild(
      { BITDISTILL_NATIVE: '0' },
      `${RECORDING_LOGGER}
const s1 = k.initKernels({ logger });
k.initKernels({ logger });
const w = k.repackTernary(new Uint8Array([0b10100001, 0b00011000, 0b10010000, 0b00001010]), 8, 2);
const y = k.ternaryMatVec(w, new Int8Array([3, -5]));
console.log(JSON.stringify({ s1, lines, y: [...y] }));`,
    ) as { s1: { native: boolean; isa: string; reason: string }; lines: [string, string][]; y: number[] };
    expect(got.s1).to.deep.include({ native: false, isa: 'typescript' });
    expect(got.s1.reason).to.match(/BITDISTILL_NATIVE=0/);
    expect(got.lines).to.have.length(1);
    expect(got.lines[0]?.[0]).to.equal('warn');
    expect(got.lines[0]?.[1]).to.match(/TypeScript kernels/);
    expect(got.y).to.deep.equal([5, -8, -8, -8, 3, 5, 8, 8]);
  });

  it('honours BITDISTILL_ISA and BITDISTILL_THREADS, and warns about an ISA it cannot run', function () {
    if (!status.native) this.skip();
    const forced = runChild({ BITDISTILL_ISA: 'scalar', BITDISTILL_THREADS: '3' }, 'console.log(JSON.stringify(k.nativeStatus()));');
    expect(forced).to.deep.equal({ native: true, isa: 'scalar', threads: 3 });
    const bad = runChild(
      { BITDISTILL_ISA: 'avx9000' },
      `${RECORDING_LOGGER}
const s = k.initKernels({ logger });
console.log(JSON.stringify({ s, lines }));`,
    ) as { s: { isa: string }; lines: [string, string][] };
    expect(bad.s.isa).to.equal(status.isa);
    expect(bad.lines.map((l) => l[0])).to.deep.equal(['warn', 'debug']);
    expect(bad.lines[0]?.[1]).to.match(/BITDISTILL_ISA=avx9000 is not available/);
  });
});
