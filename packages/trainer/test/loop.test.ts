import { expect } from 'chai';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { loadModel, type Decoder } from '@bitdistill/model';
import { runStage, saveCheckpoint, type LoopSettings, type StageSpec, type MicroBatch, type TrainerState } from '@bitdistill/trainer';
import { latestCheckpoint, readTrainerState } from '../src/checkpoint.ts';

const settings = (over: Partial<LoopSettings> = {}): LoopSettings => ({
  optim: { lr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupRatio: 0, schedule: 'constant', decayRatio: 0.2, gradClip: 1, gradAccum: 1 },
  totalSteps: 6,
  logEvery: 1,
  checkpointEvery: 2,
  keepLast: 2,
  evalEvery: 0,
  averaging: { kind: 'none', emaDecay: 0.9, lawaK: 2 },
  seed: 0,
  ...over,
});

function spec(
  model: Decoder,
  dir: string,
  loss: (step: number) => { total: tf.Scalar; terms: Record<string, tf.Scalar> },
): StageSpec<MicroBatch & { i: number }> {
  let i = 0;
  return {
    stage: 'test',
    stageDir: dir,
    model,
    nextBatch: () => ({ tokens: 8, i: i++ }),
    getCursor: () => ({ i }),
    setCursor: (c) => {
      i = (c as { i: number }).i;
    },
    epoch: () => 0,
    loss: (b) => loss(b.i),
    resolvedYaml: 'name: test\n',
    tokenizerFrom: 'test/fixtures/tiny-qwen3',
    bitdistill: {},
  };
}

