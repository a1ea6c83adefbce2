import type { CommandModule } from 'yargs';
import { BitDistillError, UnsupportedError } from '@bitdistill/core';
import { exportGguf, exportTernary } from '@bitdistill/export';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  ternary?: boolean;
  from: string;
  out: string;
  format: 'safetensors' | 'gguf';
  dtype: 'f32' | 'bf16' | 'f16';
  'gguf-type': 'tq2_0' | 'tq1_0';
  'allow-fallback': boolean;
  'hf-compat': boolean;
  'hf-linear-class': 'autobitlinear' | 'bitlinear';
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(2)} MiB`;
}

export const exportCommand: CommandModule<GlobalArgs, Args> = {
  command: 'export',
  describe: 'write a trained student as packed ternary weights (HF BitNet safetensors folder, or a GGUF file for llama.cpp), verified by re-reading',
  builder: (y) =>
    y
      .option('ternary', {
        type: 'boolean',
        describe: 'pack the quantized projections as ternary: the only kind of export, so the flag may be left out (--no-ternary is refused)',
      })
      .option('from', { type: 'string', demandOption: true, describe: 'checkpoint folder, or a run stage folder (its final/ is used)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (safetensors) or file (gguf, e.g. out/model.gguf)' })
      .option('format', {
        choices: ['safetensors', 'gguf'] as const,
        default: 'safetensors' as const,
        describe: 'safetensors: our runtime + transformers; gguf: llama.cpp bitnet architecture (docs/interop.md)',
      })
      .option('dtype', {
        choices: ['f32', 'bf16', 'f16'] as const,
        default: 'f32' as const,
        describe: 'dtype of the tensors that stay full precision (f16: gguf only; gguf norm gains are always f32)',
      })
      .option('gguf-type', {
        choices: ['tq2_0', 'tq1_0'] as const,
        default: 'tq2_0' as const,
        describe: 'ternary block type of the GGUF projections (TQ2_0 2.06 bits/weight, TQ1_0 1.69)',
      })
      .option('allow-fallback', {
        type: 'boolean',
        default: false,
        describe: 'gguf: write projections whose input dimension is not a multiple of 256 as F16 instead of refusing',
      })
      .option('hf-compat', {
        type: 'boolean',
        default: false,
        describe: 'safetensors: config.json for transformers (BitNetForCausalLM for standard SubLN); refuses what transformers cannot express',
      })
      .option('hf-linear-class', {
        choices: ['bitlinear', 'autobitlinear'] as const,
        default: 'bitlinear' as const,
        describe:
          'with --hf-compat: bitlinear (stores 1/scale; read right by every transformers release with BitNet) or autobitlinear (multiplicative weight_scale; releases without AutoBitLinear divide by it and compute wrong logits)',
      }) as never,
  handler: (args) => {
    const ctx = makeContext(args);
    if (args.ternary === false)
      throw new UnsupportedError('only --ternary exports exist', { hint: 'a full-precision checkpoint folder is already a Hugging Face model folder' });
    if (args.format === 'gguf') {
      if (args['hf-compat'])
        throw new BitDistillError('E_USAGE', '--hf-compat applies to the safetensors export', { hint: 'drop --hf-compat, or use --format safetensors' });
      const r = exportGguf({
        from: args.from,
        out: args.out,
        type: args['gguf-type'] === 'tq1_0' ? 'TQ1_0' : 'TQ2_0',
        allowFallback: args['allow-fallback'],
        dtype: args.dtype === 'bf16' ? 'BF16' : args.dtype === 'f16' ? 'F16' : 'F32',
        logger: ctx.logger,
      });
      const lines = [
        `exported ${r.checkpoint} -> ${r.out} (GGUF v3, llama.cpp architecture bitnet, file type ${r.fileType})`,
        `  ${r.quantizedTensors} ${r.type} projections, ${r.tensors} tensors, ${r.parameters.toLocaleString('en-US')} parameters`,
        `  file: ${mib(r.bytes)}; a bf16 copy of the same model: ${mib(r.bf16Bytes)} (${(r.bf16Bytes / r.bytes).toFixed(2)}x larger)`,
      ];
      if (r.fallbackTensors.length > 0) {
        lines.push(`  --allow-fallback: ${r.fallbackTensors.length} projections written as F16 (not ternary in llama.cpp):`);
        for (const f of r.fallbackTensors) lines.push(`    ${f.name}: ${f.reason}`);
      }
      if (r.sublnEps !== null)
        lines.push(
          `  SubLN epsilon: trained ${r.sublnEps.trained}, llama.cpp applies ${r.sublnEps.target}; max logit difference ${r.sublnEps.maxLogitDiff?.toPrecision(3) ?? 'not measured'} (see the warning)`,
        );
      // llama-cli is a chat client in current llama.cpp; raw completion is llama-completion without conversation mode.
      lines.push(`  run it: llama-completion -m ${r.out} -p "..." -no-cnv --temp 0 (see docs/interop.md)`);
      process.stdout.write(`${lines.join('\n')}\n`);
      return;
    }
    if (args.dtype === 'f16') throw new BitDistillError('E_USAGE', '--dtype f16 is for --format gguf', { hint: 'the safetensors export keeps f32 or bf16' });
    if (args['allow-fallback'])
      throw new BitDistillError('E_USAGE', '--allow-fallback applies to --format gguf', { hint: 'the safetensors export packs every input dimension' });
    const r = exportTernary({
      from: args.from,
      out: args.out,
      dtype: args.dtype === 'bf16' ? 'BF16' : 'F32',
      ...(args['hf-compat'] ? { hfCompat: { linearClass: args['hf-linear-class'] } } : {}),
      logger: ctx.logger,
    });
    process.stdout.write(
      `exported ${r.checkpoint} -> ${r.out}${args['hf-compat'] ? ` (config.json for transformers' BitNet integration, linear_class ${args['hf-linear-class']})` : ''}\n` +
        `  ${r.quantizedTensors} ternary projections, ${r.parameters.toLocaleString('en-US')} parameters\n` +
        `  export: ${mib(r.bytes)} on disk; a bf16 copy of the same model: ${mib(r.bf16Bytes)} (${(r.bf16Bytes / r.bytes).toFixed(2)}x larger)\n` +
        (r.sublnEps !== null
          ? `  SubLN epsilon: trained ${r.sublnEps.trained}, transformers applies ${r.sublnEps.target}; max logit difference ${r.sublnEps.maxLogitDiff?.toPrecision(3) ?? 'not measured'} (see the warning)\n`
          : ''),
    );
  },
};
