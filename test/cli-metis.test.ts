// "The Metis option training the tiny config end to end" (issue 22): the real CLI trains the bundled default's
// teacher stage (configs/sst2-tiny.yaml) with NVFP4 forward / FP8 E5M2 backward GEMMs under Metis - spectral split,
// spectral learning rate and the dual-range regularizer all on - for a few steps, from `key=value` overrides only.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('bitdistill train with lowbitGemm.metis on the tiny config', function () {
  this.timeout(300_000);

  it('trains the teacher stage; metrics.jsonl logs the dualRange term, its weight and the split refreshes', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'bitdistill-metis-'));
    try {
      const overrides = [
        `outputDir=${tmp}`,
        'name=metis-tiny',
        'stages=[teacher]',
        'task.trainLimit=64',
        'task.devLimit=32',
        'optim.batchSize=8',
        'optim.maxSteps=4',
        'log.every=1',
        'lowbitGemm.forward=nvfp4',
        'lowbitGemm.backward=fp8-e5m2',
        'lowbitGemm.metis.enabled=true',
        'lowbitGemm.metis.rankFraction=0.05',
        'lowbitGemm.metis.refreshEvery=2',
        'lowbitGemm.metis.spectralLr.enabled=true',
        'lowbitGemm.metis.spectralLr.tailScale=1.5',
        'lowbitGemm.metis.dualRange.weight=0.01',
      ];
      const r = spawnSync(
        process.execPath,
        ['packages/cli/bin/bitdistill.js', 'train', '--config', 'configs/sst2-tiny.yaml', ...overrides, '--log-level', 'warn'],
        {
          encoding: 'utf8',
          env: { ...process.env, BITDISTILL_CLI_FROM_SOURCE: '1' },
        },
      );
      expect(r.status, r.stderr).to.equal(0);
      const dir = join(tmp, 'metis-tiny', 'teacher');
      expect(existsSync(join(dir, 'final', 'model.safetensors'))).to.equal(true);
      const records = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, number | string>);
      const train = records.filter((x) => x['type'] === 'train');
      expect(train.map((x) => x['step'])).to.deep.equal([1, 2, 3, 4]);
      for (const x of train) {
        expect(x['dualRange'], JSON.stringify(x))
          .to.be.a('number')
          .and.satisfy((v: number) => Number.isFinite(v) && v > 0);
        expect(x['metis.dualRangeWeight']).to.equal(0.01);
        // stories260K: k = round(0.05 * 64) = 3 on q, o, gate, up, down; round(0.05 * 32) = 2 on the 32-row k and v
        expect(x['metis.rank']).to.be.closeTo(19 / 7, 1e-12);
        expect(x['metis.dominantEnergy']).to.be.within(0, 1);
        // loss = ce + 0.01 * dualRange
        expect(x['loss'] as number).to.be.closeTo((x['ce'] as number) + 0.01 * (x['dualRange'] as number), 1e-5);
      }
      expect(train.map((x) => x['metis.refreshedAt'])).to.deep.equal([0, 0, 2, 2]);
      expect(records.some((x) => x['type'] === 'eval')).to.equal(true);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
