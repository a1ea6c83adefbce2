import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { ConfigError, NotFoundError } from '@bitdistill/core';
import { formatConfig, loadConfig, validateConfig, STAGE_NAMES, type TrainConfig } from '../src/index.ts';
import { PIPELINE_STAGES } from '../src/train-config.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const TINY = join(FIXTURES, 'sst2-tiny.yaml');

/** The ConfigError thrown by fn, as {path: message}. */
function configIssues(fn: () => unknown): Record<string, string> {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const out: Record<string, string> = {};
    for (const i of e.issues) out[i.path] = out[i.path] === undefined ? i.message : `${out[i.path]} | ${i.message}`;
    return out;
  }
  throw new Error('expected a ConfigError');
}

const MINIMAL = {
  name: 'x',
  model: { path: 'm' },
  task: { name: 'sst2', train: 't.tsv', dev: 'd.tsv' },
  corpus: { paths: ['c.txt'], maxTokens: 1000 },
};

describe('config/train-config', () => {
  it('a valid config loads with every default filled, and its resolved YAML loads back to the same config', () => {
    const { config, resolvedYaml } = loadConfig(TINY);
    const expected: TrainConfig = {
      name: 'sst2-tiny',
      seed: 0,
      backend: 'auto',
      outputDir: 'runs',
      note: null,
      model: { path: 'models/stories260K', maxSeqLen: 128 },
      task: { name: 'sst2', train: 'datasets/glue/SST-2/train.tsv', dev: 'datasets/glue/SST-2/dev.tsv', trainLimit: 256, devLimit: null },
      corpus: { paths: ['datasets/corpus/tiny.txt'], seqLen: 128, maxTokens: 200000 },
      stages: ['teacher', 'bitnet-sft', 'continual-pretrain', 'distill'],
      student: { subln: 'allnorm', sublnEps: 1e-8, weightQuant: 'absmean', quantizeActivations: true },
      lowbitGemm: {
        forward: 'none',
        backward: 'none',
        stages: ['pretrain', 'teacher'],
        metis: {
          enabled: false,
          rankFraction: 0.01,
          refreshEvery: 100,
          powerIterations: 2,
          spectralLr: { enabled: false, dominantScale: 0.5, tailScale: 1 },
          dualRange: { weight: 0, rangeSigmas: 3 },
        },
      },
      optim: {
        lr: 5e-5,
        weightDecay: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        warmupRatio: 0.05,
        schedule: 'linear',
        decayRatio: 0.2,
        gradClip: 1.0,
        batchSize: 32,
        gradAccum: 1,
        epochs: 3,
        maxSteps: null,
        lossChunkRows: null,
        recompute: false,
        gradPrecision: 'fp32',
      },
      stageOptim: { 'continual-pretrain': { lr: 1e-4 } },
      distill: {
        lambdaLogit: 10,
        gammaAttn: 1e5,
        temperature: 5,
        relationHeads: 32,
        distillLayer: null,
        relation: 'cosine',
        logit: true,
        attention: true,
        logitPositions: 'all',
        teacherPath: null,
        studentFrom: 'continual-pretrain',
        studentPath: null,
      },
      averaging: { kind: 'none', emaDecay: 0.999, lawaK: 5 },
      checkpoint: { every: 100, keepLast: 2 },
      eval: { every: 0, limit: null, mode: 'label' },
      log: { every: 10 },
    };
    expect(config).to.deep.equal(expected);
    expect(resolvedYaml).to.match(/^# bitdistill config resolved from .*sst2-tiny\.yaml\n/);
    expect(resolvedYaml).to.include('stages: [teacher, bitnet-sft, continual-pretrain, distill]\n');
    expect(validateConfig(YAML.parse(resolvedYaml))).to.deep.equal(config);
    expect(validateConfig(YAML.parse(formatConfig(config)))).to.deep.equal(config);
    expect(PIPELINE_STAGES).to.deep.equal(expected.stages);
    expect(STAGE_NAMES).to.deep.equal(['pretrain', ...PIPELINE_STAGES]);
  });

  it('reports all problems of a config at once, each with its path', () => {
    const file = join(FIXTURES, 'five-problems.yaml');
    let err: unknown;
    try {
      loadConfig(file);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.code).to.equal('E_CONFIG');
    expect(e.file).to.equal(file);
    expect(e.issues).to.have.length(5);
    const byPath = Object.fromEntries(e.issues.map((i) => [i.path, i.message]));
    expect(byPath).to.deep.equal({
      'stages[2]': "'teacher' appears twice (first at stages[0])",
      'student.subln': "expected one of none | standard | allnorm, got string 'allnrom'; did you mean 'allnorm'?",
      'optim.learning_rat': "unknown key 'optim.learning_rat'; did you mean 'optim.lr'?",
      'optim.lr': 'must be > 0, got -0.00001',
      'optim.batchSize': "expected an integer >= 1, got string '32'",
    });
    // The message names the file and lists every problem on its own line.
    expect(e.message).to.match(/five-problems\.yaml: 5 problems in the config\n/);
    expect(e.message).to.include("  optim.batchSize: expected an integer >= 1, got string '32'");
  });

  it('overrides take YAML scalar typing: numbers, strings, null, lists, list items, booleans', () => {
    const { config, resolvedYaml } = loadConfig(TINY, [
      'optim.lr=5e-6',
      'student.subln=none',
      'task.trainLimit=null',
      'stages=[teacher,distill]',
      'distill.studentFrom=base',
      'distill.logit=false',
      'distill.distillLayer=-2',
      'stageOptim.distill.maxSteps=7',
      'model.path=models/other dir',
    ]);
    expect(config.optim.lr).to.equal(5e-6);
    expect(config.student.subln).to.equal('none');
    expect(config.task.trainLimit).to.equal(null);
    expect(config.stages).to.deep.equal(['teacher', 'distill']);
    expect(config.distill.logit).to.equal(false);
    expect(config.distill.distillLayer).to.equal(-2);
    expect(config.stageOptim).to.deep.equal({ 'continual-pretrain': { lr: 1e-4 }, distill: { maxSteps: 7 } });
    expect(config.model.path).to.equal('models/other dir');
    expect(resolvedYaml.split('\n')[0]).to.include('with optim.lr=5e-6 student.subln=none');

    const items = loadConfig(TINY, ['stages.1=continual-pretrain', 'stages[2]=bitnet-sft', 'stageOptim.continual-pretrain.maxSteps=5']).config;
    expect(items.stages).to.deep.equal(['teacher', 'continual-pretrain', 'bitnet-sft', 'distill']);
    expect(items.stageOptim['continual-pretrain']).to.deep.equal({ lr: 1e-4, maxSteps: 5 });
  });

  it('an override of an unknown key, a badly typed value and a malformed override are all reported together', () => {
    const issues = configIssues(() => loadConfig(TINY, ['optim.learning_rat=1e-4', 'optim.batchSize=big', 'oops', 'seed.x=1', 'stages.9=teacher']));
    expect(issues).to.deep.equal({
      'overrides[2]': "malformed override 'oops': expected dotted.key=value, e.g. optim.lr=5e-6",
      'overrides[3]': "override 'seed.x=1': cannot set a key inside 'seed', which is not a mapping",
      'overrides[4]': "override 'stages.9=teacher': 'stages' is a list of 4; use an index 0..4",
      'optim.learning_rat': "unknown key 'optim.learning_rat'; did you mean 'optim.lr'? (from override 'optim.learning_rat=1e-4')",
      'optim.batchSize': "expected an integer >= 1, got string 'big' (from override 'optim.batchSize=big')",
    });
    expect(configIssues(() => loadConfig(TINY, ['optimm.lr=1']))).to.deep.equal({
      optimm: "unknown key 'optimm'; did you mean 'optim'? (from override 'optimm.lr=1')",
    });
    expect(configIssues(() => loadConfig(TINY, ['stageOptim.distil.lr=1']))).to.deep.equal({
      'stageOptim.distil': "unknown key 'stageOptim.distil'; did you mean 'stageOptim.distill'? (from override 'stageOptim.distil.lr=1')",
    });
  });

  it('lowbitGemm.metis: every bad key is named with what it takes; Metis without a low-bit forward format is refused', () => {
    const issues = configIssues(() =>
      loadConfig(TINY, [
        'lowbitGemm.metis.rankFraction=1.5',
        'lowbitGemm.metis.refreshEvery=0',
        'lowbitGemm.metis.spectralLr.dominantScale=1',
        'lowbitGemm.metis.spectralLr.tailScale=0.5',
        'lowbitGemm.metis.dualRange.weight=-1',
        'lowbitGemm.metis.dualRange.rangeSigma=3',
      ]),
    );
    expect(Object.keys(issues).sort()).to.deep.equal([
      'lowbitGemm.metis.dualRange.rangeSigma',
      'lowbitGemm.metis.dualRange.weight',
      'lowbitGemm.metis.rankFraction',
      'lowbitGemm.metis.refreshEvery',
      'lowbitGemm.metis.spectralLr.dominantScale',
      'lowbitGemm.metis.spectralLr.tailScale',
    ]);
    expect(issues['lowbitGemm.metis.rankFraction']).to.match(/must be in \[0, 1\], got 1\.5/);
    expect(issues['lowbitGemm.metis.spectralLr.dominantScale']).to.match(/must be in \(0, 1\), got 1 /);
    expect(issues['lowbitGemm.metis.spectralLr.tailScale']).to.match(/must be >= 1/);
    expect(issues['lowbitGemm.metis.dualRange.rangeSigma']).to.match(/did you mean 'lowbitGemm\.metis\.dualRange\.rangeSigmas'/);
    expect(
      configIssues(() => loadConfig(TINY, ['lowbitGemm.metis.enabled=true', 'lowbitGemm.metis.rankFraction=0', 'lowbitGemm.metis.spectralLr.enabled=true'])),
    ).to.deep.equal({
      'lowbitGemm.metis.enabled':
        "Metis splits the low-bit forward GEMM's weight: set lowbitGemm.forward to fp8-e4m3, fp8-e5m2, fp4-e2m1 or nvfp4 (from override 'lowbitGemm.metis.enabled=true')",
      'lowbitGemm.metis.spectralLr.enabled':
        "the spectral learning rate scales the dominant directions: set lowbitGemm.metis.rankFraction > 0 (from override 'lowbitGemm.metis.spectralLr.enabled=true')",
    });
    const ok = loadConfig(TINY, ['lowbitGemm.forward=nvfp4', 'lowbitGemm.metis.enabled=true', 'lowbitGemm.metis.dualRange.weight=0.01']).config;
    expect(ok.lowbitGemm.metis).to.include({ enabled: true, rankFraction: 0.01, refreshEvery: 100 });
    expect(ok.lowbitGemm.metis.dualRange).to.deep.equal({ weight: 0.01, rangeSigmas: 3 });
  });

  it('a duplicate from an override is caught, and the file is not changed by overrides', () => {
    // stages is the default list here; setting item 3 to teacher duplicates stages[0] and drops distill.
    const issues = configIssues(() => loadConfig(TINY, ['stages.3=teacher']));
    expect(issues['stages[3]']).to.equal("'teacher' appears twice (first at stages[0]) (from override 'stages.3=teacher')");
    expect(loadConfig(TINY).config.stages).to.deep.equal([...PIPELINE_STAGES]);
  });

  it('a YAML syntax error is a ConfigError that gives the line and column', () => {
    // Line 4 is indented by one space, between the two mapping levels.
    expect(configIssues(() => loadConfig(join(FIXTURES, 'syntax-error.yaml')))).to.deep.equal({
      'line 4, column 1': 'YAML syntax error: All mapping items must start at the same column',
    });
  });

  it('a duplicate key in the YAML is a syntax error with its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bitdistill-config-'));
    try {
      const file = join(dir, 'dup.yaml');
      writeFileSync(file, 'name: a\nseed: 1\nname: b\n');
      expect(configIssues(() => loadConfig(file))).to.deep.equal({ 'line 3, column 1': 'YAML syntax error: Map keys must be unique' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing file is a NotFoundError with a hint', () => {
    try {
      loadConfig('configs/does-not-exist.yaml');
      expect.fail('should throw');
    } catch (e) {
      expect(e).to.be.instanceOf(NotFoundError);
      const err = e as NotFoundError;
      expect(err.code).to.equal('E_NOT_FOUND');
      expect(err.path).to.equal('configs/does-not-exist.yaml');
      expect(err.message).to.equal('config file not found: configs/does-not-exist.yaml');
      expect(err.hint).to.match(/relative to the working directory/);
    }
  });

  it('cross-field checks: distill needs a teacher and a student, continual-pretrain needs a corpus and a budget', () => {
    expect(configIssues(() => validateConfig({ ...MINIMAL, stages: ['distill'] }))).to.deep.equal({
      stages:
        "'distill' needs a teacher: add 'teacher' before it, or set distill.teacherPath to a fine-tuned checkpoint | " +
        "'distill' starts from the continual-pretrain student: add 'continual-pretrain' before it, or set distill.studentFrom: base",
    });
    expect(validateConfig({ ...MINIMAL, stages: ['distill'], distill: { teacherPath: 'runs/x/teacher/final', studentFrom: 'base' } }).stages).to.deep.equal([
      'distill',
    ]);
    expect(configIssues(() => validateConfig({ ...MINIMAL, stages: ['continual-pretrain', 'distill', 'teacher'] }))).to.deep.equal({
      stages: "'teacher' must come before 'distill' (the teacher is trained first)",
    });
    expect(configIssues(() => validateConfig({ ...MINIMAL, corpus: {} }))).to.deep.equal({
      'corpus.paths': "'continual-pretrain' is in stages but corpus.paths is empty: list the text files to pre-train on",
      'corpus.maxTokens': 'continual-pretrain needs a budget: set corpus.maxTokens, or optim.maxSteps / stageOptim.continual-pretrain.maxSteps',
    });
    // A stage-level maxSteps is a budget too; without continual-pretrain no corpus is needed.
    expect(validateConfig({ ...MINIMAL, corpus: { paths: ['c.txt'] }, stageOptim: { 'continual-pretrain': { maxSteps: 10 } } }).corpus.maxTokens).to.equal(
      null,
    );
    expect(validateConfig({ ...MINIMAL, corpus: {}, stages: ['teacher', 'bitnet-sft'] }).corpus.paths).to.deep.equal([]);
    expect(configIssues(() => validateConfig({ ...MINIMAL, stageOptim: { distill: { schedule: 'wsd', warmupRatio: 0.9 } } }))).to.deep.equal({
      'stageOptim.distill.decayRatio': 'warmupRatio (0.9) + decayRatio (0.2) must be <= 1 for the wsd schedule',
    });
  });

  it('a cross-field check does not pile onto a field that is already wrong', () => {
    // teacherPath is invalid (not null): only its type error is reported, not "distill needs a teacher".
    expect(configIssues(() => validateConfig({ ...MINIMAL, stages: ['continual-pretrain', 'distill'], distill: { teacherPath: 3 } }))).to.deep.equal({
      'distill.teacherPath': 'expected a non-empty string or null, got number 3',
    });
  });

  it('required keys, an empty document and a non-mapping root', () => {
    expect(configIssues(() => validateConfig(null))).to.deep.equal({
      name: "missing required key 'name' (expected a non-empty string)",
      'model.path': "missing required key 'model.path' (expected a non-empty string)",
      'task.name': "missing required key 'task.name' (expected a non-empty string)",
      'task.train': "missing required key 'task.train' (expected a non-empty string)",
      'task.dev': "missing required key 'task.dev' (expected a non-empty string or a list of them)",
      'corpus.paths': "'continual-pretrain' is in stages but corpus.paths is empty: list the text files to pre-train on",
      'corpus.maxTokens': 'continual-pretrain needs a budget: set corpus.maxTokens, or optim.maxSteps / stageOptim.continual-pretrain.maxSteps',
    });
    expect(configIssues(() => validateConfig(['a'], 'x.yaml'))).to.deep.equal({ '': 'expected a mapping, got a list' });
    expect(configIssues(() => validateConfig({ ...MINIMAL, name: 'runs/../x' }))).to.deep.equal({
      name: "'runs/../x' must contain only letters, digits, . _ - (it names the run folder)",
    });
  });

  it('a custom task definition is type-checked and kept', () => {
    const task = {
      name: 'mytask',
      train: 't.jsonl',
      dev: 'd.jsonl',
      fields: ['text'],
      template: 'Text: {text}\nAnswer:',
      labelWords: ['no', 'yes'],
      metrics: ['f1'],
    };
    expect(validateConfig({ ...MINIMAL, task }).task).to.deep.equal({ ...task, trainLimit: null, devLimit: null });
    expect(configIssues(() => validateConfig({ ...MINIMAL, task: { ...task, metric: 'f1', metrics: ['f2'], labelWords: 'yes' } }))).to.deep.equal({
      'task.metric': "unknown key 'task.metric'; did you mean 'task.metrics'?",
      'task.labelWords': "expected a list, each item a non-empty string, got string 'yes'",
      'task.metrics[0]': "expected one of accuracy | f1 | matthews | pearson | spearman, got string 'f2'; did you mean 'f1'?",
    });
  });
});

describe('config/shipped configs', () => {
  // Every YAML under the repository's configs/ must load (torchtune keeps the same promise for its recipes).
  const dir = join(import.meta.dirname, '..', '..', '..', 'configs');
  const files = existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')) : [];
  it(`configs/**/*.yaml load and validate (${files.length} found, experiments included)`, function () {
    expect(files.some((f) => f.startsWith('experiments'))).to.equal(true);
    if (files.length === 0) this.skip();
    for (const f of files) expect(loadConfig(join(dir, f)).config.name, f).to.be.a('string');
  });

  it('the bundled default (sst2-tiny.yaml) carries a note that points at the reports (issue 19)', function () {
    if (!existsSync(join(dir, 'sst2-tiny.yaml'))) this.skip();
    const { note } = loadConfig(join(dir, 'sst2-tiny.yaml')).config;
    expect(note).to.be.a('string');
    expect(note).to.contain('docs/results/lm-stories260k.md');
    expect(note).to.contain('docs/results/small-scale.md');
  });
});
