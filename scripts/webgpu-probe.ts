/**
 * `node --import tsx scripts/webgpu-probe.ts`: is there a WebGPU adapter here (a software one counts)? Prints it
 * (or the reason there is none) and exits 0 if there is, 1 if not. .ci/run uses it to decide whether to install
 * Mesa's lavapipe before the tests; the tests themselves ask the same question (lookForAdapter) to skip.
 */
import { lookForAdapter } from '@bitdistill/backend';

const look = lookForAdapter();
if (look.found) {
  console.log(`WebGPU adapter: ${look.description} (vendor ${look.vendor}, architecture ${look.architecture}${look.software ? ', software' : ''})`);
} else {
  console.log(look.reason);
  process.exitCode = 1;
}
