// The WebGPU backend (issue 14) against stock tfjs cpu: the project's custom ops (their op-by-op twins: no
// custom kernel is registered for webgpu) and a whole distill step, in a child process
// (fixtures/webgpu-ops.ts) so that Dawn never loads in the test runner. Runs wherever a WebGPU adapter exists,
// a software one included (lavapipe: .ci/run installs it); elsewhere the suite says why it skips.
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { lookForAdapter, type BackendInfo } from '@bitdistill/backend';
import { isSoftwareAdapter } from '../src/webgpu.ts';

interface Thrown {
  code: string | null;
  message: string;
}
interface ChildReport {
  info: BackendInfo;
  relErr: Record<string, number>;
  kernels: string[];
  adapterLogged: { backend: string; adapter?: { description: string; limits: Record<string, number> } } | null;
  cachedRead: number[];
  syncRead: Thrown | null;
  uploadedHostRead: number[];
  overLimit: Thrown | null;
  maxBinding: number;
}

describe('webgpu: adapter classification', () => {
  it('lavapipe, SwiftShader and WARP are software adapters; a discrete GPU is not', () => {
    const lavapipe = {
      vendor: 'mesa',
      architecture: 'software',
      device: 'llvmpipe-llvm-15-0-6-256-bits-',
      description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1',
      isFallbackAdapter: true,
    };
    expect(isSoftwareAdapter(lavapipe)).to.equal(true);
    expect(isSoftwareAdapter({ ...lavapipe, isFallbackAdapter: false })).to.equal(true); // by its name alone
    expect(isSoftwareAdapter({ vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader Device (Subzero)' })).to.equal(true);
    expect(isSoftwareAdapter({ vendor: 'microsoft', architecture: '', device: '', description: 'Microsoft Basic Render Driver' })).to.equal(true);
    expect(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' })).to.equal(false);
    expect(isSoftwareAdapter({ vendor: 'apple', architecture: 'metal-3', device: '', description: 'Apple M2 Max' })).to.equal(false);
  });
});

describe('webgpu backend (child process) against stock tfjs cpu', function () {
  this.timeout(300_000);
  let report: ChildReport;

  before(function () {
    const look = lookForAdapter();
    if (!look.found) {
      console.log(`      skipped: ${look.reason}; see README "WebGPU"`);
      this.skip();
    }
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'packages/backend/test/fixtures/webgpu-ops.ts'], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildReport;
  });

  it('logs the adapter (vendor, architecture, description, limits) with the backend choice', () => {
    expect(report.info.name).to.equal('webgpu');
    expect(report.info.webgpu).to.not.equal(null);
    const a = report.info.webgpu as NonNullable<BackendInfo['webgpu']>;
    expect(a.description).to.be.a('string').and.not.equal('');
    expect(a.limits.maxStorageBufferBindingSize).to.be.greaterThan(0);
    expect(a.limits.maxBufferSize).to.be.at.least(a.limits.maxStorageBufferBindingSize);
    expect(report.adapterLogged?.backend).to.equal('webgpu');
    expect(report.adapterLogged?.adapter?.description).to.equal(a.description);
  });

  it('RMSNorm, gather + UnsortedSegmentSum, integer BitLinear (STE) and SwiGLU: values and gradients within 1e-5 relative', () => {
    // float32 on both sides; only summation order differs (measured on lavapipe: 2e-7 at most; the gather and
    // its segment sum are exact).
    const ops = Object.entries(report.relErr).filter(([k]) => !k.startsWith('distillStep.'));
    expect(ops.length).to.equal(11);
    for (const [k, e] of ops) expect(e, k).to.be.below(1e-5);
  });

  it('a distill step of a ternary student (attention, head + CE + logit KD, relation KD): loss terms and every gradient within 1e-4', () => {
    // One forward + backward from the same weights: integer BitLinear is exact, so a ternary code could flip only
    // on an activation scale that differs in its last bit (measured: none; every gradient within 1.1e-6).
    const step = Object.entries(report.relErr).filter(([k]) => k.startsWith('distillStep.'));
    expect(step.map(([k]) => k)).to.include.members(['distillStep.loss', 'distillStep.ce', 'distillStep.logitKd', 'distillStep.attnKd']);
    expect(step.filter(([k]) => k.startsWith('distillStep.grad.')).length).to.be.greaterThan(30);
    for (const [k, e] of step) expect(e, k).to.be.below(1e-4);
  });

  it('no custom kernel runs on webgpu: every op is a stock tfjs kernel', () => {
    expect(report.kernels).to.include.members(['BatchMatMul', 'UnsortedSegmentSum', 'Round', 'Softmax']);
    expect(report.kernels.filter((k) => k.startsWith('BitDistill'))).to.deep.equal([]);
  });

  it('a synchronous read of GPU data is a typed error; data already read back, or uploaded from the host, reads', () => {
    expect(report.cachedRead).to.deep.equal(new Array(16).fill(4));
    expect(report.uploadedHostRead).to.deep.equal([3, 1, 2]); // labels a loss checks on the host after a GPU op used them
    expect(report.syncRead?.code).to.equal('E_UNSUPPORTED');
    expect(report.syncRead?.message).to.match(/synchronous read .* WebGPU device/);
  });

  it('an op over maxStorageBufferBindingSize is a DeviceLimitError, not a silently dropped dispatch', function () {
    if (report.overLimit === null) {
      console.log(`      skipped: this adapter's binding limit (${report.maxBinding} bytes) is too large to exceed here`);
      this.skip();
    }
    expect(report.overLimit.code).to.equal('E_DEVICE_LIMIT');
    expect(report.overLimit.message).to.match(/maxStorageBufferBindingSize|one buffer binding/);
  });
});
