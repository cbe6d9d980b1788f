/**
 * This machine's read bandwidth, measured natively for a thread count: the denominator of every
 * throughput ratio the benchmarks report (kernel GB/s divided by what a plain streaming read of
 * the same kind achieves in the same run). The fastest of the available ISAs' read loops counts.
 */
import { binding, type IsaName } from '../lib/native';

const cache = new Map<string, number>();

/** GB/s of reading `bytes` repeatedly on `threads` threads, measured now. */
function measureReadBandwidth(bytes: number, threads: number, isas: readonly IsaName[], seconds: number): number {
  const simd = isas.filter((i) => i !== 'ref');
  return Math.max(...(simd.length ? simd : isas).map((isa) => bytes / binding().measureRead(bytes, threads, seconds, isa) / 1e9));
}

/** GB/s of reading `bytes` repeatedly on `threads` threads (measured once per size and count). */
function readBandwidth(bytes: number, threads: number, isas: readonly IsaName[], seconds = 0.5): number {
  const key = `${bytes}/${threads}`;
  let best = cache.get(key);
  if (best === undefined) {
    best = measureReadBandwidth(bytes, threads, isas, seconds);
    cache.set(key, best);
  }
  return best;
}

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/** The middle value (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b), mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * DRAM read bandwidth readings taken through a run, by thread count. This shared machine's
 * bandwidth drifts within a run (one run's 2-thread readings spread from 32 to 65 GB/s), so a
 * single reading is no fair denominator: ratios divide by the median of the run's readings.
 */
export class DramReadings {
  private readonly readings = new Map<number, number[]>();

  constructor(private readonly isas: readonly IsaName[]) {}

  /** Reads 1 GiB now on `threads` threads; returns this reading's GB/s. */
  take(threads: number): number {
    const gbps = measureReadBandwidth(GiB, threads, this.isas, 1.0);
    this.readings.set(threads, [...(this.readings.get(threads) ?? []), gbps]);
    return gbps;
  }

  /** The median of the readings for `threads` (taking one if there is none yet). */
  median(threads: number): number {
    return median(this.readings.get(threads) ?? [this.take(threads)]);
  }

  /** One line per thread count: median, count and range of the readings. */
  describe(): string[] {
    return [...this.readings].map(([threads, all]) =>
      `DRAM read, ${threads}t: median ${median(all).toFixed(1)} GB/s of ${all.length} readings (${Math.min(...all).toFixed(1)}-${Math.max(...all).toFixed(1)})`);
  }
}

/**
 * Cache read bandwidth for a working set: the better of a 16 MiB buffer read repeatedly and a
 * buffer of the working set's own size, so small, L2-resident matrices are not flattered.
 */
export function cacheBandwidth(workingSet: number, threads: number, isas: readonly IsaName[]): number {
  return Math.max(readBandwidth(16 * MiB, threads, isas), readBandwidth(Math.max(workingSet, MiB), threads, isas));
}
