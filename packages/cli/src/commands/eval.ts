import { existsSync, statSync, writeFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { DATASET_FORMATS, devFiles, readExamples, type DatasetFormat, type Example } from '@bitdistill/data';
import { checkWeightsOnDevice, loadConfig } from '@bitdistill/config';
import {
  defaultDataFiles,
  modelTask,
  readModelBlock,
  reportMarkdown,
  runEval,
  taskForModel,
  type EvalMode,
  type Predictor,
  type TemplateSource,
} from '@bitdistill/eval';
import { EMBEDDING_MODES, KV_CACHE_MODES, kernelsPredictor, TernaryRuntime, type EmbeddingMode, type KvCacheMode } from '@bitdistill/runtime';
import { initKernels } from '@bitdistill/kernels-cpu/runtime';
import { BitDistillError } from '@bitdistill/core';
import { makeContext, type Context, type GlobalArgs } from '../context.ts';
import { isExport } from '../exports.ts';

interface Args extends GlobalArgs {
  model: string;
  task?: string;
  config?: string;
  'template-from'?: TemplateSource;
  data?: string[];
  format?: DatasetFormat;
  split: string;
  runtime?: 'kernels' | 'tfjs';
  mode: EvalMode;
  limit?: number;
  json: boolean;
  'min-metric'?: number;
  report?: string;
  'max-len'?: number;
  embeddings?: EmbeddingMode;
  'kv-cache'?: KvCacheMode;
}

/** The tfjs path: a training checkpoint (fake-quantized student, or a full-precision model). */
async function tfjsPredictor(ctx: Context, dir: string): Promise<Predictor> {
  const backend = await ctx.backend();
  // On a GPU, a weight over the per-buffer limit is refused before the model loads.
  if (backend.webgpu !== null) checkWeightsOnDevice(dir, backend.webgpu.limits, backend.webgpu.description);
  const { loadModel } = await import('@bitdistill/model');
  const { restoreStudent } = await import('@bitdistill/quant');
  const { tfjsPredictor } = await import('@bitdistill/trainer');
  const { model, tokenizer } = loadModel(dir, { trainable: false, logger: ctx.logger });
  restoreStudent(model);
  return tfjsPredictor(model, tokenizer, { batchSize: 16 });
}

export const evalCommand: CommandModule<GlobalArgs, Args> = {
  command: 'eval',
  describe: 'GLUE evaluation of an export (kernels runtime) or a training checkpoint (tfjs)',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'export folder, .gguf file (export --format gguf), or checkpoint folder' })
      .option('task', {
        type: 'string',
        describe: 'the task (default: the one the model was trained for); another task is an error unless --template-from builtin',
      })
      .option('config', { type: 'string', describe: 'a training config: its task block (custom tasks) and its task.dev files' })
      .option('template-from', {
        choices: ['model', 'config', 'builtin'] as const,
        describe: "template and label words from the model's record (default), the --config, or the built-in GLUE task --task",
      })
      .option('data', {
        type: 'string',
        array: true,
        describe: 'data file(s), one per dev split (default: --config task.dev, else the shipped datasets/glue/<TASK>/<split>.tsv)',
      })
      .option('format', { choices: DATASET_FORMATS, describe: 'data file format when the extension does not say it' })
      .option('split', { type: 'string', default: 'dev' })
      .option('runtime', { choices: ['kernels', 'tfjs'] as const, describe: 'default: kernels for an export, tfjs for a checkpoint' })
      .option('mode', {
        choices: ['label', 'generate'] as const,
        default: 'label' as const,
        describe: 'label: score the label words; generate: greedy decoding + exact match',
      })
      .option('limit', { type: 'number', describe: 'first N examples' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object to stdout' })
      .option('min-metric', { type: 'number', describe: 'exit with status 1 when the metric is below this (0..1)' })
      .option('report', { type: 'string', describe: 'write a Markdown report here' })
      .option('embeddings', {
        choices: EMBEDDING_MODES,
        describe: 'kernels runtime: hold the embeddings and lm_head as exported (fp32, default) or as int8 rows (4x less memory, faster decoding)',
      })
      .option('kv-cache', {
        choices: KV_CACHE_MODES,
        describe: 'kernels runtime: KV cache in f32 (exact, default) or f16 (half the memory; moves logits slightly)',
      })
      .option('max-len', { type: 'number', describe: "prompt tokens kept, cut from the left (default: the model's training maxSeqLen, else 512)" }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    const gguf = existsSync(args.model) && statSync(args.model).isFile();
    const runtime = args.runtime ?? (isExport(args.model) ? 'kernels' : 'tfjs');
    if (gguf && runtime !== 'kernels') {
      throw new BitDistillError('E_USAGE', `--model ${args.model} is a file: only the kernels runtime reads GGUF`, {
        hint: 'drop --runtime tfjs, or pass a checkpoint folder',
      });
    }
    for (const flag of ['embeddings', 'kv-cache'] as const) {
      if (args[flag] !== undefined && runtime !== 'kernels') {
        throw new BitDistillError('E_USAGE', `--${flag} applies to the kernels runtime only`, {
          hint: `drop --${flag}, or evaluate an export with --runtime kernels`,
        });
      }
    }
    // A GGUF carries its config (with the task block) inside: load it first to read the template and label words.
    const rt =
      runtime === 'kernels'
        ? (initKernels({ logger: ctx.logger }), TernaryRuntime.load(args.model, { embeddings: args.embeddings ?? 'fp32', kvCache: args['kv-cache'] ?? 'f32' }))
        : null;
    const raw = rt !== null ? rt.bitdistill : readModelBlock(args.model);
    const block = Object.keys(raw ?? {}).length > 0 ? raw : null;
    const taskConfig = args.config !== undefined ? loadConfig(args.config, []).config.task : undefined;
    const templateFrom: TemplateSource = args['template-from'] ?? (modelTask(block) !== null ? 'model' : taskConfig !== undefined ? 'config' : 'builtin');
    const task = taskForModel(args.task, block, { templateFrom: args['template-from'], config: taskConfig });
    const trainedLen = block?.['maxSeqLen'];
    const maxLen = args['max-len'] ?? (typeof trainedLen === 'number' ? trainedLen : 512);
    const files = args.data ?? (taskConfig !== undefined ? devFiles(taskConfig) : defaultDataFiles(task, args.split));
    const format = args.format ?? taskConfig?.format;
    const sets: Example[][] = [];
    for (const file of files) {
      const rows = await readExamples(file, task, { ...(args.limit !== undefined ? { limit: args.limit } : {}), ...(format !== undefined ? { format } : {}) });
      if (rows.length === 0)
        throw new BitDistillError('E_DATA', `${file}: no examples to evaluate (a header alone?)`, { hint: 'pass a data file with labelled rows' });
      sets.push(rows);
    }
    const predictor: Predictor = rt !== null ? kernelsPredictor(rt) : await tfjsPredictor(ctx, args.model);
    const report = await runEval(predictor, task, sets, { mode: args.mode, maxLen, split: args.split, model: args.model, templateFrom });
    if (args.report !== undefined) writeFileSync(args.report, reportMarkdown(report));
    if (args.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else process.stdout.write(reportMarkdown(report));
    if (args['min-metric'] !== undefined && report.value < args['min-metric']) {
      ctx.logger.error({ metric: report.metric, value: report.value, min: args['min-metric'] }, 'below --min-metric');
      process.exitCode = 1;
    }
  },
};
