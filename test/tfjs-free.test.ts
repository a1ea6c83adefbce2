// The tfjs-free wing (README "Packages", tfjs? = no; and the tfjs-free subpaths model/arch, quant/reference):
// importing any of these must not load a @tensorflow module, so that the ternary runtime, export and evaluation run without tfjs.
// Each package is imported in a fresh process whose module resolution refuses @tensorflow/* (test/support).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';

const HOOK = new URL('./support/no-tfjs.mjs', import.meta.url).pathname;

function importAlone(specifier: string): { ok: boolean; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', HOOK, '-e', `await import(${JSON.stringify(specifier)}); console.log('imported')`], { encoding: 'utf8' });
  return { ok: r.status === 0 && r.stdout.includes('imported'), out: `${r.stdout}${r.stderr}` };
}

describe('tfjs-free packages load no @tensorflow module', function () {
  this.timeout(120_000);

  for (const pkg of ['core', 'config', 'format', 'data', 'kernels-cpu', 'runtime', 'export', 'eval', 'model/arch', 'quant/reference']) {
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
