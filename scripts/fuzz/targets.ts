/**
 * The readers the fuzz campaign attacks, each with its seed files (real files shipped in the repo, or exports made
 * from a seeded model at setup) and a plausibility check for a read that succeeds. A case mutates one file of one
 * seed and points the reader at it; the outcome is a typed project error, a plausible load, or a defect: another
 * exception, an implausible load ("garbage accepted"), a hang or a crash (scripts/fuzz/index.ts watches those).
 */
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@bitdistill/backend';
import { Rng } from '@bitdistill/core';
import { loadConfig } from '@bitdistill/config';
import { CorpusStream, getTask, loadTokenizer, readExamples, type Tokenizer } from '@bitdistill/data';
import { ggmlTensorBytes, parseLlama2c, parseSafetensors, readGguf } from '@bitdistill/format';
import { initDecoder, loadModel, saveModel } from '@bitdistill/model';
import { prepareStudent } from '@bitdistill/quant';
import { exportGguf, exportTernary } from '@bitdistill/export';
import { TernaryRuntime } from '@bitdistill/runtime';
import { readOptimizerTensors, saveCheckpoint, verifyCheckpoint, type CheckpointExpectation, type TrainerState } from '@bitdistill/trainer';
import { TQ_LLAMA } from '../../packages/format/test/fixtures.ts';

/** A read that succeeded but returned something no valid file could give. */
export class Garbage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Garbage';
  }
}

export interface SeedFile {
  /** Path inside the case folder. */
  rel: string;
  bytes: Uint8Array;
  kind: 'binary' | 'text';
  /** Relative chance that this file is the one mutated. */
  weight: number;
}

export interface Seed {
  label: string;
  files: SeedFile[];
  /** What the reader is pointed at, inside the case folder ('' = the folder itself). */
  entry: string;
}

export interface Target {
  name: string;
  /** What is read, for the report. */
  reader: string;
  seeds: Seed[];
  /** Read `path`; throws Garbage when the result is implausible. */
  run(path: string): Promise<void>;
}

const ROOT = process.cwd();
const read = (p: string): Uint8Array => new Uint8Array(readFileSync(join(ROOT, p)));
const file = (rel: string, bytes: Uint8Array, kind: SeedFile['kind'], weight = 1): SeedFile => ({ rel, bytes, kind, weight });
const folder = (dir: string, kinds: Record<string, readonly [SeedFile['kind'], number]>): SeedFile[] =>
  readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isFile())
    .sort()
    .map((n) => file(n, new Uint8Array(readFileSync(join(dir, n))), kinds[n]?.[0] ?? (n.endsWith('.json') ? 'text' : 'binary'), kinds[n]?.[1] ?? 0));

const SAMPLE = 'Hello world, the 123 quick brown foxes! héllo 🙂 <|im_end|>';

function checkTokenizer(tok: Tokenizer, where: string): void {
  if (!Number.isSafeInteger(tok.vocabSize) || tok.vocabSize < 1) throw new Garbage(`${where}: vocabSize ${tok.vocabSize}`);
  const ids = tok.encode(SAMPLE);
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Garbage(`${where}: encode gave id ${id} outside [0, ${tok.vocabSize})`);
  if (typeof tok.decode(ids) !== 'string') throw new Garbage(`${where}: decode did not give a string`);
}

function checkFinite(a: ArrayLike<number>, where: string): void {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i] as number)) throw new Garbage(`${where}: non-finite value at ${i}`);
}

function checkRuntime(rt: TernaryRuntime, where: string): void {
  checkTokenizer(rt.tokenizer, where);
  const ids = rt.tokenizer.encode('Review: a fine film').slice(0, 16);
  const logits = rt.forward(ids.length > 0 ? ids : [1]);
  if (logits.length !== rt.config.vocabSize) throw new Garbage(`${where}: ${logits.length} logits for a ${rt.config.vocabSize}-token vocabulary`);
  checkFinite(logits, `${where}: logits`);
}

async function checkExamples(path: string, task: string): Promise<void> {
  const spec = getTask(task);
  const examples = await readExamples(path, spec);
  for (const [i, ex] of examples.entries()) {
    for (const f of spec.fields) if (typeof ex.fields[f] !== 'string') throw new Garbage(`example ${i}: field '${f}' is ${typeof ex.fields[f]}`);
    if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= spec.labelNames.length) throw new Garbage(`example ${i}: label ${ex.label}`);
  }
}