describe('training loop', () => {
  let root = '';
  before(async () => {
    await initBackend('cpu');
    root = mkdtempSync(join(tmpdir(), 'bitdistill-loop-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const lmLoss = (model: Decoder) => () => {
    const { logits } = model.forward(tf.tensor2d([[1, 5, 9, 13]], [1, 4], 'int32'));
    const ce = tf.mean(tf.square(logits)) as tf.Scalar;
    return { total: ce, terms: { ce } };
  };

  it('a NaN loss stops the stage naming the term and the step; the last good checkpoint stays', async () => {
    const dir = join(root, 'nan');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const good = lmLoss(model);
    const s = spec(model, dir, (i) => {
      if (i < 4) return good();
      const bad = tf.scalar(Number.NaN);
      const ce = good().total;
      return { total: tf.add(ce, bad) as tf.Scalar, terms: { ce, attnKd: bad } };
    });
    tf.dispose(good().total); // the decoder's first forward builds its cached tables (RoPE, mask): not the stage's
    const tensorsBefore = tf.memory().numTensors;
    try {
      await runStage(s, settings({ averaging: { kind: 'ema', emaDecay: 0.9, lawaK: 2 } }));
      expect.fail('should throw');
    } catch (e) {
      expect((e as Error).message).to.match(/at step 5 \(attnKd=NaN\)/);
    }
    // The failed stage released its optimizer moments and EMA weights.
    expect(tf.memory().numTensors).to.equal(tensorsBefore);
    const latest = latestCheckpoint(dir);
    expect(latest).to.not.equal(null);
    expect(readTrainerState(latest as string).step).to.equal(4);
    expect(existsSync(join(dir, 'final'))).to.equal(false);
    model.dispose();
  });

  it('an update that overflows the weights (finite loss) writes no checkpoint: E_NUMERIC naming the step, latest unchanged', async () => {
    const dir = join(root, 'overflow');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const s = spec(model, dir, lmLoss(model));
    // lr 1e39 with AdamW's normalised step: every updated weight leaves float32's range at the first update.
    const o = settings().optim;
    try {
      await runStage(s, settings({ optim: { ...o, lr: 1e39, gradClip: 0 }, checkpointEvery: 1 }));
      expect.fail('should throw');
    } catch (e) {
      expect((e as { code?: string }).code).to.equal('E_NUMERIC');
      expect((e as Error).message).to.match(/^test: after step 1, \d+ parameter\(s\) and \d+ optimizer tensor\(s\) hold NaN or infinity/);
    }
    expect(latestCheckpoint(dir)).to.equal(null);
    model.dispose();
  });

  it('a non-finite gradient with a finite loss stops before the update, naming the step; the last checkpoint stays', async () => {
    const dir = join(root, 'nangrad');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const good = lmLoss(model);
    const p0 = [...model.params.values()][0] as tf.Variable;
    const s = spec(model, dir, (i) => {
      const { total, terms } = good();
      // d/dp sqrt(0 * p) = 0.5 / sqrt(0) * 0 = NaN, while the value is 0.
      return i < 4 ? { total, terms } : { total: tf.add(total, tf.sum(tf.sqrt(tf.mul(p0, 0)))) as tf.Scalar, terms };
    });
    try {
      await runStage(s, settings());
      expect.fail('should throw');
    } catch (e) {
      expect((e as { code?: string }).code).to.equal('E_NUMERIC');
      expect((e as Error).message).to.match(/the gradient norm became NaN at step 5/);
    }
    expect(readTrainerState(latestCheckpoint(dir) as string).step).to.equal(4);
    model.dispose();
  });

  it('an allocation failure mid-stage is a typed E_MEMORY error naming the stage, step and knobs; the last checkpoint stays', async () => {
    const dir = join(root, 'oom');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const good = lmLoss(model);
    const s = spec(model, dir, (i) => {
      // What V8 throws when an ArrayBuffer cannot be allocated (a tensor's storage on the native engine).
      if (i === 4) throw new RangeError('Array buffer allocation failed');
      return good();
    });
    try {
      await runStage(s, settings());
      expect.fail('should throw');
    } catch (e) {
      expect((e as { code?: string }).code).to.equal('E_MEMORY');
      expect((e as Error).message).to.match(/^test: out of memory at step 5/);
      expect((e as { hint?: string }).hint).to.match(/optim\.batchSize.*optim\.recompute/);
    }
    const latest = latestCheckpoint(dir);
    expect(readTrainerState(latest as string).step).to.equal(4);
    model.dispose();
  });

  it('warns once when a weighted loss term is more than 20x the CE at the first step, naming the term', async () => {
    const dir = join(root, 'weights');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const good = lmLoss(model);
    const warned: string[] = [];
    const noop = () => {};
    const logger = { trace: noop, debug: noop, info: noop, error: noop, warn: (_o: unknown, msg?: string) => void warned.push(String(msg)) };
    const s = {
      ...spec(model, dir, () => {
        const { total: ce } = good();
        const attnKd = tf.mul(ce, 1e-3) as tf.Scalar; // x 1e5 below: 100x the CE
        const logitKd = tf.mul(ce, 1e-2) as tf.Scalar; // x 10 below: 0.1x the CE
        return { total: tf.addN([ce, tf.mul(attnKd, 1e5), tf.mul(logitKd, 10)]) as tf.Scalar, terms: { ce, attnKd, logitKd } };
      }),
      termWeights: { attnKd: 1e5, logitKd: 10 },
    };
    await runStage(s, settings({ totalSteps: 3, checkpointEvery: 100 }), { logger });
    expect(warned).to.have.length(1);
    expect(warned[0]).to.match(/^attnKd x 100000 is 100x the CE term at the first step/);
    model.dispose();
  });

  it('a checkpoint write that fails (disk full) leaves the previous checkpoint intact and `latest` on it', async () => {
    const dir = join(root, 'full');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const state: TrainerState = {
      stage: 't',
      step: 1,
      totalSteps: 9,
      epoch: 0,
      dataCursor: null,
      rng: { s: 1, spare: null },
      bestMetric: null,
      bestStep: null,
      tokensSeen: 0,
      elapsedSeconds: 0,
    };
    const content = { model, optimizer: new Map(), state, resolvedYaml: '', tokenizerFrom: 'test/fixtures/tiny-qwen3', bitdistill: {} };
    await saveCheckpoint(dir, content, 2);
    const before = readFileSync(join(dir, 'checkpoints', 'step-000001', 'model.safetensors'));
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    try {
      await saveCheckpoint(dir, { ...content, state: { ...state, step: 2 } }, 2, [], (f) => {
        if (f === 'optimizer.safetensors') throw enospc;
      });
      expect.fail('should throw');
    } catch (e) {
      expect((e as Error).message).to.match(/disk full while writing checkpoint/);
    }
    expect(readFileSync(join(dir, 'latest'), 'utf8').trim()).to.equal('checkpoints/step-000001');
    expect(readFileSync(join(dir, 'checkpoints', 'step-000001', 'model.safetensors')).equals(before)).to.equal(true);
    expect(readdirSync(join(dir, 'checkpoints'))).to.deep.equal(['step-000001']);
    const reloaded = loadModel(join(dir, 'checkpoints', 'step-000001'));
    expect(reloaded.model.numParameters()).to.equal(model.numParameters());
    reloaded.model.dispose();
    model.dispose();
  });

  it('keeps the last N checkpoints, writes final/, and LAWA averages the last k checkpoints', async () => {
    const dir = join(root, 'lawa');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const res = await runStage(spec(model, dir, lmLoss(model)), settings({ averaging: { kind: 'lawa', emaDecay: 0.9, lawaK: 3 } }));
    expect(res.state.step).to.equal(6);
    expect(readdirSync(join(dir, 'checkpoints')).sort()).to.deep.equal(['step-000002', 'step-000004', 'step-000006']);
    // final = mean of the three kept checkpoints
    const a = loadModel(join(dir, 'checkpoints', 'step-000002')).model;
    const b = loadModel(join(dir, 'checkpoints', 'step-000004')).model;
    const c = loadModel(join(dir, 'checkpoints', 'step-000006')).model;
    const f = loadModel(join(dir, 'final')).model;
    const name = 'model.layers.0.mlp.up_proj.weight';
    const mean = tf.tidy(() => tf.div(tf.addN([a.param(name), b.param(name), c.param(name)]), 3).dataSync());
    const got = f.param(name).dataSync();
    for (let i = 0; i < mean.length; i += 97) expect(got[i]).to.be.closeTo(mean[i] as number, 1e-6);
    for (const m of [a, b, c, f, model]) m.dispose();
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.filter((l) => l['step'] !== undefined).map((l) => l['step'])).to.deep.equal([1, 2, 3, 4, 5, 6]);
    for (const k of ['loss', 'ce', 'lr', 'gradNorm', 'tokensPerSecond', 'elapsed', 'epoch']) expect(lines[0]).to.have.property(k);
  });

  it('resumes over a metrics.jsonl whose last line was torn by a kill, dropping it and the records past the checkpoint', async () => {
    const dir = join(root, 'torn');
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    await runStage(spec(model, dir, lmLoss(model)), settings({ totalSteps: 4 }));
    rmSync(join(dir, 'final'), { recursive: true });
    rmSync(join(dir, 'checkpoints', 'step-000004'), { recursive: true, force: true });
    expect(existsSync(join(dir, 'checkpoints', 'step-000002'))).to.equal(true);
    writeFileSync(join(dir, 'latest'), 'checkpoints/step-000002\n');
    // A record of step 3 and 4, then half a line, as a kill -9 during an append leaves it.
    appendFileSync(join(dir, 'metrics.jsonl'), '{"type":"train","step":5,"lo');
    const warned: string[] = [];
    const noop = () => {};
    const logger = { trace: noop, debug: noop, info: noop, error: noop, warn: (_o: unknown, msg?: string) => void warned.push(String(msg)) };
    const res = await runStage(spec(model, dir, lmLoss(model)), settings({ totalSteps: 4 }), { logger });
    expect(res.state.step).to.equal(4);
    expect(warned.some((w) => /dropped 1 line\(s\) that were not whole JSON records/.test(w))).to.equal(true);
    const steps = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { step?: number }).step)
      .filter((x) => x !== undefined);
    expect(steps).to.deep.equal([1, 2, 3, 4]);
    model.dispose();
  });

  it('gradient accumulation over 2 micro-batches equals one step on their mean loss', async () => {
    const ids = [tf.tensor2d([[1, 5, 9, 13]], [1, 4], 'int32'), tf.tensor2d([[2, 7, 3, 100]], [1, 4], 'int32')];
    const lossOf = (m: Decoder, i: number) => tf.mean(tf.square(m.forward(ids[i] as tf.Tensor2D).logits)) as tf.Scalar;
    const a = loadModel('test/fixtures/tiny-qwen3').model;
    const accum = spec(a, join(root, 'accum'), (i) => {
      const ce = lossOf(a, i % 2);
      return { total: ce, terms: { ce } };
    });
    // eps = 1 makes the AdamW step depend on the gradient's scale (Adam alone is scale-invariant), so a sum
    // instead of a mean would be caught.
    await runStage(accum, settings({ totalSteps: 1, optim: { ...settings().optim, gradAccum: 2, gradClip: 0, eps: 1 } }));
    const b = loadModel('test/fixtures/tiny-qwen3').model;
    const whole = spec(b, join(root, 'whole'), () => {
      const ce = tf.div(tf.add(lossOf(b, 0), lossOf(b, 1)), 2) as tf.Scalar;
      return { total: ce, terms: { ce } };
    });
    await runStage(whole, settings({ totalSteps: 1, optim: { ...settings().optim, gradClip: 0, eps: 1 } }));
    for (const name of ['model.layers.1.mlp.down_proj.weight', 'model.embed_tokens.weight', 'model.layers.0.self_attn.q_norm.weight']) {
      const x = a.param(name).dataSync();
      const y = b.param(name).dataSync();
      let max = 0;
      for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs((x[i] as number) - (y[i] as number)));
      expect(max, name).to.be.lessThan(1e-6);
    }
    a.dispose();
    b.dispose();
    tf.dispose(ids);
  });

  it('EMA: the final weights are the exponential moving average of the trajectory', async () => {
    const plain = loadModel('test/fixtures/tiny-qwen3').model;
    await runStage(spec(plain, join(root, 'ema-plain'), lmLoss(plain)), settings({ totalSteps: 2, checkpointEvery: 1 }));
    const w1 = loadModel(join(root, 'ema-plain', 'checkpoints', 'step-000001')).model;
    const ema = loadModel('test/fixtures/tiny-qwen3').model;
    await runStage(
      spec(ema, join(root, 'ema'), lmLoss(ema)),
      settings({ totalSteps: 2, checkpointEvery: 1, averaging: { kind: 'ema', emaDecay: 0.5, lawaK: 2 } }),
    );
    const name = 'model.layers.1.self_attn.o_proj.weight';
    const want = tf.tidy(() => tf.add(tf.mul(w1.param(name), 0.5), tf.mul(plain.param(name), 0.5)).dataSync());
    const got = ema.param(name).dataSync();
    for (let i = 0; i < want.length; i += 13) expect(got[i]).to.be.closeTo(want[i] as number, 1e-6);
    for (const m of [plain, w1, ema]) m.dispose();
  });

  it('tracks the best evaluation and keeps its checkpoint out of pruning', async () => {
    const { model } = loadModel('test/fixtures/tiny-qwen3');
    const values = [0.5, 0.9, 0.6, 0.7];
    let k = 0;
    const s = { ...spec(model, join(root, 'best'), lmLoss(model)), evaluate: async () => ({ metric: 'accuracy', value: values[k++] ?? 0, examples: 10 }) };
    const res = await runStage(s, settings({ totalSteps: 8, checkpointEvery: 100, keepLast: 1, evalEvery: 2 }));
    expect(res.state.bestMetric).to.equal(0.9);
    expect(res.state.bestStep).to.equal(4);
    expect(readdirSync(join(root, 'best', 'checkpoints'))).to.include('step-000004');
    model.dispose();
  });
});
