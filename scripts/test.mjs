// Runs every mocha test (packages/*/test/**/*.test.ts, test/**/*.test.ts) in one process through tsx, and
// ends with the plain line "N passed, N failed" that CI reads. Usage: npm test [-- --grep PATTERN] [FILES...]
import Mocha from 'mocha';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function findTests(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
let grep;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--grep') grep = args[++i];
  else files.push(args[i]);
}
if (files.length === 0) {
  for (const pkg of readdirSync('packages').sort()) findTests(join('packages', pkg, 'test'), files);
  findTests('test', files);
}

const mocha = new Mocha({ reporter: 'spec', timeout: 600_000, ...(grep ? { grep } : {}) });
for (const f of files) mocha.addFile(f);
await mocha.loadFilesAsync();
const runner = mocha.run();
let passed = 0;
let failed = 0;
runner.on('pass', () => passed++);
runner.on('fail', () => failed++);
runner.on('end', () => {
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
});
