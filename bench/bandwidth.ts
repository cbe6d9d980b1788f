/**
 * This machine's read bandwidth, measured natively for a thread count: the denominator of every
 * throughput ratio the benchmarks report (kernel GB/s divided by what a plain streaming read of
 * the same kind achieves in the same run).
 */
import { cpuInfo } from '../lib';
import { binding } from '../lib/native';

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/**
 * The machine a run measured, for its log: figures differ by core (docs/BENCHMARKS.md has runs on
 * Zen 4 and Zen 5), e.g. "x64 AuthenticAMD family 0x1a, 2 cores, kernels avx512".
 */
export function describeHost(): string {
  const c = cpuInfo();
  const core = c.vendor ? ` ${c.vendor} family 0x${c.family.toString(16)}` : '';
  return `${c.arch}${core}, ${c.physicalCores} cores, kernels ${c.isa}`;
}

/** The middle value (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b), mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Read bandwidth readings taken through a run, by thread count: repeated streaming reads of one
 * buffer of `bytes` with the default ISA's read loop. The buffer lies on 2 MiB pages where the OS
 * gives them, as the kernels' weights do (4 KiB pages read 5-10% slower here), and is allocated
 * and faulted in once (that costs more than a reading). This shared machine's bandwidth drifts
 * within a run (one run's 2-thread DRAM readings spread from 32 to 65 GB/s, another's 1-thread
 * 16 MiB readings from 40 to 76 GB/s) while a kernel or a decode round keeps its pace, so the
 * benchmarks pair each timing with the readings taken just before and after it (pairedRatios).
 */
export class ReadProbe {
  private readonly readings = new Map<number, number[]>();
  private buffer?: Uint8Array;

  /** `seconds`: how long one reading reads (a short one suffices for a cache-resident buffer). */
  constructor(readonly bytes: number, private readonly seconds = 0.3) {}

  /** Reads the buffer for about `seconds` now on `threads` threads; returns this reading's GB/s. */
  take(threads: number): number {
    if (!this.buffer) {
      this.buffer = new Uint8Array(this.bytes);
      binding().adviseHugePages(this.buffer);
      this.buffer.fill(1);
    }
    const gbps = this.bytes / binding().measureRead(this.buffer, threads, this.seconds) / 1e9;
    this.readings.set(threads, [...(this.readings.get(threads) ?? []), gbps]);
    return gbps;
  }

  /** Frees the buffer (a later take allocates it again). */
  release(): void {
    this.buffer = undefined;
  }

  /** One line per thread count: median, count and range of the readings. */
  describe(label: string): string[] {
    return [...this.readings].map(([threads, all]) =>
      `${label} read, ${threads}t: median ${median(all).toFixed(1)} GB/s of ${all.length} readings (${Math.min(...all).toFixed(1)}-${Math.max(...all).toFixed(1)})`);
  }
}

/** DRAM read bandwidth: a 1 GiB buffer, 32 times L3. */
export const dramProbe = (): ReadProbe => new ReadProbe(GiB);

/**
 * Cache read bandwidth: a 16 MiB buffer (issue 2's cache figure), or, the stricter figure for a
 * cache-resident matrix, a buffer the working set's size (at least 1 MiB): a smaller buffer reads
 * faster (L3-resident 4 MiB about 1.2x 16 MiB here, and an L2-resident one far more).
 */
export const cacheProbe = (workingSet = 16 * MiB): ReadProbe => new ReadProbe(Math.max(workingSet, MiB), 0.1);

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
