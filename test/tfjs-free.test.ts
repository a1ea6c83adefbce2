// The tfjs-free wing (README "Packages", tfjs? = no):
// importing any of these must not load a @tensorflow module, so that the ternary runtime, export and evaluation run without tfjs.
// Each package is imported in a fresh process whose module resolution refuses @tensorflow/* (test/support).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOOK = new URL('./support/no-tfjs.mjs', import.meta.url).pathname;

function importAlone(specifier: string): { ok: boolean; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', HOOK, '-e', `await import(${JSON.stringify(specifier)}); console.log('imported')`], {
    encoding: 'utf8',
  });
  return { ok: r.status === 0 && r.stdout.includes('imported'), out: `${r.stdout}${r.stderr}` };
}

describe('tfjs-free packages load no @tensorflow module', function () {
  this.timeout(120_000);

  for (const pkg of ['core', 'arch', 'config', 'format', 'data', 'kernels-cpu/runtime', 'kernels-cpu/engine', 'runtime', 'export', 'eval']) {
    it(`@bitdistill/${pkg}`, () => {
      const r = importAlone(`@bitdistill/${pkg}`);
      expect(r.ok, r.out.split('\n').find((l) => l.includes('tfjs loaded')) ?? r.out.slice(-500)).to.equal(true);
    });
  }

  it('the guard does see tfjs: @bitdistill/model (the tfjs decoder) is caught, naming the importer', () => {
    const r = importAlone('@bitdistill/model');
    expect(r.ok).to.equal(false);
    expect(r.out).to.match(/tfjs loaded: @tensorflow\/tfjs[^ ]* imported by file:\/\/.*packages\/model\/src\//);
  });
});

/** Every dependency of a workspace package, transitively (workspace packages walked, the rest listed). */
function dependencyClosure(pkg: string): Set<string> {
  const seen = new Set<string>();
  const walk = (name: string): void => {
    const json = JSON.parse(readFileSync(new URL(`../packages/${name}/package.json`, import.meta.url), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(json.dependencies ?? {})) {
      if (seen.has(dep)) continue;
      seen.add(dep);
      if (dep.startsWith('@bitdistill/')) walk(dep.slice('@bitdistill/'.length));
    }
  };
  walk(pkg);
  return seen;
}

describe('the tfjs-free wing depends only on tfjs-free packages (package.json, transitively)', () => {
  for (const pkg of ['arch', 'runtime', 'export', 'eval']) {
    it(`@bitdistill/${pkg}`, () => {
      const deps = [...dependencyClosure(pkg)];
      expect(
        deps.filter((d) => d.startsWith('@tensorflow/')),
        `${pkg} pulls in: ${deps.join(', ')}`,
      ).to.deep.equal([]);
      expect(
        deps.filter((d) => ['@bitdistill/model', '@bitdistill/quant', '@bitdistill/backend', '@bitdistill/trainer', '@bitdistill/losses'].includes(d)),
      ).to.deep.equal([]);
    });
  }

  it('the walk does see tfjs: @bitdistill/quant pulls in @tensorflow/tfjs', () => {
    expect([...dependencyClosure('quant')]).to.include('@tensorflow/tfjs');
  });
});

describe('the CLI runs an export, and soups checkpoints, without loading tfjs', function () {
  this.timeout(120_000);
  const cli = (args: string[]) =>
    spawnSync(process.execPath, ['--import', HOOK, 'packages/cli/bin/bitdistill.js', ...args], {
      encoding: 'utf8',
      env: { ...process.env, BITDISTILL_CLI_FROM_SOURCE: '1' },
    });

  it('generate on an export (kernels runtime)', () => {
    const r = cli(['generate', '--model', 'test/fixtures/tiny-bitnet-hf', '--prompt', 'Once upon', '--max-new-tokens', '3', '--log-level', 'warn']);
    expect(r.status, `${r.stdout}${r.stderr}`.slice(-800)).to.equal(0);
    expect(r.stdout).to.match(/^Once upon/);
  });

  it('eval on an export (kernels runtime)', () => {
    const r = cli([
      'eval',
      '--model',
      'test/fixtures/tiny-bitnet-hf',
      '--task',
      'sst2',
      '--template-from',
      'builtin',
      '--limit',
      '4',
      '--json',
      '--log-level',
      'warn',
    ]);
    expect(r.status, `${r.stdout}${r.stderr}`.slice(-800)).to.equal(0);
    expect((JSON.parse(r.stdout.trim().split('\n').pop() as string) as { examples: number }).examples).to.equal(4);
  });

  it('soup of two checkpoints (safetensors only)', () => {
    const out = mkdtempSync(join(tmpdir(), 'bitdistill-soup-'));
    try {
      const r = cli(['soup', '--model', 'models/stories260K', '--model', 'models/stories260K', '--out', join(out, 'soup'), '--log-level', 'warn']);
      expect(r.status, `${r.stdout}${r.stderr}`.slice(-800)).to.equal(0);
      expect(r.stdout).to.match(/^souped 2 checkpoints/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('the guard does see tfjs: `info` (the tfjs decoder) is caught', () => {
    const r = cli(['info', '--model', 'test/fixtures/tiny-bitnet-hf', '--log-level', 'warn']);
    expect(r.status).to.not.equal(0);
    expect(`${r.stdout}${r.stderr}`).to.match(/tfjs loaded: @tensorflow\/tfjs/);
  });
});
