import type { CommandModule } from 'yargs';
import { ArgumentError } from '@bitdistill/core';
import { hfConfigKeys, SUBLN_MODES, type SublnMode, WEIGHT_QUANT_MODES, type WeightQuantMode } from '@bitdistill/arch';
import { makeContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  model: string;
  json: boolean;
  student?: string;
}

/** Parse `--student subln=standard,weightQuant=absmean` (keys optional; defaults allnorm / absmean). */
function parseStudentSpec(spec: string): { subln: SublnMode; weightQuant: WeightQuantMode } {
  const out = { subln: 'allnorm' as SublnMode, weightQuant: 'absmean' as WeightQuantMode };
  for (const part of spec.split(',').filter((p) => p.trim() !== '')) {
    const [k, v] = part.split('=').map((x) => x.trim());
    if (k === 'subln' && (SUBLN_MODES as readonly string[]).includes(v ?? '')) out.subln = v as SublnMode;
    else if (k === 'weightQuant' && (WEIGHT_QUANT_MODES as readonly string[]).includes(v ?? '')) out.weightQuant = v as WeightQuantMode;
    else {
      throw new ArgumentError(`--student: cannot use '${part}'`, {
        hint: `write e.g. --student subln=standard,weightQuant=absmean (subln: ${SUBLN_MODES.join('|')}; weightQuant: ${WEIGHT_QUANT_MODES.join('|')})`,
      });
    }
  }
  return out;
}

export const infoCommand: CommandModule<GlobalArgs, Args> = {
  command: 'info',
  describe: 'print the architecture, parameter count and tensor shapes of a model',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'model folder (HF layout) or llama2.c .bin' })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of text' })
      .option('student', {
        type: 'string',
        describe: "show the ternary student: 'subln=standard|allnorm|none,weightQuant=absmean|block256|perRow' (a student checkpoint shows its own)",
      }) as never,
  handler: async (args) => {
    const ctx = makeContext(args);
    await ctx.backend();
    const { loadModel } = await import('@bitdistill/model');
    const { describeStudent, prepareStudent, restoreStudent } = await import('@bitdistill/quant');
    const { model, tokenizer } = loadModel(args.model, { trainable: false, logger: ctx.logger });
    if (args.student !== undefined) {
      const spec = parseStudentSpec(args.student);
      prepareStudent(model, spec);
    } else {
      restoreStudent(model);
    }
    const roles = new Map(describeStudent(model).map((r) => [r.name, r.role]));
    const c = model.config;
    const tensors = [...model.params].map(([name, v]) => ({ name, shape: v.shape, params: v.size, role: roles.get(name) ?? 'full-precision' }));
    const hf = hfConfigKeys(c);
    const arch = {
      ...Object.fromEntries(
        [
          'model_type',
          'hidden_size',
          'intermediate_size',
          'num_hidden_layers',
          'num_attention_heads',
          'num_key_value_heads',
          'head_dim',
          'vocab_size',
          'tie_word_embeddings',
        ].map((k) => [k, hf[k]]),
      ),
      qk_norm: c.qkNorm,
      attention_bias: c.qkvBias,
      rope_theta: c.ropeTheta,
      rms_norm_eps: c.rmsNormEps,
      subln: c.subln,
    };
    const total = model.numParameters();
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({ architecture: arch, parameters: total, tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize }, tensors }, null, 2)}\n`,
      );
    } else {
      const lines = [`model: ${args.model}`, 'architecture:'];
      for (const [k, v] of Object.entries(arch)) lines.push(`  ${k}: ${String(v)}`);
      lines.push(`tokenizer: ${tokenizer.kind}, ${tokenizer.vocabSize} tokens`);
      lines.push(`parameters: ${total.toLocaleString('en-US')}`, 'tensors:');
      let w = 0;
      for (const t of tensors) w = Math.max(w, t.name.length);
      const mark = { quantized: '  ternary (int8 activations)', subln: '  SubLN gain (added)', 'full-precision': '' } as const;
      for (const t of tensors) lines.push(`  ${t.name.padEnd(w)}  ${`[${t.shape.join(', ')}]`.padEnd(12)}${mark[t.role]}`);
      const q = tensors.filter((t) => t.role === 'quantized');
      if (q.length > 0) {
        lines.push(
          `student: ${q.length} ternary projections (${q.reduce((a, t) => a + t.params, 0).toLocaleString('en-US')} weights), ${tensors.filter((t) => t.role === 'subln').length} SubLN gains, subln=${c.subln}`,
        );
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    model.dispose();
  },
};
