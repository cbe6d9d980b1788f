// The benchmarks' helpers: pairing each timed rate with the reads around it, the median every
// table reports, and the native probes they time (read loop, a run of matmuls) with bad input.
import { strict as assert } from 'node:assert';

import { cacheProbe, describeHost, median, MiB, pairedRatios, ReadProbe } from '../../bench/bandwidth';
import { cpuInfo } from '../../lib';
import { binding } from '../../lib/native';

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

  it('names the host a run measured: arch, cpuid vendor and family, cores, kernels', () => {
    const c = cpuInfo();
    const m = describeHost().match(/^(\w+)(?: (\w+) family 0x([0-9a-f]+))?, (\d+) cores, kernels ([\w-]+)$/);
    assert.ok(m, describeHost());
    assert.deepEqual([m[1], m[2] ?? '', parseInt(m[3] ?? '0', 16), Number(m[4]), m[5]],
      [c.arch, c.vendor, c.family, c.physicalCores, c.isa]);
  });

  it('takes the middle value, or the mean of the middle two', () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });

  it('keeps a probe\'s readings by thread count, its buffer at least 1 MiB', () => {
    const probe = new ReadProbe(MiB, 0.01);
    assert.ok(probe.take(1) > 0 && probe.take(2) > 0 && probe.take(1) > 0);
    assert.deepEqual(probe.describe('1 MiB').map((line) => line.replace(/[\d.]+ GB\/s/, 'R').replace(/\([\d.-]+\)/, '(range)')),
      ['1 MiB read, 1t: median R of 2 readings (range)', '1 MiB read, 2t: median R of 1 readings (range)']);
    assert.equal(cacheProbe(1000).bytes, MiB);
    assert.equal(cacheProbe().bytes, 16 * MiB);
  });

  it('reads a caller\'s array in place, and refuses one too small to share', () => {
    const data = new Uint8Array(1 << 20).fill(1);
    binding().adviseHugePages(data);
    assert.ok(binding().measureRead(data, 2, 0.01) > 0);
    assert.throws(() => binding().measureRead(new Uint8Array(300), 2, 0.01), /too small/);
    assert.throws(() => binding().measureRead(1 << 20 as never, 2, 0.01), TypeError);
    assert.throws(() => binding().adviseHugePages(42 as never), TypeError);
  });

  it('runs a matmul by each tensor and checks what it is given', () => {
    const codes = new Uint8Array(32 * 64).map((_, i) => i % 4);
    const t = binding().AddonQTensor.fromCodes('b2', 32, 64, 0, codes, new Float32Array(32).fill(0.5));
    try {
      const x = new Float32Array(64).fill(0.25);
      assert.ok(binding().runMatmuls([t, t], x, 1, 1, 'int8') > 0);
      assert.throws(() => binding().runMatmuls([t], new Float32Array(63), 1, 1, 'int8'), RangeError);
      assert.throws(() => binding().runMatmuls([t], new Float64Array(64) as never, 1, 1, 'int8'), TypeError);
      assert.throws(() => binding().runMatmuls(t as never, x, 1, 1, 'int8'), TypeError);
      assert.throws(() => binding().runMatmuls([], x, 1, 1, 'int8'), RangeError);
    } finally {
      t.dispose();
    }
  });
});
