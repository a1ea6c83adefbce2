/**
 * The real-size run of issue 13, as a new user would do it, measured: a Qwen3-0.6B-shaped model (random
 * weights from `bitdistill init`: no pretrained weights can be downloaded here), all four stages of
 * configs/sst2.yaml at batch 8 x 128 tokens, a checkpoint every step, a `kill -9` in the middle of a stage and
 * the resume, then `export --ternary` of the distill output and `eval` of the export on the kernels runtime.
 * Writes bench/results/real-size-<shape>-<date>.{json,md}: wall time, tokens/s and peak RSS per stage.
 *
 *   node --import tsx scripts/experiments/real-size.ts [--shape qwen3-0.6b] [--steps 3] [--work DIR]
 *       [--kill-stage bitnet-sft] [--out bench/results] [--resume] [-- extra.key=value ...]
 * (--resume: only the resume and what follows, for a run whose kill phase already happened)
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { cpuInfo } from '../bench/machine.ts';

interface Options {
  shape: string;
  steps: number;
  work: string;
  killStage: string;
  out: string;
  /** Skip the fresh start and the kill: resume the runs folder a previous invocation killed (killed.json). */
  resume: boolean;
  extra: string[];
}

function parse(argv: string[]): Options {
  const o: Options = { shape: 'qwen3-0.6b', steps: 3, work: 'runs/real-size', killStage: 'bitnet-sft', out: 'bench/results', resume: false, extra: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      o.extra = argv.slice(i + 1);
      break;
    }
    if (a === '--resume') {
      o.resume = true;
      continue;
    }
    const v = argv[++i] as string;
    if (a === '--shape') o.shape = v;
    else if (a === '--steps') o.steps = Number(v);
    else if (a === '--work') o.work = v;
    else if (a === '--kill-stage') o.killStage = v;
    else if (a === '--out') o.out = v;
    else throw new Error(`real-size: unknown option ${a}`);
  }
  return o;
}

const BIN = ['packages/cli/bin/bitdistill.js'];

/** Runs a command under /usr/bin/time; returns its exit status, wall seconds and peak RSS. */
function timed(args: string[], log: string): { status: number | null; seconds: number; maxRssBytes: number | null } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB=%M', process.execPath, ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  writeFileSync(log, `${r.stdout}\n${r.stderr}`);
  const m = /MAXRSS_KB=(\d+)/.exec(r.stderr);
  return { status: r.status, seconds: (performance.now() - t0) / 1000, maxRssBytes: m === null ? null : Number(m[1]) * 1024 };
}

