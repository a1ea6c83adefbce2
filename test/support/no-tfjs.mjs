// node --import tsx --import ./test/support/no-tfjs.mjs ...: installs no-tfjs-hook.mjs for the process.
import { register } from 'node:module';
register(new URL('./no-tfjs-hook.mjs', import.meta.url));
