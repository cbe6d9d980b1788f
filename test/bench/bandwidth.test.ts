// The benchmarks' bandwidth helpers: pairing each timed rate with the reads around it, and the
// median every table reports.
import { strict as assert } from 'node:assert';

import { median, pairedRatios } from '../../bench/bandwidth';

describe('bench bandwidth helpers', () => {
  it('divides each rate by the mean of the reads just before and just after it', () => {
    const { reads, ratios } = pairedRatios([30, 27, 40], [32, 36, 24, 56]);
    assert.deepEqual(reads, [34, 30, 40]);
    assert.deepEqual(ratios, [30 / 34, 27 / 30, 1]);
  });

  it('needs one read more than rates', () => {
    assert.throws(() => pairedRatios([30, 27], [32, 36]), RangeError);
    assert.throws(() => pairedRatios([30], [32, 36, 40]), /1 rates need 2 reads, got 3/);
  });

  it('takes the middle value, or the mean of the middle two', () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });
});
