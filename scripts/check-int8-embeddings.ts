/**
 * `node --import tsx scripts/check-int8-embeddings.ts EXPORT [EXPORT ...] [--task sst2] [--split dev]`
 *
 * What `--embeddings int8` costs on a GLUE dev set: for each export, the label predictions of the kernels
 * runtime with fp32 embeddings and with int8 embeddings, their accuracies and how many answers change.
 */
import { initKernels } from '@bitdistill/kernels-cpu/runtime';
import { readExamples } from '@bitdistill/data';
import { defaultDataFile, runEval, taskForModel, type Predictor } from '@bitdistill/eval';
import { kernelsPredictor, TernaryRuntime, type EmbeddingMode } from '@bitdistill/runtime';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = args.splice(i, 2)[1];
  if (v === undefined) throw new Error(`--${name} needs a value`);
  return v;
};
const taskName = opt('task', 'sst2');
const split = opt('split', 'dev');
if (args.length === 0) {
  console.error('usage: scripts/check-int8-embeddings.ts EXPORT [EXPORT ...] [--task sst2] [--split dev]');
  process.exit(2);
}
initKernels();
for (const dir of args) {
  const words: Partial<Record<EmbeddingMode, readonly number[]>> = {};
  const value: Partial<Record<EmbeddingMode, number>> = {};
  for (const mode of ['fp32', 'int8'] as const) {
    const rt = TernaryRuntime.load(dir, { embeddings: mode });
    const task = taskForModel(taskName, rt.bitdistill);
    const examples = await readExamples(defaultDataFile(task, split), task);
    const maxLen = typeof rt.bitdistill['maxSeqLen'] === 'number' ? rt.bitdistill['maxSeqLen'] : 512;
    const inner = kernelsPredictor(rt);
    // The same predictor, keeping its answers for the comparison.
    const keeping: Predictor = {
      ...inner,
      predict: async (...a) => {
        const r = await inner.predict(...a);
        words[mode] = r.preds;
        return r;
      },
    };
    value[mode] = (await runEval(keeping, task, [examples], { mode: 'label', maxLen, split, model: dir })).value;
  }
  const fp = words.fp32 ?? [];
  const q = words.int8 ?? [];
  const changed = fp.filter((x, i) => x !== q[i]).length;
  const pct = (v: number | undefined) => (100 * (v ?? Number.NaN)).toFixed(2);
  console.log(`${dir}: ${taskName} ${split} metric fp32 ${pct(value.fp32)}, int8 ${pct(value.int8)}; ${changed} of ${fp.length} answers change`);
}
