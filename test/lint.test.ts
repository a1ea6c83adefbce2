/**
 * ESLint over every TypeScript source, test and script (eslint.config.js: @eslint/js and typescript-eslint
 * recommended), as part of the suite: a lint error fails CI. `npm run lint` prints the same findings.
 */
import { expect } from 'chai';
import { ESLint } from 'eslint';
import { resolve } from 'node:path';

const LINTED = ['packages/*/src/**/*.ts', 'packages/*/test/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts'];

describe('lint (ESLint, eslint.config.js)', function () {
  this.timeout(300_000);
  const eslint = new ESLint({ cwd: resolve('.') });

  it('every TypeScript source, test and script is clean', async () => {
    const results = await eslint.lintFiles(LINTED);
    expect(results.length).to.be.greaterThan(200); // the globs found the project
    const problems = results.flatMap((r) => r.messages.map((m) => `${r.filePath}:${m.line}:${m.column} ${m.ruleId ?? ''} ${m.message}`));
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('control: the config flags an unused binding and an empty block', async () => {
    const [r] = await eslint.lintText('const unused = 1;\nif (Math.random() > 2) {}\nexport {};\n', { filePath: resolve('test/control.ts') });
    expect(r?.messages.map((m) => m.ruleId)).to.have.members(['@typescript-eslint/no-unused-vars', 'no-empty']);
  });
});
