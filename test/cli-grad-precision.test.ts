// optim.gradPrecision through the real CLI: the bundled tiny config's BitNet-SFT stage (ternary student, fused
// BitLinear) and teacher stage (dense linears, the head's backward product) for a few steps in fp32 and in bf16
// from the same seed. The forward is the same in both, so the first step's loss is identical; later steps differ
// by the bf16 rounding of the backward products' operands only (small, not zero where AVX512_BF16 runs it).
// Without AVX512_BF16 the run warns and stays fp32: every loss equal.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bf16GradAvailable, initKernels } from '@bitdistill/kernels-cpu/engine';

function train(tmp: string, precision: string, stage = 'bitnet-sft'): { losses: number[]; log: string } {
  const overrides = [
    `outputDir=${tmp}`,
    `name=gp-${precision}`,
    `stages=[${stage}]`,
    'task.trainLimit=64',
    'task.devLimit=16',
    'optim.batchSize=8',
    'optim.maxSteps=4',
    'log.every=1',
    `optim.gradPrecision=${precision}`,
  ];
  const r = spawnSync(
    process.execPath,
    ['packages/cli/bin/bitdistill.js', 'train', '--config', 'configs/sst2-tiny.yaml', ...overrides, '--log-level', 'info'],
    {
      encoding: 'utf8',
      env: { ...process.env, BITDISTILL_CLI_FROM_SOURCE: '1' },
    },
  );
  expect(r.status, r.stderr).to.equal(0);
  const records = readFileSync(join(tmp, `gp-${precision}`, stage, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number | string>)
    .filter((x) => x['type'] === 'train');
  return { losses: records.map((x) => x['loss'] as number), log: r.stdout + r.stderr };
}

describe('bitdistill train with optim.gradPrecision (tiny config, BitNet-SFT and teacher)', function () {
  this.timeout(300_000);

  for (const stage of ['bitnet-sft', 'teacher']) {
    it(`${stage}: bf16 changes only the backward - same first loss, later losses within 1% of fp32; the run says which precision ran`, () => {
      const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-gp-'));
      try {
        initKernels();
        const fp32 = train(tmp, 'fp32', stage);
        const bf16 = train(tmp, 'bf16', stage);
        expect(fp32.losses).to.have.length(4);
        expect(bf16.losses).to.have.length(4);
        expect(bf16.losses[0]).to.equal(fp32.losses[0]);
        for (let i = 1; i < 4; i++) expect(Math.abs((bf16.losses[i] as number) - (fp32.losses[i] as number))).to.be.below(0.01 * (fp32.losses[i] as number));
        if (bf16GradAvailable()) {
          expect(bf16.log).to.match(/backward products in bf16/);
          expect(bf16.losses.slice(1)).to.not.deep.equal(fp32.losses.slice(1));
        } else {
          expect(bf16.log).to.match(/gradPrecision: bf16 needs AVX512_BF16/);
          expect(bf16.losses).to.deep.equal(fp32.losses);
        }
        expect(fp32.log).to.not.match(/in bf16/);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }

  it('rejects an unknown precision, naming the key and the choices', () => {
    const r = spawnSync(
      process.execPath,
      ['packages/cli/bin/bitdistill.js', 'train', '--config', 'configs/sst2-tiny.yaml', 'optim.gradPrecision=fp16', '--log-level', 'warn'],
      {
        encoding: 'utf8',
        env: { ...process.env, BITDISTILL_CLI_FROM_SOURCE: '1' },
      },
    );
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/optim\.gradPrecision/);
    expect(r.stderr).to.match(/fp32 \| bf16/);
  });
});
