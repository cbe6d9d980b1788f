// SHARP's conversion recipe: named and explicit schedules, shared projections, ranks per projection.
import { strict as assert } from 'node:assert';

import { resolveMats, resolveRanks, resolveSchedule } from '../../lib/convert/sharp-recipe';

describe('convert/sharp-recipe', () => {
  it('later-half: odd layers t >= n/2 reuse t - 1; every-other: every odd layer', () => {
    const pairs = (name: string, n: number) => resolveSchedule(name, n).map((p) => `${p.target}<${p.reference}`);
    assert.deepEqual(pairs('later-half', 5), ['3<2']);
    assert.deepEqual(pairs('later-half', 8), ['5<4', '7<6']);
    assert.deepEqual(pairs('later-half', 30), ['15<14', '17<16', '19<18', '21<20', '23<22', '25<24', '27<26', '29<28']);
    assert.deepEqual(pairs('every-other', 5), ['1<0', '3<2']);
    assert.deepEqual(pairs('every-other', 4), ['1<0', '3<2']);
    assert.deepEqual(pairs('later-half', 1), []);
  });

  it('explicit pairs TARGET<REFERENCE, sorted by target; arrays as they are', () => {
    assert.deepEqual(resolveSchedule(' 4<2, 3 <2 ', 5), [{ target: 3, reference: 2 }, { target: 4, reference: 2 }]);
    assert.deepEqual(resolveSchedule([{ target: 2, reference: 3 }], 5), [{ target: 2, reference: 3 }]);
    assert.throws(() => resolveSchedule('3>2', 5), RangeError);
    assert.throws(() => resolveSchedule('', 5), RangeError);
    assert.throws(() => resolveSchedule(3, 5), TypeError);
    assert.throws(() => resolveSchedule([{ target: '3', reference: 2 }], 5), TypeError);
  });

  it('mats: distinct projections, in gate, up, down order', () => {
    assert.deepEqual(resolveMats('down, gate'), ['gate', 'down']);
    assert.deepEqual(resolveMats(['up']), ['up']);
    assert.throws(() => resolveMats('gate,gate'), RangeError);
    assert.throws(() => resolveMats('gate,q'), RangeError);
    assert.throws(() => resolveMats([]), TypeError);
  });

  it('ranks: one for all, or per projection with the rest at the default', () => {
    assert.deepEqual(resolveRanks(undefined, 16), { gate: 16, up: 16, down: 16 });
    assert.deepEqual(resolveRanks(8, 16), { gate: 8, up: 8, down: 8 });
    assert.deepEqual(resolveRanks('12', 16), { gate: 12, up: 12, down: 12 });
    assert.deepEqual(resolveRanks('gate=4, down=32', 16), { gate: 4, up: 16, down: 32 });
    assert.deepEqual(resolveRanks({ up: 0 }, 16), { gate: 16, up: 0, down: 16 });
    assert.throws(() => resolveRanks(-1, 16), RangeError);
    assert.throws(() => resolveRanks(2.5, 16), RangeError);
    assert.throws(() => resolveRanks('gate:4', 16), RangeError);
    assert.throws(() => resolveRanks({ attn: 4 }, 16), RangeError);
    assert.throws(() => resolveRanks([4], 16), TypeError);
  });
});
