/**
 * Turns the pretraining run's final checkpoint into the shipped base model models/small-base: weights as BF16
 * safetensors (half the bytes; the experiments load them back to f32), config.json without the trainer's
 * bookkeeping, the tokenizer, and a SOURCE.md with the command, the corpus and the sha256 of the weights.
 *
 *   node --import tsx scripts/experiments/ship-base.ts [FROM=runs/base-pretrain/pretrain/final] [OUT=models/small-base]
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32ArrayToBf16, loadSafetensorsDir, tensorToFloat32, writeSafetensors, type TensorEntry } from '@bitdistill/format';
import { copyTokenizerFiles } from '@bitdistill/model';

export function shipBase(from: string, out: string): void {
  if (!existsSync(join(from, 'config.json'))) throw new Error(`${from}: no config.json (run configs/experiments/base-pretrain.yaml first)`);
  const { tensors } = loadSafetensorsDir(from);
  const bf16 = new Map<string, TensorEntry>();
  for (const [name, t] of tensors) bf16.set(name, { dtype: 'BF16', shape: [...t.shape], data: f32ArrayToBf16(tensorToFloat32(t, name)) });
  mkdirSync(out, { recursive: true });
  writeSafetensors(join(out, 'model.safetensors'), bf16, { format: 'pt', source: 'bitdistill pretrain (configs/experiments/base-pretrain.yaml)' });
  const config = JSON.parse(readFileSync(join(from, 'config.json'), 'utf8')) as Record<string, unknown>;
  const bd = (config['bitdistill'] ?? {}) as Record<string, unknown>;
  delete config['bitdistill'];
  config['torch_dtype'] = 'bfloat16';
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  copyTokenizerFiles(from, out);
  const state = JSON.parse(readFileSync(join(from, 'trainer_state.json'), 'utf8')) as { step: number; tokensSeen: number; elapsedSeconds: number };
  const sha = createHash('sha256')
    .update(readFileSync(join(out, 'model.safetensors')))
    .digest('hex');
  const params = [...tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  writeFileSync(
    join(out, 'SOURCE.md'),
    [
      '# small-base: the base model of the small-scale experiments',
      '',
      'Pretrained from scratch by this repository, in full precision, on the shipped public-domain corpus',
      `(${JSON.stringify(bd['corpus'] ?? [])}); no SST-2 or QNLI text is in it. Licence: MIT (this repository).`,
      '',
      '```',
      'npx bitdistill init --arch configs/experiments/base-arch.json --tokenizer models/bert-uncased-lm --out runs/base-init --seed 0',
      'npx bitdistill train --config configs/experiments/base-pretrain.yaml',
      'node --import tsx scripts/experiments/ship-base.ts',
      '```',
      '',
      `- architecture: configs/experiments/base-arch.json (Llama-style, 4 layers, width 192, 6 heads, SwiGLU 512, tied embeddings), ${params.toLocaleString('en-US')} parameters`,
      '- tokenizer: models/bert-uncased-lm (bert-base-uncased WordPiece, 30,522 tokens, no [CLS]/[SEP] template)',
      `- training: ${state.step} steps, ${state.tokensSeen.toLocaleString('en-US')} tokens, ${(state.elapsedSeconds / 60).toFixed(1)} min on the 2-core CI machine`,
      `- weights: BF16 (rounded to nearest even from the f32 checkpoint), model.safetensors sha256 ${sha}`,
      '',
    ].join('\n'),
  );
  console.log(`${out}: ${params} parameters, sha256 ${sha}`);
}

if (import.meta.url === `file://${process.argv[1]}`) shipBase(process.argv[2] ?? 'runs/base-pretrain/pretrain/final', process.argv[3] ?? 'models/small-base');