const LLAMA = { ...TQ_LLAMA, max_position_embeddings: 128 };
/** Qwen3-shaped: per-head q/k norms and an untied lm_head (the safetensors export's other branches). */
const QWEN3 = { ...LLAMA, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', rms_norm_eps: 1e-6, tie_word_embeddings: false };

async function student(config: Record<string, unknown>, dir: string, subln: 'standard' | 'allnorm'): Promise<string> {
  const model = initDecoder(config, 3, 0.05);
  prepareStudent(model, { subln, weightQuant: 'absmean' });
  await saveModel(model, dir, { tokenizerFrom: join(ROOT, 'models/stories260K'), bitdistill: { task: 'sst2' } });
  model.dispose();
  return dir;
}

/**
 * Tiny ternary students (256 wide so TQ blocks fit): a Qwen3-shaped allnorm one exported as a safetensors folder,
 * and a Llama-shaped one exported as a folder and as TQ2_0 / TQ1_0 GGUF files.
 */
async function makeExports(work: string): Promise<{ qwen: string; llama: string; tq2: string; tq1: string }> {
  const q = await student(QWEN3, join(work, 'qwen3-student'), 'allnorm');
  const l = await student(LLAMA, join(work, 'llama-student'), 'standard');
  const out = {
    qwen: join(work, 'qwen3-export'),
    llama: join(work, 'llama-export'),
    tq2: join(work, 'student-tq2_0.gguf'),
    tq1: join(work, 'student-tq1_0.gguf'),
  };
  exportTernary({ from: q, out: out.qwen });
  exportTernary({ from: l, out: out.llama });
  exportGguf({ from: l, out: out.tq2 });
  exportGguf({ from: l, out: out.tq1, type: 'TQ1_0' });
  return out;
}

/** A training checkpoint of the tiny test model with AdamW moments for a few parameters. */
async function makeCheckpoint(work: string): Promise<{ dir: string; expect: CheckpointExpectation }> {
  const { model } = loadModel(join(ROOT, 'test/fixtures/tiny-qwen3'));
  const optimizer = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
  const rng = new Rng(9);
  for (const [name, v] of [...model.params].slice(0, 4)) {
    for (const k of ['m', 'v'])
      optimizer.set(`${k}.${name}`, { dtype: 'F32', shape: [...v.shape], data: Float32Array.from({ length: v.size }, () => Math.abs(rng.normal()) * 1e-3) });
  }
  const state: TrainerState = {
    stage: 'teacher',
    step: 4,
    totalSteps: 10,
    epoch: 0,
    dataCursor: { epoch: 0, index: 64 },
    rng: { s: 12345, spare: null },
    bestMetric: 0.5,
    bestStep: 4,
    tokensSeen: 2048,
    elapsedSeconds: 3.5,
  };
  const stageDir = join(work, 'stage');
  const rel = await saveCheckpoint(
    stageDir,
    { model, optimizer, state, resolvedYaml: 'name: fuzz\n', tokenizerFrom: join(ROOT, 'test/fixtures/tiny-qwen3'), bitdistill: { stage: 'teacher' } },
    2,
  );
  const expect: CheckpointExpectation = {
    stage: 'teacher',
    params: new Map([...model.params].map(([k, v]) => [k, v.shape])),
    trainable: new Set([...model.params].filter(([, v]) => v.trainable).map(([k]) => k)),
  };
  model.dispose();
  return { dir: join(stageDir, rel), expect };
}

/** Every target, seeds built under `work` (exports and a checkpoint are made once per process). */
export async function makeTargets(work: string, only?: readonly string[]): Promise<Target[]> {
  const one = (label: string, rel: string, bytes: Uint8Array, kind: SeedFile['kind']): Seed => ({ label, files: [file(rel, bytes, kind)], entry: rel });
  // Readers that misbehave on purpose, to show that the campaign sees each kind of defect (test/fuzz.test.ts).
  const selfTest: Target[] =
    process.env['BITDISTILL_FUZZ_SELFTEST'] === '1'
      ? [
          {
            name: 'selftest-generic',
            reader: 'throws a TypeError',
            seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
            run: async () => void (null as unknown as { a: number }).a,
          },
          {
            name: 'selftest-garbage',
            reader: 'returns garbage',
            seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
            run: async () => checkFinite([Number.NaN], 'selftest'),
          },
          {
            name: 'selftest-hang',
            reader: 'spins',
            seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
            run: async () => {
              for (;;);
            },
          },
          {
            name: 'selftest-oom',
            reader: 'allocates without end',
            seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
            run: async () => {
              const keep: Buffer[] = [];
              for (;;) keep.push(Buffer.alloc(256 << 20, 1));
            },
          },
          {
            name: 'selftest-crash',
            reader: 'dies',
            seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
            run: async () => void process.kill(process.pid, 'SIGSEGV'),
          },
        ]
      : process.env['BITDISTILL_FUZZ_SELFTEST'] === 'badseed'
        ? [
            {
              name: 'selftest-badseed',
              reader: 'refuses its own seed',
              seeds: [one('x', 'x', new Uint8Array(8), 'binary')],
              run: async () => checkFinite([Number.NaN], 'seed'),
            },
          ]
        : [];
  // Only self-test targets asked for: skip building the real seeds (a worker restarts after every hang or crash).
  if (only !== undefined && only.length > 0 && only.every((n) => selfTest.some((t) => t.name === n))) return selfTest;
  await initBackend('cpu');
  tf.enableProdMode();
  mkdirSync(work, { recursive: true });
  const ex = await makeExports(join(work, 'made'));
  const ck = await makeCheckpoint(join(work, 'made'));
  const fx = 'packages/data/test/fixtures';
  const sst2Tsv = readFileSync(join(ROOT, 'datasets/glue/SST-2/dev.tsv'), 'utf8').split('\n').slice(0, 41).join('\n') + '\n';
  const qnliTsv = readFileSync(join(ROOT, 'datasets/glue/QNLI/dev.tsv'), 'utf8').split('\n').slice(0, 21).join('\n') + '\n';
  const jsonl = sst2Tsv
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => {
      const [sentence, label] = l.split('\t');
      return JSON.stringify({ sentence, label: Number(label), idx: 0 });
    })
    .join('\n');
  const exportWeights = { 'config.json': ['text', 3], 'model.safetensors': ['binary', 5], 'tokenizer.bin': ['binary', 1] } as const;
  const tinyModel = folder(join(ROOT, 'test/fixtures/tiny-qwen3'), { 'config.json': ['text', 1], 'model.safetensors': ['binary', 3] });
  const ckFiles = folder(ck.dir, {
    'trainer_state.json': ['text', 3],
    'manifest.json': ['text', 3],
    'model.safetensors': ['binary', 2],
    'optimizer.safetensors': ['binary', 2],
    'config.json': ['text', 1],
  });

  return [
    ...selfTest,
    {
      name: 'safetensors',
      reader: 'format parseSafetensors',
      seeds: [
        one('tiny-qwen3 weights', 'model.safetensors', read('test/fixtures/tiny-qwen3/model.safetensors'), 'binary'),
        one('export weights', 'model.safetensors', readFileSync(join(ex.qwen, 'model.safetensors')), 'binary'),
      ],
      run: async (p) => {
        const f = parseSafetensors(new Uint8Array(readFileSync(p)), p);
        for (const [name, t] of f.tensors) {
          const n = t.shape.reduce((a, b) => a * b, 1);
          if (t.data.length !== n) throw new Garbage(`${name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
        }
      },
    },
    {
      name: 'export',
      reader: 'runtime TernaryRuntime.load(folder) + forward',
      seeds: [
        { label: 'Qwen3 allnorm export', files: folder(ex.qwen, { ...exportWeights }), entry: '' },
        { label: 'Llama standard export', files: folder(ex.llama, { ...exportWeights }), entry: '' },
      ],
      run: async (p) => checkRuntime(TernaryRuntime.load(p), 'export'),
    },
    {
      name: 'gguf',
      reader: 'runtime TernaryRuntime.load(gguf) + forward; format readGguf',
      seeds: [one('TQ2_0', 'model.gguf', readFileSync(ex.tq2), 'binary'), one('TQ1_0', 'model.gguf', readFileSync(ex.tq1), 'binary')],
      run: async (p) => {
        const g = readGguf(p);
        for (const t of g.tensors)
          if (t.data.byteLength !== ggmlTensorBytes(t.type, t.dims))
            throw new Garbage(`${t.name}: ${t.data.byteLength} bytes for ${t.type} [${t.dims.join(', ')}]`);
        checkRuntime(TernaryRuntime.load(p), 'gguf');
      },
    },
    {
      name: 'tokenizer.json',
      reader: 'data loadTokenizer(tokenizer.json) + encode/decode',
      // Cut from the real Qwen3 (byte-level BPE) and BERT (WordPiece) files by packages/data/test/fixtures/make-small-tokenizers.ts.
      seeds: [
        one('small BPE (Qwen3)', 'tokenizer.json', read(`${fx}/small-bpe/tokenizer.json`), 'text'),
        one('small WordPiece (BERT)', 'tokenizer.json', read(`${fx}/small-wordpiece/tokenizer.json`), 'text'),
      ],
      run: async (p) => checkTokenizer(loadTokenizer(p), 'tokenizer.json'),
    },
    {
      name: 'llama2c-model',
      reader: 'format parseLlama2c',
      seeds: [one('stories260K.bin', 'model.bin', read('models/stories260K/source/stories260K.bin'), 'binary')],
      run: async (p) => {
        const c = parseLlama2c(new Uint8Array(readFileSync(p)), p);
        for (const [name, t] of c.tensors) {
          const n = t.shape.reduce((a, b) => a * b, 1);
          if (t.data.length !== n) throw new Garbage(`${name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
        }
        if (c.config.vocab_size < 1 || c.config.num_hidden_layers < 1) throw new Garbage(`config ${JSON.stringify(c.config)}`);
      },
    },
    {
      name: 'llama2c-tokenizer',
      reader: 'data loadTokenizer(tokenizer.bin) + encode/decode',
      seeds: [one('tok512.bin', 'tokenizer.bin', read('models/stories260K/tokenizer.bin'), 'binary')],
      run: async (p) => checkTokenizer(loadTokenizer(p), 'tokenizer.bin'),
    },
    {
      name: 'tsv',
      reader: 'data readExamples(.tsv)',
      seeds: [
        one('SST-2 dev (40 rows)', 'dev.tsv', new Uint8Array(Buffer.from(sst2Tsv)), 'text'),
        one('QNLI dev (20 rows)', 'qnli.tsv', new Uint8Array(Buffer.from(qnliTsv)), 'text'),
      ],
      run: async (p) => checkExamples(p, p.endsWith('qnli.tsv') ? 'qnli' : 'sst2'),
    },
    {
      name: 'jsonl',
      reader: 'data readExamples(.jsonl) and CorpusStream(.jsonl)',
      seeds: [one('SST-2 rows', 'dev.jsonl', new Uint8Array(Buffer.from(jsonl)), 'text'), one('corpus', 'corpus.jsonl', read(`${fx}/corpus.jsonl`), 'text')],
      run: async (p) => (p.endsWith('corpus.jsonl') ? checkCorpus(p) : checkExamples(p, 'sst2')),
    },
    {
      name: 'parquet',
      reader: 'data readExamples(.parquet) and CorpusStream(.parquet)',
      seeds: [one('SST-2 rows', 'sst2.parquet', read(`${fx}/sst2.parquet`), 'binary'), one('corpus', 'corpus.parquet', read(`${fx}/corpus.parquet`), 'binary')],
      run: async (p) => (p.endsWith('corpus.parquet') ? checkCorpus(p) : checkExamples(p, 'sst2')),
    },
    {
      name: 'arrow',
      reader: 'data readExamples(.arrow) and CorpusStream(.arrow)',
      seeds: [one('SST-2 rows', 'sst2.arrow', read(`${fx}/sst2.arrow`), 'binary'), one('corpus', 'corpus.arrow', read(`${fx}/corpus.arrow`), 'binary')],
      run: async (p) => (p.endsWith('corpus.arrow') ? checkCorpus(p) : checkExamples(p, 'sst2')),
    },
    {
      name: 'yaml-config',
      reader: 'config loadConfig',
      seeds: ['configs/sst2-tiny.yaml', 'configs/mnli.yaml'].map((c) => one(c, 'config.yaml', read(c), 'text')),
      run: async (p) => {
        const { config } = loadConfig(p);
        if (typeof config.name !== 'string' || config.stages.length === 0) throw new Garbage(`config without name or stages`);
      },
    },
    {
      name: 'model-folder',
      reader: 'model loadModel(folder): config.json + safetensors',
      seeds: [{ label: 'tiny-qwen3', files: tinyModel, entry: '' }],
      run: async (p) => {
        const { model } = loadModel(p);
        try {
          for (const [name, v] of model.params) checkFinite((await v.data()) as Float32Array, name);
        } finally {
          model.dispose();
        }
      },
    },
    {
      name: 'checkpoint',
      reader: 'trainer verifyCheckpoint + read (manifest, trainer_state, safetensors)',
      seeds: [
        { label: 'teacher step 4', files: ckFiles, entry: '' },
        { label: 'teacher step 4 without manifest (older version)', files: ckFiles.filter((f) => f.rel !== 'manifest.json'), entry: '' },
      ],
      run: async (p) => {
        const v = verifyCheckpoint(p, ck.expect);
        if (v.state.step !== 4) throw new Garbage(`verified a checkpoint whose step is ${v.state.step}`);
        const opt = readOptimizerTensors(p);
        for (const [k, t] of opt) checkFinite(t.data as Float32Array, k);
      },
    },
  ];
}

async function checkCorpus(path: string): Promise<void> {
  const tok = loadTokenizer(join(ROOT, 'models/stories260K'));
  const stream = new CorpusStream([path], tok, 16);
  try {
    for (let i = 0; i < 4; i++) {
      const seq = await stream.next();
      if (seq.length !== 17) throw new Garbage(`corpus sequence of ${seq.length} tokens, expected 17`);
      for (const id of seq) if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Garbage(`corpus token ${id}`);
    }
  } finally {
    stream.close();
  }
}
