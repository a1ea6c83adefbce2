// Training survives SIGKILL at a random moment: resuming from the latest checkpoint ends with final weights
// bit-identical to an uninterrupted run (cpu backend: deterministic kernels). SIGTERM saves a checkpoint first.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = 'packages/cli/bin/bitdistill.js';
const CONFIG = 'test/configs/resume-tiny.yaml';

function train(out: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'train', '--config', CONFIG, `outputDir=${out}`, '--log-level', 'warn'], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

function finalWeights(out: string): Buffer {
  return readFileSync(join(out, 'resume-tiny', 'teacher', 'final', 'model.safetensors'));
}

/** Start a run, wait until its first checkpoint exists plus a random delay, then send `signal`. */
async function startAndKill(out: string, signal: NodeJS.Signals, seed: number): Promise<number | null> {
  const child = spawn(process.execPath, [BIN, 'train', '--config', CONFIG, `outputDir=${out}`, '--log-level', 'warn'], { stdio: 'ignore' });
  const latest = join(out, 'resume-tiny', 'teacher', 'latest');
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  while (!existsSync(latest) && !done) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 10 + (seed % 7) * 15));
  child.kill(signal);
  return exited;
}

describe('kill and resume (real CLI, cpu backend)', function () {
  this.timeout(300_000);
  const root = mkdtempSync(join(tmpdir(), 'bitdistill-resume-'));
  const a = join(root, 'a');
  before(() => {
    const r = train(a);
    expect(r.status, r.stderr).to.equal(0);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('an uninterrupted run and a SIGKILLed-then-resumed run end with identical weights', async () => {
    const b = join(root, 'b');
    const seed = Math.floor(Math.random() * 1000);
    await startAndKill(b, 'SIGKILL', seed);
    const resumed = train(b);
    expect(resumed.status, resumed.stderr).to.equal(0);
    expect(finalWeights(b).equals(finalWeights(a)), `kill seed ${seed}`).to.equal(true);
    const metrics = readFileSync(join(b, 'resume-tiny', 'teacher', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; step: number });
    expect(metrics.filter((m) => m.type === 'train').map((m) => m.step)).to.deep.equal(Array.from({ length: 24 }, (_, i) => i + 1));
  });

  it("--resume PATH continues from a given checkpoint folder (here: another run's) to the same weights", () => {
    const d = join(root, 'd');
    const ckpt = join(a, 'resume-tiny', 'teacher', 'checkpoints', 'step-000021');
    const r = spawnSync(process.execPath, [BIN, 'train', '--config', CONFIG, `outputDir=${d}`, '--resume', ckpt, '--log-level', 'warn'], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(finalWeights(d).equals(finalWeights(a))).to.equal(true);
  });

  it('SIGTERM saves a checkpoint at the current step and exits 130; the rerun finishes', async () => {
    const c = join(root, 'c');
    const code = await startAndKill(c, 'SIGTERM', 3);
    const stage = join(c, 'resume-tiny', 'teacher');
    expect(code).to.equal(130);
    const latest = readFileSync(join(stage, 'latest'), 'utf8').trim();
    const state = JSON.parse(readFileSync(join(stage, latest, 'trainer_state.json'), 'utf8')) as { step: number };
    expect(state.step).to.be.greaterThan(0);
    expect(train(c).status).to.equal(0);
    expect(finalWeights(c).equals(finalWeights(a))).to.equal(true);
  });
});
