// Builds the Node-API addon with node-gyp; run by `npm install` (the package's install script) and by
// `npm run build -w @bitdistill/kernels-cpu` (--force). A failed build never fails the install: the package
// then runs its TypeScript kernels and says so through the logger. An unchanged source tree (same
// sources, Node version and architecture as the last successful build) is not rebuilt.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = join(pkgDir, 'build', 'Release', 'bitdistill_kernels.node');
const stampPath = join(pkgDir, 'build', 'source.sha256');
const force = process.argv.includes('--force');

function sourceHash() {
  const h = createHash('sha256');
  h.update(`${process.version} ${process.arch} ${process.platform}\n`);
  const files = [
    'binding.gyp',
    ...readdirSync(join(pkgDir, 'native'))
      .sort()
      .map((f) => join('native', f)),
  ];
  for (const f of files) h.update(`${f}\n`).update(readFileSync(join(pkgDir, f)));
  return h.digest('hex');
}

// npm sets npm_config_node_gyp for scripts it runs; otherwise use a node-gyp from node_modules or npm's own.
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  try {
    candidates.push(createRequire(join(pkgDir, 'package.json')).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((p) => p !== undefined && p !== '' && existsSync(p));
}

function loads() {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addonPath)}).info()`], { stdio: 'pipe' });
  return r.status === 0 ? null : r.stderr.toString().trim().split('\n').slice(0, 3).join(' ');
}

function warn(msg) {
  console.error(`@bitdistill/kernels-cpu: ${msg}`);
  console.error('@bitdistill/kernels-cpu: continuing without the native addon; the TypeScript kernels will be used (slow).');
}

const hash = sourceHash();
if (!force && existsSync(addonPath) && existsSync(stampPath) && readFileSync(stampPath, 'utf8') === hash && loads() === null) {
  console.log('@bitdistill/kernels-cpu: native addon up to date');
  process.exit(0);
}

const gyp = findNodeGyp();
if (gyp === undefined) {
  warn('node-gyp not found (it ships with npm)');
  process.exit(0);
}
// Offline machines: build against the headers installed next to this node (e.g. /usr/include/node) instead
// of letting node-gyp download them, unless npm already names a nodedir.
const args = [gyp, 'rebuild', '--jobs=max'];
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' });
if (r.status !== 0) {
  warn(`node-gyp rebuild failed (exit ${r.status ?? r.signal}); a C++17 compiler, make and python3 are needed`);
  process.exit(0);
}
const err = loads();
if (err !== null) {
  warn(`the built addon does not load: ${err}`);
  process.exit(0);
}
writeFileSync(stampPath, hash);
console.log('@bitdistill/kernels-cpu: native addon built');
