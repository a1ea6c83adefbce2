// Bundles the bitdistill command (packages/cli/src/main.ts and every @bitdistill/* package it imports) into
// packages/cli/dist/ with esbuild, so that the command runs on plain Node: without it, every process first
// starts tsx's loader (a second V8 isolate for the module hooks, plus esbuild's JS API: 34 MiB of resident memory
// before any work, measured on Node 20). Third-party packages stay external (resolved from node_modules as usual);
// imports a command makes lazily (tfjs, the trainer) become separate chunks loaded only when that command runs.
// Run by `npm install` / `npm ci` (the root package's prepare script) and `npm run build`; bin/bitdistill.js
// falls back to the TypeScript sources through tsx whenever a source is newer than the bundle.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'packages', 'cli', 'dist');
rmSync(outdir, { recursive: true, force: true });
const t0 = performance.now();
await build({
  entryPoints: [join(root, 'packages', 'cli', 'src', 'main.ts')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  plugins: [
    {
      name: 'workspace-only',
      setup(b) {
        // Bundle our own packages; leave every other bare import (tfjs, yargs, pino, ...) to Node's resolution.
        b.onResolve({ filter: /^[^./]/ }, (a) => (a.path.startsWith('@bitdistill/') ? undefined : { external: true }));
      },
    },
  ],
});
console.log(`bitdistill CLI bundled into ${outdir} in ${Math.round(performance.now() - t0)} ms`);
