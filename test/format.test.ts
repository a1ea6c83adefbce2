/**
 * Prettier over every TypeScript / JavaScript source, test and script (.prettierrc.json, .prettierignore), as part
 * of the suite: unformatted code fails CI. `npm run format` rewrites, `npm run format:check` prints the same list.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import * as prettier from 'prettier';

const PRETTIER_BIN = createRequire(import.meta.url).resolve('prettier/bin/prettier.cjs');

/** The globs of package.json's format:check script, so the test and the script check the same files. */
function checkedGlobs(): string[] {
  const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
  const cmd = scripts['format:check'] ?? '';
  return [...cmd.matchAll(/"([^"]+)"/g)].map((m) => m[1] as string);
}

describe('format (Prettier, .prettierrc.json)', function () {
  this.timeout(300_000);

  it('every TypeScript / JavaScript source, test and script is formatted', () => {
    const globs = checkedGlobs();
    expect(globs.length).to.be.greaterThan(2);
    const r = spawnSync(process.execPath, [PRETTIER_BIN, '--check', '--log-level', 'warn', ...globs], { encoding: 'utf8' });
    expect(r.status, `run \`npm run format\`; unformatted:\n${r.stdout}${r.stderr}`).to.equal(0);
  });

  it('control: the config rejects a mis-indented, double-quoted line and accepts its formatted form', async () => {
    const options = { ...((await prettier.resolveConfig('test/control.ts')) ?? {}), filepath: 'test/control.ts' };
    expect(await prettier.check('export const a = { b: "c" };\n', options)).to.equal(false);
    expect(await prettier.check("   export const a = { b: 'c' };\n", options)).to.equal(false);
    expect(await prettier.check("export const a = { b: 'c' };\n", options)).to.equal(true);
  });
});
