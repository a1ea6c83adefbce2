// Checkpoint integrity (issue 21): manifests with SHA-256 per file, verification before a resume, fallback from a
// corrupt latest checkpoint to the newest intact one, trainer_state schema checks, stale temporaries removed.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { isBitDistillError, type Logger } from '@bitdistill/core';
import { readSafetensors, writeSafetensors } from '@bitdistill/format';
import { loadModel, type Decoder } from '@bitdistill/model';
import { runStage, type LoopSettings, type MicroBatch, type StageSpec } from '@bitdistill/trainer';
import { fileDigest, validateTrainerState } from '../src/checkpoint.ts';

const settings = (over: Partial<LoopSettings> = {}): LoopSettings => ({
  optim: { lr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupRatio: 0, schedule: 'constant', decayRatio: 0.2, gradClip: 1, gradAccum: 1 },
  totalSteps: 6,
  logEvery: 1,
  checkpointEvery: 2,
  keepLast: 3,
  evalEvery: 0,
  averaging: { kind: 'none', emaDecay: 0.9, lawaK: 2 },
  seed: 0,
  ...over,
});

function spec(model: Decoder, dir: string): StageSpec<MicroBatch & { i: number }> {
  let i = 0;
  const ids = [
    [1, 5, 9, 13],
    [2, 7, 3, 100],
    [4, 4, 8, 15],
  ];
  return {
    stage: 'test',
    stageDir: dir,
    model,
    nextBatch: () => ({ tokens: 4, i: i++ }),
    getCursor: () => ({ i }),
    setCursor: (c) => {
      i = (c as { i: number }).i;
    },
    epoch: () => 0,
    loss: (b) => {
      const { logits } = model.forward(tf.tensor2d([ids[b.i % 3] as number[]], [1, 4], 'int32'));
      const ce = tf.mean(tf.square(logits)) as tf.Scalar;
      return { total: ce, terms: { ce } };
    },
    resolvedYaml: 'name: test\n',
    tokenizerFrom: 'test/fixtures/tiny-qwen3',
    bitdistill: {},
  };
}

const TINY = 'test/fixtures/tiny-qwen3';
const ck = (dir: string, step: number) => join(dir, 'checkpoints', `step-${String(step).padStart(6, '0')}`);

/** Flip one bit in the tensor data region of a safetensors file (after the header), as a failing disk would. */
function flipDataBit(file: string, at = 0.5): void {
  const b = readFileSync(file);
  const start = 8 + Number(b.readBigUInt64LE(0));
  const i = start + Math.floor((b.length - start) * at);
  b[i] = (b[i] as number) ^ 0x10;
  writeFileSync(file, b);
}

function capture(): { logger: Logger; warned: string[] } {
  const warned: string[] = [];
  const noop = () => {};
  return {
    warned,
    logger: { trace: noop, debug: noop, info: noop, error: noop, warn: (_o: unknown, msg?: string) => void warned.push(String(msg)) } as unknown as Logger,
  };
}

async function weights(model: Decoder): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of model.params) out.set(k, (await v.data()) as Float32Array);
  return out;
}

function expectSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...a.keys()]).to.deep.equal([...b.keys()]);
  for (const [k, x] of a) expect(Buffer.from((b.get(k) as Float32Array).buffer).equals(Buffer.from(x.buffer)), k).to.equal(true);
}

/** Run a stage to its end, then undo its last checkpoint's `latest` so that a rerun resumes from `resumeStep`. */
async function trainedThenRewound(dir: string, resumeStep: number): Promise<void> {
  const { model } = loadModel(TINY);
  await runStage(spec(model, dir), settings());
  model.dispose();
  rmSync(join(dir, 'final'), { recursive: true });
  for (const n of readdirSync(join(dir, 'checkpoints'))) if (Number(n.slice(5)) > resumeStep) rmSync(join(dir, 'checkpoints', n), { recursive: true });
  writeFileSync(join(dir, 'latest'), `checkpoints/step-${String(resumeStep).padStart(6, '0')}\n`);
}

async function expectFormatError(p: Promise<unknown>, pattern: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    expect(isBitDistillError(e), String(e)).to.equal(true);
    expect((e as { code: string }).code).to.equal('E_FORMAT');
    expect((e as Error).message).to.match(pattern);
    return e as Error;
  }
  throw new Error('expected an E_FORMAT error');
}

