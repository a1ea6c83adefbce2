// summary.md: the stage table, and the config's note (issue 19) as small print under it.
import { expect } from 'chai';
import { summaryMarkdown, type StageSummary } from '../src/run.ts';

const ROW: StageSummary = {
  stage: 'distill',
  status: 'trained',
  metric: 'accuracy',
  value: 0.5745,
  metrics: { accuracy: 0.5745 },
  examples: 872,
  steps: 300,
  seconds: 12.5,
  peakRssMiB: 300,
};

describe('trainer/summaryMarkdown', () => {
  it('without a note: the table only', () => {
    const md = summaryMarkdown('x', [ROW]);
    expect(md).to.contain('| distill |');
    expect(md).to.contain('57.45');
    expect(md).not.to.contain('<sub>');
  });

  it("with a note: one line of small print under the table, the YAML's line breaks folded", () => {
    const md = summaryMarkdown('x', [ROW], 'Expect modest accuracies.\n  See docs/results/lm-stories260k.md.\n');
    const lines = md.trimEnd().split('\n');
    expect(lines[lines.length - 1]).to.equal('<sub>Expect modest accuracies. See docs/results/lm-stories260k.md.</sub>');
    expect(md.indexOf('<sub>')).to.be.greaterThan(md.indexOf('| distill |'));
  });
});
