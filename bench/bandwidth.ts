/**
 * This machine's read bandwidth, measured natively for a thread count: the denominator of every
 * throughput ratio the benchmarks report (kernel GB/s divided by what a plain streaming read of
 * the same kind achieves in the same run).
 */
import { binding, type IsaName } from '../lib/native';

const cache = new Map<string, number>();

/**
 * GB/s of reading `bytes` repeatedly on `threads` threads, measured once per size and count; the
 * fastest of the ISAs' read loops counts (in cache, wider loads read faster).
 */
function readBandwidth(bytes: number, threads: number, isas: readonly IsaName[], seconds = 0.5): number {
  const key = `${bytes}/${threads}`;
  let best = cache.get(key);
  if (best === undefined) {
    const simd = isas.filter((i) => i !== 'ref');
    best = Math.max(...(simd.length ? simd : isas).map((isa) => bytes / binding().measureRead(bytes, threads, seconds, isa) / 1e9));
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
 * DRAM read bandwidth readings taken through a run, by thread count: a streaming read of one 1 GiB
 * buffer with the default ISA's read loop. The buffer lies on 2 MiB pages where the OS gives them,
 * as the kernels' weights do (4 KiB pages read 5-10% slower here), and is allocated and faulted in
 * once (that costs more than a reading). This shared machine's bandwidth drifts within a run (one run's 2-thread readings
 * spread from 32 to 65 GB/s) while a kernel or a decode round keeps its pace, so the benchmarks
 * pair each timing with the readings taken just before and after it (pairedRatios).
 */
export class DramReadings {
  private readonly readings = new Map<number, number[]>();
  private buffer?: Uint8Array;

  /** Reads the buffer for about `seconds` now on `threads` threads; returns this reading's GB/s. */
  take(threads: number, seconds = 0.3): number {
    if (!this.buffer) {
      this.buffer = new Uint8Array(GiB);
      binding().adviseHugePages(this.buffer);
      this.buffer.fill(1);
    }
    const gbps = GiB / binding().measureRead(this.buffer, threads, seconds) / 1e9;
    this.readings.set(threads, [...(this.readings.get(threads) ?? []), gbps]);
    return gbps;
  }

  /** Frees the buffer (a later take allocates it again). */
  release(): void {
    this.buffer = undefined;
  }

  /** One line per thread count: median, count and range of the readings. */
  describe(): string[] {
    return [...this.readings].map(([threads, all]) =>
      `DRAM read, ${threads}t: median ${median(all).toFixed(1)} GB/s of ${all.length} readings (${Math.min(...all).toFixed(1)}-${Math.max(...all).toFixed(1)})`);
  }
}

/**
 * Rates paired with the read bandwidth around them: reads[i] was taken just before rates[i] and
 * reads[i + 1] just after, so reads holds one more value than rates. Each rate is divided by the
 * mean of its two neighbours (both GB/s); returns those means and the ratios.
 */
export function pairedRatios(ratesGBps: readonly number[], readsGBps: readonly number[]): { reads: number[]; ratios: number[] } {
  if (readsGBps.length !== ratesGBps.length + 1) throw new RangeError(`pairedRatios: ${ratesGBps.length} rates need ${ratesGBps.length + 1} reads, got ${readsGBps.length}`);
  const reads = ratesGBps.map((_, i) => (readsGBps[i] + readsGBps[i + 1]) / 2);
  return { reads, ratios: ratesGBps.map((rate, i) => rate / reads[i]) };
}

/** Cache read bandwidth: a 16 MiB buffer read repeatedly (issue 2's cache figure). */
export function cacheBandwidth(threads: number, isas: readonly IsaName[]): number {
  return readBandwidth(16 * MiB, threads, isas);
}

/**
 * Read bandwidth of a buffer the working set's size (at least 1 MiB): the stricter figure for a
 * cache-resident matrix, since a smaller buffer reads faster (L3-resident 4 MiB about 1.2x 16 MiB
 * here, and an L2-resident one far more).
 */
export function sameSizeReadBandwidth(workingSet: number, threads: number, isas: readonly IsaName[]): number {
  return readBandwidth(Math.max(workingSet, MiB), threads, isas);
}