describe('checkpoint integrity', () => {
  let root = '';
  let reference = new Map<string, Float32Array>();
  before(async () => {
    await initBackend('cpu');
    root = mkdtempSync(join(tmpdir(), 'bitdistill-ckpt-'));
    const { model } = loadModel(TINY);
    await runStage(spec(model, join(root, 'reference')), settings());
    reference = await weights(model);
    model.dispose();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('every checkpoint has a manifest.json with the size and SHA-256 of each of its files', () => {
    const dir = ck(join(root, 'reference'), 4);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { format: string; files: Record<string, { bytes: number; sha256: string }> };
    expect(m.format).to.equal('bitdistill-checkpoint');
    const files = readdirSync(dir)
      .filter((n) => n !== 'manifest.json')
      .sort();
    expect(Object.keys(m.files).sort()).to.deep.equal(files);
    expect(files).to.include.members(['model.safetensors', 'optimizer.safetensors', 'trainer_state.json', 'config.json']);
    // Against node's one-shot hash of the whole file (fileDigest reads in pieces).
    for (const f of files) {
      const bytes = readFileSync(join(dir, f));
      expect(m.files[f]).to.deep.equal({ bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
      expect(fileDigest(join(dir, f))).to.deep.equal(m.files[f]);
    }
  });

  it("a bit flip in the latest checkpoint's tensor data is caught; the resume falls back to the previous one and ends on the uninterrupted weights", async () => {
    const dir = join(root, 'bitflip');
    await trainedThenRewound(dir, 4);
    flipDataBit(join(ck(dir, 4), 'model.safetensors'));
    const { logger, warned } = capture();
    const { model } = loadModel(TINY);
    const res = await runStage(spec(model, dir), settings(), { logger });
    expect(res.state.step).to.equal(6);
    expect(
      warned.some((w) => /skipping checkpoint .*step-000004: .*model\.safetensors: SHA-256 .* differs from manifest\.json/.test(w)),
      warned.join('\n'),
    ).to.equal(true);
    expectSameWeights(await weights(model), reference);
    model.dispose();
    // The corrupt one is kept aside for inspection, never reused; step 4 was written again by the resumed run.
    expect(readdirSync(join(dir, 'checkpoints')).some((n) => /^step-000004\.corrupt-\d{8}T\d{6}$/.test(n))).to.equal(true);
    expect(readFileSync(join(dir, 'latest'), 'utf8').trim()).to.equal('checkpoints/step-000004');
    expect(readFileSync(join(ck(dir, 4), 'model.safetensors')).equals(readFileSync(join(ck(join(root, 'reference'), 4), 'model.safetensors')))).to.equal(true);
  });

  it('a latest checkpoint missing its optimizer file, or with a truncated one, is skipped for the newest intact one', async () => {
    for (const damage of ['missing', 'truncated'] as const) {
      const dir = join(root, `opt-${damage}`);
      await trainedThenRewound(dir, 4);
      const f = join(ck(dir, 4), 'optimizer.safetensors');
      if (damage === 'missing') rmSync(f);
      else writeFileSync(f, readFileSync(f).subarray(0, 1000));
      const { logger, warned } = capture();
      const { model } = loadModel(TINY);
      await runStage(spec(model, dir), settings(), { logger });
      expect(
        warned.some((w) =>
          (damage === 'missing' ? /optimizer\.safetensors' listed in manifest\.json is missing/ : /optimizer\.safetensors: is 1000 bytes/).test(w),
        ),
        warned.join('\n'),
      ).to.equal(true);
      expectSameWeights(await weights(model), reference);
      model.dispose();
    }
  });

  it('when no checkpoint is intact the resume stops with E_FORMAT naming each one and how to start over', async () => {
    const dir = join(root, 'all-bad');
    await trainedThenRewound(dir, 4);
    for (const s of [2, 4]) flipDataBit(join(ck(dir, s), 'optimizer.safetensors'), 0.9);
    const { model } = loadModel(TINY);
    const e = await expectFormatError(runStage(spec(model, dir), settings()), /latest: no checkpoint of this stage is intact .*step-000004.*step-000002/);
    expect((e as { hint?: string }).hint).to.match(/--resume none/);
    model.dispose();
  });

  it('an explicit --resume PATH to a corrupt checkpoint fails naming the file (no silent fallback)', async () => {
    const dir = join(root, 'explicit');
    await trainedThenRewound(dir, 4);
    flipDataBit(join(ck(dir, 4), 'model.safetensors'), 0.2);
    const { model } = loadModel(TINY);
    await expectFormatError(
      runStage(spec(model, join(root, 'explicit-target')), settings(), { resumeFrom: ck(dir, 4) }),
      /step-000004\/model\.safetensors: SHA-256/,
    );
    model.dispose();
  });

  it('a checkpoint without a manifest (older version) is still checked: a bad trainer_state or wrong-shaped moments are skipped', async () => {
    const dir = join(root, 'legacy');
    await trainedThenRewound(dir, 4);
    for (const s of [2, 4]) rmSync(join(ck(dir, s), 'manifest.json'));
    const st = JSON.parse(readFileSync(join(ck(dir, 4), 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
    delete st['dataCursor'];
    writeFileSync(join(ck(dir, 4), 'trainer_state.json'), JSON.stringify(st));
    const { logger, warned } = capture();
    const { model } = loadModel(TINY);
    await runStage(spec(model, dir), settings(), { logger });
    expect(
      warned.some((w) => /step-000004: .*trainer_state\.json: 'dataCursor' must be the data stream position, got nothing \(missing\)/.test(w)),
      warned.join('\n'),
    ).to.equal(true);
    expect(warned.some((w) => /has no manifest\.json \(written by an older version\)/.test(w))).to.equal(true);
    expectSameWeights(await weights(model), reference);
    model.dispose();
  });

  it('moments whose shapes do not fit the model are refused before anything is loaded', async () => {
    const dir = join(root, 'moments');
    await trainedThenRewound(dir, 2);
    rmSync(join(ck(dir, 2), 'manifest.json'));
    const { model } = loadModel(TINY);
    // Replace one moment with a wrong-shaped one by rewriting the optimizer file.
    const f = join(ck(dir, 2), 'optimizer.safetensors');
    const t = readSafetensors(f).tensors;
    const key = [...t.keys()].find((k) => k.startsWith('m.')) as string;
    t.set(key, { dtype: 'F32', shape: [3], data: new Float32Array(3) });
    writeSafetensors(f, t, { format: 'bitdistill-optimizer' });
    await expectFormatError(
      runStage(spec(model, dir), settings()),
      new RegExp(`no checkpoint of this stage is intact .*optimizer\\.safetensors: tensor '${key.replace(/\./g, '\\.')}' is F32 \\[3\\], expected F32 \\[`),
    );
    model.dispose();
  });

  it('trainer_state.json is schema-checked key by key', () => {
    const good = {
      stage: 's',
      step: 4,
      totalSteps: 6,
      epoch: 0,
      dataCursor: { i: 4 },
      rng: { s: 7, spare: null },
      bestMetric: null,
      bestStep: null,
      tokensSeen: 16,
      elapsedSeconds: 1.5,
    };
    expect(validateTrainerState(good, 'f.json')).to.deep.equal(good);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ step: undefined }, /'step' must be an integer between 0 and totalSteps \(6\), got nothing \(missing\)/],
      [{ step: 7 }, /'step' must be/],
      [{ step: 2.5 }, /'step' must be/],
      [{ totalSteps: -1 }, /'totalSteps' must be an integer >= 0/],
      [{ dataCursor: undefined }, /'dataCursor' must be the data stream position/],
      [{ rng: { s: -1, spare: null } }, /'rng' must be/],
      [{ rng: { s: 1 } }, /'rng' must be/],
      [{ bestStep: 5 }, /'bestStep' must be null or an integer between 0 and step \(4\)/],
      [{ bestMetric: 'x' }, /'bestMetric' must be a number or null/],
      [{ elapsedSeconds: -3 }, /'elapsedSeconds' must be a number >= 0/],
      [{ stage: '' }, /'stage' must be a stage name/],
    ];
    for (const [patch, re] of cases) {
      const st: Record<string, unknown> = { ...good, ...patch };
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete st[k];
      try {
        validateTrainerState(st, 'f.json');
        expect.fail(`accepted ${JSON.stringify(patch)}`);
      } catch (e) {
        expect((e as { code?: string }).code, String(e)).to.equal('E_FORMAT');
        expect((e as Error).message)
          .to.match(/^f\.json: /)
          .and.to.match(re);
      }
    }
    for (const raw of [null, [], 3, 'x']) expect(() => validateTrainerState(raw, 'f.json')).to.throw(/f\.json: must hold a JSON object/);
  });

  it('temporary folders of killed processes are removed when the stage starts; those of live processes stay', async () => {
    const dir = join(root, 'stale');
    await trainedThenRewound(dir, 4);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout.trim();
    const live = String(process.ppid);
    const made = [
      join(dir, 'checkpoints', `.tmp-step-000006-${dead}`),
      join(dir, 'checkpoints', `.old-step-000002-${dead}`),
      join(dir, `.tmp-final-${dead}`),
      join(dir, 'checkpoints', `.tmp-step-000008-${live}`),
    ];
    for (const m of made) {
      mkdirSync(m, { recursive: true });
      writeFileSync(join(m, 'model.safetensors'), 'partial');
    }
    writeFileSync(join(dir, `.latest.tmp-${dead}`), 'checkpoints/step-0000');
    const { logger, warned } = capture();
    const { model } = loadModel(TINY);
    await runStage(spec(model, dir), settings(), { logger });
    model.dispose();
    for (const m of made.slice(0, 3)) expect(existsSync(m), m).to.equal(false);
    expect(existsSync(join(dir, `.latest.tmp-${dead}`))).to.equal(false);
    expect(existsSync(made[3] as string)).to.equal(true);
    expect(warned.filter((w) => /^removed .*, left by a process that was killed while writing$/.test(w))).to.have.length(4);
  });
});
