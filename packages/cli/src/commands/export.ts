import type { CommandModule } from 'yargs';
import { UnsupportedError } from '@bitdistill/core';
import { exportTernary } from '@bitdistill/export';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  ternary: boolean;
  from: string;
  out: string;
  format: 'safetensors' | 'gguf';
  dtype: 'f32' | 'bf16';
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(2)} MiB`;
}

export const exportCommand: CommandModule<GlobalArgs, Args> = {
  command: 'export',
  describe: 'write a trained student as packed ternary weights (HF BitNet layout), verified by re-reading',
  builder: (y) =>
    y
      .option('ternary', { type: 'boolean', default: true, describe: 'pack the quantized projections as ternary (the only export today)' })
      .option('from', { type: 'string', demandOption: true, describe: 'checkpoint folder, or a run stage folder (its final/ is used)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder' })
      .option('format', { choices: ['safetensors', 'gguf'] as const, default: 'safetensors' as const })
      .option('dtype', { choices: ['f32', 'bf16'] as const, default: 'f32' as const, describe: 'dtype of the tensors that stay full precision' }) as never,
  handler: (args) => {
    const ctx = makeContext(args);
    if (!args.ternary) throw new UnsupportedError('only --ternary exports exist', { hint: 'a full-precision checkpoint folder is already a Hugging Face model folder' });
    if (args.format === 'gguf') throw new UnsupportedError('--format gguf is not implemented yet', { hint: 'use --format safetensors (the HF BitNet layout)' });
    const r = exportTernary({ from: args.from, out: args.out, dtype: args.dtype === 'bf16' ? 'BF16' : 'F32', logger: ctx.logger });
    process.stdout.write(
      `exported ${r.checkpoint} -> ${r.out}\n` +
        `  ${r.quantizedTensors} ternary projections, ${r.parameters.toLocaleString('en-US')} parameters\n` +
        `  export: ${mib(r.bytes)} on disk; a bf16 copy of the same model: ${mib(r.bf16Bytes)} (${(r.bf16Bytes / r.bytes).toFixed(2)}x larger)\n`,
    );
  },
};
