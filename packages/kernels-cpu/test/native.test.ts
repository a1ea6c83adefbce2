import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { allocAligned, availableIsas, initKernels, ISAS, nativeStatus, repackTernary, setIsa, setThreads } from '../src/index.ts';
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
