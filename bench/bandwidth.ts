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
export function readBandwidth(bytes: number, threads: number, isas: readonly IsaName[], seconds = 0.5): number {
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

/** DRAM read bandwidth: a streaming read of 1 GiB, far beyond any cache (the run's first measurement). */
export function dramBandwidth(threads: number, isas: readonly IsaName[]): number {
  return readBandwidth(GiB, threads, isas, 1.0);
}

/** DRAM read bandwidth measured again now, for a ratio to a measurement taken right after it. */
export function dramBandwidthNow(threads: number, isas: readonly IsaName[]): number {
  return measureReadBandwidth(GiB, threads, isas, 1.0);
}

/**
 * Cache read bandwidth for a working set: the better of a 16 MiB buffer read repeatedly and a
 * buffer of the working set's own size, so small, L2-resident matrices are not flattered.
 */
export function cacheBandwidth(workingSet: number, threads: number, isas: readonly IsaName[]): number {
  return Math.max(readBandwidth(16 * MiB, threads, isas), readBandwidth(Math.max(workingSet, MiB), threads, isas));
}