function readJsonl(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function killDuringStage(args: string[], stageDir: string, log: string): Promise<{ killedAfterSeconds: number; checkpointsBefore: string[] }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  // Wait for the stage's first checkpoint, then kill -9 while it computes the next step.
  const ckpts = join(stageDir, 'checkpoints');
  const has = (): string[] => (existsSync(ckpts) ? readdirSync(ckpts).filter((n) => n.startsWith('step-')) : []);
  for (;;) {
    await new Promise((r) => setTimeout(r, 2000));
    if (child.exitCode !== null) throw new Error(`real-size: the run ended before a checkpoint of ${stageDir} appeared; see ${log}`);
    if (has().length > 0) break;
  }
  await new Promise((r) => setTimeout(r, 5000));
  const before = has();
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  writeFileSync(log, text);
  return { killedAfterSeconds: (performance.now() - t0) / 1000, checkpointsBefore: before };
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const model = join(o.work, `${o.shape}-init`);
  const runs = join(o.work, 'runs');
  mkdirSync(o.work, { recursive: true });
  const steps: Record<string, unknown>[] = [];
  if (!existsSync(join(model, 'model.safetensors'))) {
    const r = timed(
      [...BIN, 'init', '--arch', `configs/arch/${o.shape}.json`, '--tokenizer', 'models/qwen3-tokenizer', '--out', model],
      join(o.work, 'init.log'),
    );
    steps.push({ step: 'init', ...r });
    if (r.status !== 0) throw new Error(`init failed, see ${o.work}/init.log`);
  }
  const name = `sst2-${o.shape}`;
  if (!o.resume) rmSync(join(runs, name), { recursive: true, force: true });
  const train = [
    ...BIN,
    'train',
    '--config',
    'configs/sst2.yaml',
    `model.path=${model}`,
    'model.maxSeqLen=128',
    `optim.maxSteps=${o.steps}`,
    'optim.gradAccum=1',
    'optim.batchSize=8',
    'task.devLimit=16',
    'eval.limit=16',
    'corpus.seqLen=128',
    'checkpoint.every=1',
    'checkpoint.keepLast=1',
    `name=${name}`,
    `outputDir=${runs}`,
    ...o.extra,
  ];
  console.error(`real-size: ${train.join(' ')}`);
  const killedFile = join(o.work, 'killed.json');
  if (!o.resume) {
    // A fresh start in a reused --work folder (its runs were removed above): the logs of an earlier invocation would
    // mix into the per-stage wall times (a stage's start from this run, its done line from the old one).
    for (const f of readdirSync(o.work)) if (f === 'killed.json' || f === 'train-killed.log' || f.startsWith('train-resumed-')) rmSync(join(o.work, f));
  }
  const killed = o.resume
    ? (JSON.parse(readFileSync(killedFile, 'utf8')) as Awaited<ReturnType<typeof killDuringStage>>)
    : await killDuringStage(train, join(runs, name, o.killStage), join(o.work, 'train-killed.log'));
  writeFileSync(killedFile, `${JSON.stringify(killed)}\n`);
  console.error(`killed -9 during ${o.killStage} after ${killed.killedAfterSeconds.toFixed(0)} s (checkpoints ${killed.checkpointsBefore.join(', ')})`);
  let n = 1;
  while (existsSync(join(o.work, `train-resumed-${n}.log`))) n++;
  const resumedLogFile = join(o.work, `train-resumed-${n}.log`);
  const resumed = timed(train, resumedLogFile);
  steps.push({ step: 'train (resumed after kill -9)', ...resumed });
  if (resumed.status !== 0) throw new Error(`the resumed run failed, see ${resumedLogFile}`);
  const resumedLog = readdirSync(o.work)
    .filter((f) => f.startsWith('train-resumed-'))
    .map((f) => readFileSync(join(o.work, f), 'utf8'))
    .join('\n');
  const resumeLine = resumedLog.split('\n').find((l) => /resum/i.test(l) && l.includes(o.killStage)) ?? null;

  const exportDir = join(o.work, 'export');
  rmSync(exportDir, { recursive: true, force: true });
  const ex = timed([...BIN, 'export', '--ternary', '--from', join(runs, name, 'distill'), '--out', exportDir], join(o.work, 'export.log'));
  steps.push({ step: 'export --ternary', ...ex });
  const ev = timed([...BIN, 'eval', '--model', exportDir, '--task', 'sst2', '--limit', '64', '--json'], join(o.work, 'eval.log'));
  steps.push({ step: 'eval (kernels runtime, 64 dev examples)', ...ev });

  // Each stage's wall time from its start and done log lines (the killed run's and the resumed run's logs).
  const logLines = readdirSync(o.work)
    .filter((f) => f === 'train-killed.log' || f.startsWith('train-resumed-'))
    .sort()
    .map((f) => join(o.work, f))
    .filter((f) => existsSync(f))
    .flatMap((f) => readFileSync(f, 'utf8').split('\n'))
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { time?: number; msg?: string });
  const stageSeconds = (stage: string): number | null => {
    const start = logLines.find((l) => l.msg === `stage ${stage}: start`)?.time;
    const done = logLines.find((l) => l.msg === `stage ${stage}: done`)?.time;
    return start === undefined || done === undefined ? null : (done - start) / 1000;
  };
  const summary = JSON.parse(readFileSync(join(runs, name, 'summary.json'), 'utf8')) as unknown;
  const stages = ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'].map((stage) => {
    const metrics = readJsonl(join(runs, name, stage, 'metrics.jsonl'));
    const train = metrics.filter((m) => m['type'] === 'train');
    const tps = train.map((m) => m['tokensPerSecond'] as number).filter((v) => typeof v === 'number');
    const mem = metrics.filter((m) => m['type'] === 'memory' || m['peakRssMiB'] !== undefined).pop() ?? null;
    const seconds = stageSeconds(stage);
    return {
      stage,
      seconds,
      tokensPerSecondWall: seconds === null ? null : (o.steps * 8 * 128) / seconds,
      tokensPerSecond: tps,
      lastLoss: train.at(-1)?.['loss'] ?? null,
      memory: mem,
    };
  });
  const date = new Date().toISOString();
  const cpuModel = cpuInfo().name;
  const result = {
    date,
    shape: o.shape,
    command: `node --import tsx scripts/experiments/real-size.ts ${process.argv.slice(2).join(' ')}`,
    train: train.join(' '),
    machine: { cpuModel, cpus: cpus().length, memTotalBytes: totalmem() },
    killed,
    resumeLine,
    steps,
    stages,
    summary,
    evalOutput:
      readFileSync(join(o.work, 'eval.log'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .pop() ?? null,
  };
  mkdirSync(o.out, { recursive: true });
  const base = join(o.out, `real-size-${o.shape}-${date.slice(0, 10)}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const gib = (b: number | null | undefined): string => (b === null || b === undefined ? 'n/a' : (b / 2 ** 30).toFixed(2));
  const md = [
    `# Real-size run: ${o.shape}, ${date.slice(0, 10)}`,
    '',
    `Command: \`${result.command}\`  `,
    `CPU: ${cpuModel}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB  `,
    `Training command (run, killed with SIGKILL during \`${o.killStage}\` after ${killed.killedAfterSeconds.toFixed(0)} s with checkpoints ${killed.checkpointsBefore.join(', ') || 'none'}, then run again): \`node ${train.join(' ')}\`  `,
    `Resume: ${resumeLine === null ? 'no resume line found in the log' : `\`${resumeLine.slice(0, 300)}\``}`,
    '',
    '| step | exit | wall | peak RSS (process) |',
    '|---|---:|---:|---:|',
    ...steps.map(
      (s) => `| ${String(s['step'])} | ${String(s['status'])} | ${(s['seconds'] as number).toFixed(0)} s | ${gib(s['maxRssBytes'] as number | null)} GiB |`,
    ),
    '',
    `Per stage: wall time from its start to its done log line (${o.steps} steps of 8 x 128 tokens, a checkpoint after every step, dev eval, final/; for a stage killed and resumed, start of the first run to done of the second, the kill and restart included), training tokens over that wall time, the loop's own tokens/s over its log window, and the stage's peak RSS (VmHWM reset at the stage start).`,
    '',
    '| stage | wall | tokens / wall s | loop tokens/s | last loss | peak RSS |',
    '|---|---:|---:|---:|---:|---:|',
    ...stages.map(
      (s) =>
        `| ${s.stage} | ${s.seconds === null ? 'n/a' : `${s.seconds.toFixed(0)} s`} | ${s.tokensPerSecondWall === null ? 'n/a' : s.tokensPerSecondWall.toFixed(1)} | ${s.tokensPerSecond.join(', ')} | ${String(s.lastLoss)} | ${s.memory === null ? 'n/a' : `${((s.memory['peakRssMiB'] as number) / 1024).toFixed(2)} GiB`} |`,
    ),
    '',
    `Eval of the export: ${result.evalOutput ?? 'n/a'}`,
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  console.error(md);
}

await main();
