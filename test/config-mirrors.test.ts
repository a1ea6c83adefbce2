// config sits below data (it must not load data's readers), so it keeps copies of two of data's lists; they must
// stay equal. The lists config owns (backends, schedules, SubLN / weight-quant modes) are imported by their users.
import { expect } from 'chai';
import { DATASET_FORMATS as DATA_FORMATS, METRIC_NAMES } from '@bitdistill/data';
import { DATASET_FORMATS, METRICS } from '../packages/config/src/train-config.ts';

describe('config mirrors of data lists', () => {
  it("metrics and dataset formats equal data's", () => {
    expect([...METRICS]).to.deep.equal([...METRIC_NAMES]);
    expect([...DATASET_FORMATS]).to.deep.equal([...DATA_FORMATS]);
  });
});
