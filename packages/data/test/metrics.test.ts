import { expect } from 'chai';
import { accuracy, averageRanks, computeMetrics, f1, matthews, pearson, spearman } from '../src/metrics.ts';
import { GLUE_TASKS } from '../src/tasks.ts';

// Hand-computed values (worked out in the comments), not outputs of the code under test.
describe('metrics', () => {
  const golds = [1, 0, 0, 1, 1];
  const preds = [1, 1, 0, 0, 1]; // TP = 2 (0, 4), FP = 1 (1), TN = 1 (2), FN = 1 (3)

  it('accuracy', () => {
    expect(accuracy(preds, golds)).to.equal(3 / 5);
    expect(accuracy([2, 1, 0], [2, 1, 1])).to.equal(2 / 3);
  });

  it('binary F1 of class 1 = 2TP / (2TP + FP + FN)', () => {
    expect(f1(preds, golds)).to.be.closeTo(4 / 6, 1e-12);
    expect(f1([0, 0], [0, 0])).to.equal(0); // no positives anywhere: undefined, reported 0
    expect(f1([1, 1], [1, 1])).to.equal(1);
  });

  it('Matthews correlation', () => {
    // (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3 * 3 * 2 * 2) = 1/6
    expect(matthews(preds, golds)).to.be.closeTo(1 / 6, 1e-12);
    // scikit-learn's documented example: y_true [+1,+1,+1,-1], y_pred [+1,-1,+1,+1] -> -1/3
    expect(matthews([1, -1, 1, 1], [1, 1, 1, -1])).to.be.closeTo(-1 / 3, 1e-12);
    expect(matthews(golds, golds)).to.equal(1);
    expect(
      matthews(
        golds.map((g) => 1 - g),
        golds,
      ),
    ).to.equal(-1);
    expect(matthews([1, 1, 1, 1, 1], golds)).to.equal(0); // constant prediction: undefined, reported 0
    // an invalid prediction (-1) is in no class: c = 3, s = 5, t = (2, 3), p = (2, 2)
    // (c s - sum p t) / sqrt((s^2 - sum p^2)(s^2 - sum t^2)) = (15 - 10) / sqrt(17 * 12)
    expect(matthews([1, -1, 0, 0, 1], golds)).to.be.closeTo(5 / Math.sqrt(204), 1e-12);
    // three classes, confusion [[2,1,0],[0,1,1],[1,0,1]]: c = 4, s = 7, t = (3,2,2), p = (3,2,2)
    // (28 - 17) / sqrt((49 - 17)(49 - 17)) = 11 / 32
    expect(matthews([0, 0, 1, 1, 2, 2, 0], [0, 0, 0, 1, 1, 2, 2])).to.be.closeTo(11 / 32, 1e-12);
  });

  it('Pearson', () => {
    // dx = (-2,-1,0,1,2), dy = (-2,0,1,0,1): 6 / sqrt(10 * 6)
    expect(pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])).to.be.closeTo(6 / Math.sqrt(60), 1e-12);
    expect(pearson([1, 2, 3], [3, 2, 1])).to.be.closeTo(-1, 1e-12);
    expect(pearson([2, 2, 2], [1, 2, 3])).to.equal(0);
  });

  it('Spearman with ties given their average rank', () => {
    expect(Array.from(averageRanks([10, 20, 10, 30]))).to.deep.equal([1.5, 3, 1.5, 4]);
    // ranks of y = (1, 2.5, 4.5, 2.5, 4.5); dy = (-2,-.5,1.5,-.5,1.5): 7 / sqrt(10 * 9)
    expect(spearman([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])).to.be.closeTo(7 / Math.sqrt(90), 1e-12);
    expect(spearman([1, 2, 3, 4], [1, 8, 27, 64])).to.be.closeTo(1, 1e-12);
  });

  it('computeMetrics reports the task metrics in order; STS-B non-answers count as 2.5', () => {
    expect(computeMetrics(GLUE_TASKS.mrpc, preds, golds)).to.deep.equal({ f1: f1(preds, golds), accuracy: 0.6 });
    const m = computeMetrics(GLUE_TASKS.stsb, [5, NaN, 0], [4.5, 2, 1]);
    expect(Object.keys(m)).to.deep.equal(['pearson', 'spearman']);
    expect(m.pearson).to.be.closeTo(pearson([5, 2.5, 0], [4.5, 2, 1]), 1e-12);
    expect(() => accuracy([1], [1, 0])).to.throw(/1 predictions for 2 gold labels/);
  });
});
