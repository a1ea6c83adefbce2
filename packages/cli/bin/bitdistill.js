#!/usr/bin/env node
// The bitdistill command. It runs the bundle that `npm install` builds (packages/cli/dist, scripts/build-cli.mjs:
// plain Node, no TypeScript loader in the process) when the bundle is newer than every source it was built from;
// otherwise, or with BITDISTILL_CLI_FROM_SOURCE=1, the TypeScript sources through tsx. Editing a source needs no
// rebuild: the command sees the bundle is stale and runs the sources.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = new URL('../dist/main.js', import.meta.url);
const packages = fileURLToPath(new URL('../../', import.meta.url));

/** The newest modification time of the workspace's sources and package manifests. */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'types' && e.name !== 'dist') walk(`${dir}/${e.name}`);
      } else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(`${dir}/${e.name}`).mtimeMs);
    }
  };
  for (const p of readdirSync(packages)) {
    if (existsSync(`${packages}/${p}/src`)) walk(`${packages}/${p}/src`);
    if (existsSync(`${packages}/${p}/package.json`)) newest = Math.max(newest, statSync(`${packages}/${p}/package.json`).mtimeMs);
  }
  return newest;
}

const bundlePath = fileURLToPath(bundle);
if (process.env.BITDISTILL_CLI_FROM_SOURCE !== '1' && existsSync(bundlePath) && statSync(bundlePath).mtimeMs >= newestSource()) {
  await import(bundle.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
