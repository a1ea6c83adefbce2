// Without the addon (BITDISTILL_NATIVE=0 stands in for a missing or broken build) the same code runs on stock
// wasm, BackendInfo says so, and the logger hears it once.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import type { BackendInfo } from '@bitdistill/backend';

interface ChildReport {
  first: BackendInfo;
  second: BackendInfo;
  backend: string;
  product: number[];
  grad: number[];
  records: { level: string; msg: string }[];
}

function runChild(env: Record<string, string>): ChildReport {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'packages/backend/test/fixtures/init-wasm.ts'], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).to.equal(0);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildReport;
}

describe('backend without the native addon', function () {
  this.timeout(60_000);

  it('BITDISTILL_NATIVE=0: stock wasm, reported in BackendInfo, one warning, same results', () => {
    const r = runChild({ BITDISTILL_NATIVE: '0' });
    expect(r.backend).to.equal('wasm');
    expect(r.first.provider).to.equal('@tensorflow/tfjs-backend-wasm');
    expect(r.first.nativeKernels?.active).to.equal(false);
    expect(r.first.nativeKernels?.reason).to.match(/BITDISTILL_NATIVE=0/);
    const warnings = r.records.filter((x) => x.level === 'warn');
    expect(warnings.length).to.equal(1);
    expect(warnings[0]?.msg).to.match(/native kernels unavailable.*stock tfjs wasm/);
    expect(r.product).to.deep.equal([4, 5, 10, 11]);
    expect(r.grad).to.deep.equal([1, 1, 2, 1, 1, 2]);
  });

  it('with the addon: native kernels active, no warning, same results', function () {
    const r = runChild({});
    if (r.first.nativeKernels?.active !== true) this.skip();
    expect(r.first.provider).to.equal('@tensorflow/tfjs-backend-wasm + @bitdistill/kernels-cpu');
    expect(r.second.nativeKernels?.kernels).to.include('BatchMatMul');
    expect(r.records.filter((x) => x.level === 'warn')).to.deep.equal([]);
    expect(r.product).to.deep.equal([4, 5, 10, 11]);
    expect(r.grad).to.deep.equal([1, 1, 2, 1, 1, 2]);
  });
});
