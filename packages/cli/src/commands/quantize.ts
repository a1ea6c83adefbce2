import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { CommandModule } from 'yargs';
import { ArgumentError, UnsupportedError } from '@bitdistill/core';
import { readJsonObjectFile } from '@bitdistill/format';
import { sampleCorpusSets } from '@bitdistill/data';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  model: string;
  out: string;
  method: 'rtn' | 'gptq';
  bits: number;
  group?: number;
  corpus: string[];
  'seq-len'?: number;
  'calib-seqs': number;
  'heldout-seqs': number;
  seed: number;
  json: boolean;
}

/** The corpus of configs/sst2-tiny.yaml's continual pre-training, first file: text no stage of that run trains the base on. */
const DEFAULT_CORPUS = ['datasets/corpus/tinyshakespeare'];

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new ArgumentError(`--${name} must be a positive integer, got ${v}`);
}

/** PTQ is for full-precision checkpoints: a packed export or a ternary student's latent weights are refused. */
function refuseQuantized(model: string): void {
  const cfg = join(model, 'config.json');
  if (!existsSync(model) || statSync(model).isFile() || !existsSync(cfg)) return; // loadModel names what is missing
  const raw = readJsonObjectFile(cfg, 'config.json is corrupt: pass an intact checkpoint folder');
  if (raw['quantization_config'] !== undefined)
    throw new UnsupportedError(`${model} is a packed export (config.json has quantization_config): PTQ is for full-precision checkpoints`, {
      hint: 'pass the full-precision model the student was trained from (e.g. models/stories260K, or runs/<name>/teacher/final)',
    });
  const b = raw['bitdistill'];
  const wq = b !== null && typeof b === 'object' ? (b as Record<string, unknown>)['weightQuant'] : undefined;
  if (wq !== undefined && wq !== 'none')
    throw new UnsupportedError(
      `${cfg}: a ternary student (bitdistill.weightQuant ${JSON.stringify(wq)}); PTQ is for full-precision checkpoints: its latent weights are not the model it runs`,
      { hint: 'export the student with `bitdistill export --ternary`, or quantize the full-precision teacher (runs/<name>/teacher/final)' },
    );
}

