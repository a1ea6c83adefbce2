#!/usr/bin/env node
// The bitdistill command. Sources are TypeScript run through tsx, so `npm install` is the only set-up step.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
