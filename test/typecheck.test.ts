/**
 * Strict TypeScript, enforced: tsx strips types without checking them, so without this test a type error would
 * only show in an editor. `tsc -b` over every package (sources and tests) and `tsc -p tsconfig.scripts.json` over
 * test/ and scripts/, with tsconfig.base.json's strict settings, must report nothing (`npm run typecheck` runs
 * both); a control file shows those settings do reject what they should.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [tsc, ...args, '--pretty', 'false'], { encoding: 'utf8', cwd: resolve('.') });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('type checking (tsc -b, strict)', function () {
  this.timeout(300_000);

  it('every package, sources and tests, type-checks with no error', () => {
    const r = run(['-b', 'tsconfig.json']);
    expect(r.out.trim(), 'tsc -b tsconfig.json').to.equal('');
    expect(r.status).to.equal(0);
  });

  it('the top-level tests and scripts (benchmarks, experiments, fuzzing) type-check with no error', () => {
    const r = run(['-p', 'tsconfig.scripts.json']);
    expect(r.out.trim(), 'tsc -p tsconfig.scripts.json').to.equal('');
    expect(r.status).to.equal(0);
  });

  it('control: the shared strict settings reject an unchecked index and an implicit any', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bd-tsc-'));
    writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n');
    writeFileSync(join(dir, 'bad.ts'), 'const a: number[] = [];\nexport const b: number = a[0];\nexport function f(x) {\n  return x;\n}\n');
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: resolve('tsconfig.base.json'),
        compilerOptions: { composite: false, declaration: false, emitDeclarationOnly: false, noEmit: true, types: [] },
        files: ['bad.ts'],
      }),
    );
    const r = run(['-p', join(dir, 'tsconfig.json')]);
    expect(r.status).to.not.equal(0);
    expect(r.out).to.match(/bad\.ts\(2,14\): error TS2322: Type 'number \| undefined' is not assignable to type 'number'/);
    expect(r.out).to.match(/bad\.ts\(3,\d+\): error TS7006: Parameter 'x' implicitly has an 'any' type/);
  });
});