export const quantizeCommand: CommandModule<GlobalArgs, Args> = {
  command: 'quantize',
  describe:
    'post-training quantization of a full-precision checkpoint (RTN or GPTQ, 2-8 bits, per row or per group); writes a checkpoint with the dequantized weights and reports the weight error and the held-out NLL before and after',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'full-precision checkpoint folder (HF layout) or llama2.c .bin' })
      .option('out', { type: 'string', demandOption: true, describe: 'output checkpoint folder (replaced if it exists)' })
      .option('method', {
        choices: ['rtn', 'gptq'] as const,
        default: 'gptq' as const,
        describe:
          'rtn: round to nearest; gptq: Frantar et al. 2022, layer by layer with error feedback from calibration text (each layer sees the already-quantized layers before it)',
      })
      .option('bits', { type: 'number', default: 4, describe: 'bits per weight, 2..8 (asymmetric grid with a zero point)' })
      .option('group', { type: 'number', describe: 'input columns per scale/zero pair, e.g. 128 (default: one pair per output row)' })
      .option('corpus', { type: 'string', array: true, default: DEFAULT_CORPUS, describe: 'text files or folders for the calibration and held-out sequences' })
      .option('seq-len', { type: 'number', describe: 'tokens per sequence (default 128, at most max_position_embeddings)' })
      .option('calib-seqs', {
        type: 'number',
        default: 32,
        describe: 'GPTQ calibration sequences (drawn for rtn too, so both methods see the same held-out set)',
      })
      .option('heldout-seqs', { type: 'number', default: 64, describe: 'held-out sequences for the NLL, disjoint from the calibration ones' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the draw of the two sets from the start of the corpus' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object to stdout' }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    if (!(Number.isInteger(args.bits) && args.bits >= 2 && args.bits <= 8)) throw new ArgumentError(`--bits must be an integer in 2..8, got ${args.bits}`);
    positiveInt('group', args.group);
    positiveInt('seq-len', args['seq-len']);
    positiveInt('calib-seqs', args['calib-seqs']);
    positiveInt('heldout-seqs', args['heldout-seqs']);
    const out = resolve(args.out);
    if (out === resolve(args.model) || resolve(args.model).startsWith(out + sep))
      throw new ArgumentError(`--out ${args.out} is or holds the --model folder (--out is replaced)`, { hint: 'write the quantized model to a new folder' });
    refuseQuantized(args.model);
    const t0 = performance.now();
    await ctx.backend();
    const { loadModel, lmNll, saveModel } = await import('@bitdistill/model');
    const { quantizeDecoder } = await import('@bitdistill/quant');
    const { model, tokenizer, source } = loadModel(args.model, { trainable: false, logger: ctx.logger });
    const maxPos = model.config.maxPositionEmbeddings;
    const seqLen = args['seq-len'] ?? Math.min(128, maxPos);
    if (seqLen > maxPos)
      throw new ArgumentError(`--seq-len ${seqLen} exceeds the model's max_position_embeddings ${maxPos}`, { hint: `use --seq-len ${maxPos} or less` });
    const [calibration, heldout] = (await sampleCorpusSets(args.corpus, tokenizer, seqLen, [args['calib-seqs'], args['heldout-seqs']], {
      seed: args.seed,
    })) as [Int32Array[], Int32Array[]];
    const before = lmNll(model, heldout);
    ctx.logger.info({ nll: before.nll, tokens: before.tokens }, 'held-out NLL of the full-precision model');
    const group = args.group ?? null;
    const projections = quantizeDecoder(model, { method: args.method, bits: args.bits, group, calibration, logger: ctx.logger });
    const after = lmNll(model, heldout);
    const ptq = {
      method: args.method,
      bits: args.bits,
      group,
      from: args.model,
      ...(args.method === 'gptq' ? { calibration: { corpus: args.corpus, sequences: calibration.length, seqLen, seed: args.seed } } : {}),
    };
    // Written into a temporary folder and renamed, so a failure never leaves a half-written model behind.
    const tmp = `${args.out.replace(/\/+$/, '')}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    try {
      // finalEval (a training stage's dev result) was of the source model: undefined drops it from config.json.
      await saveModel(model, tmp, { bitdistill: { ptq, finalEval: undefined }, tokenizerFrom: source, metadata: { format: 'pt', bitdistill: 'ptq-v1' } });
      rmSync(args.out, { recursive: true, force: true });
      renameSync(tmp, args.out);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    model.dispose();

    const worst = projections.reduce((a, b) => (b.weightRelErr > a.weightRelErr ? b : a));
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const outputErrs = projections.flatMap((p) => (p.outputRelErr === null ? [] : [p.outputRelErr]));
    const report = {
      model: args.model,
      out: args.out,
      ...ptq,
      projections: projections.length,
      weightRelErr: { mean: mean(projections.map((p) => p.weightRelErr)), max: worst.weightRelErr, maxAt: worst.name },
      outputRelErr: outputErrs.length > 0 ? { mean: mean(outputErrs), max: Math.max(...outputErrs) } : null,
      heldout: { corpus: args.corpus, sequences: heldout.length, seqLen, tokens: after.tokens, seed: args.seed },
      nllBefore: before.nll,
      nllAfter: after.nll,
      nllIncrease: after.nll - before.nll,
      seconds: (performance.now() - t0) / 1000,
      perProjection: projections,
    };
    if (args.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
    const f = (x: number): string => x.toFixed(4);
    const lines = [
      `quantized ${args.model} -> ${args.out}: ${args.method}, ${args.bits}-bit, ${group === null ? 'one scale per row' : `groups of ${group}`}; ${projections.length} projections (embeddings, norms, lm_head full precision)`,
      `  weight error ||W-Q||/||W||: mean ${f(report.weightRelErr.mean)}, max ${f(worst.weightRelErr)} (${worst.name})`,
      ...(report.outputRelErr !== null
        ? [`  layer output error on the calibration text (GPTQ's objective, relative): mean ${f(report.outputRelErr.mean)}, max ${f(report.outputRelErr.max)}`]
        : []),
      `  held-out NLL (${heldout.length} x ${seqLen} tokens of ${args.corpus.join(', ')}): ${f(before.nll)} -> ${f(after.nll)} nats/token (${after.nll >= before.nll ? '+' : ''}${f(report.nllIncrease)}; perplexity ${Math.exp(before.nll).toFixed(2)} -> ${Math.exp(after.nll).toFixed(2)})`,
      ...(args.method === 'gptq' ? [`  calibration: ${calibration.length} x ${seqLen} tokens, disjoint from the held-out set (seed ${args.seed})`] : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
