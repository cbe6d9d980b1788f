/**
 * Kernel benchmark (npm run bench:kernels): GEMV and GEMM for every format and instruction set,
 * 1 and 2 threads, in two regimes — DRAM-bound (cycling through enough matrices that >= 512 MiB
 * of weights stream per pass) and cache-resident (one matrix of at most 16 MiB, repeated) — with
 * each kernel's weight throughput as a ratio to this machine's read bandwidth measured in the same
 * run, just before and just after the row (the host's bandwidth drifts): for a DRAM row, reads of
 * 1 GiB; for a cache row, reads of a 16 MiB buffer, and, stricter, of a buffer the matrix's size.
 * GEMVs run on row-major weights and, where the ISA has the interleaved GEMV (what models use
 * there), on an interleaved copy too (`layout`). Prints a table and writes
 * bench/results/kernels.json.
 *
 * Options: --isa avx512,avx2  --threads 1,2  --formats b2,b4  --regimes dram,cache,gemm
 *          --max-time SECONDS (per measurement, default 0.5)  --out FILE
 */
import Benchmark from 'benchmark';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { cpuInfo } from '../lib';
import { type AddonQTensor, binding, type IsaName } from '../lib/native';
import { cacheProbe, describeHost, dramProbe, MiB, ReadProbe } from './bandwidth';

const FORMATS = ['b1', 't158', 'b2', 'b3', 'b4'] as const;
type Format = (typeof FORMATS)[number];
const CODES: Record<Format, number> = { b1: 2, t158: 3, b2: 4, b3: 8, b4: 16 };
const GEMV_SHAPES: [number, number][] = [[4096, 4096], [11008, 4096], [4096, 11008], [2048, 8192], [8192, 2048], [3584, 1280]];
const GEMM_SHAPES: [number, number][] = [[4096, 4096], [2048, 8192], [3584, 1280]];
const GEMM_N = [16, 64, 128];
const DRAM_BYTES = 512 * MiB;
const CACHE_LIMIT = 16 * MiB;
/** Cache-resident GEMVs per timed pass (the same matrix again). */
const CACHE_REPEATS = 32;

export interface KernelResult {
  format: Format;
  isa: IsaName;
  threads: number;
  regime: 'dram' | 'cache';
  /** Weight layout: row-major, or interleaved groups of 16 rows (AddonQTensor.interleaved()). */
  layout: 'rows' | 'interleaved';
  rows: number;
  cols: number;
  n: number;
  seconds: number;
  weightGBps: number;
  ratioToBandwidth: number;
  gops: number;
  /** The mean of the reads just before and just after the row: of 1 GiB (DRAM rows) or 16 MiB (cache rows). */
  bandwidthGBps: number;
  /** Cache GEMV rows: the same of a buffer the matrix's size, and weightGBps over it (stricter). */
  sameSizeReadGBps?: number;
  ratioToSameSizeRead?: number;
}

const { values } = parseArgs({
  options: {
    isa: { type: 'string' }, threads: { type: 'string', default: '1,2' }, formats: { type: 'string', default: FORMATS.join(',') },
    regimes: { type: 'string', default: 'dram,cache,gemm' }, 'max-time': { type: 'string', default: '0.5' },
    out: { type: 'string', default: path.join(__dirname, 'results', 'kernels.json') },
  },
});
const info = cpuInfo();
const isas = (values.isa?.split(',') ?? info.isas.filter((i) => i !== 'ref')) as IsaName[];
const threadCounts = values.threads!.split(',').map(Number);
const formats = values.formats!.split(',') as Format[];
const regimes = new Set(values.regimes!.split(','));
const maxTime = Number(values['max-time']);
const dramReads = dramProbe(), cacheReads = cacheProbe();

// benchmark.js would otherwise recompile fn from its source text, losing the closure.
(Benchmark as unknown as { support: { decompilation: boolean } }).support.decompilation = false;

/**
 * Mean seconds per matmul by each of `tensors` (n columns of x), by benchmark.js (at least 5
 * samples, about maxTime seconds) timing passes of one native call that runs them in turn: a JS
 * call costs 1-3 us, a fifth of a short cache-resident GEMV, and models call kernels natively.
 */
function time(tensors: AddonQTensor[], x: Float32Array, n: number, threads: number, isa: IsaName): number {
  const fn = () => void binding().runMatmuls(tensors, x, n, threads, 'int8', isa);
  const bench = new Benchmark({ fn, maxTime, minSamples: 5, initCount: 1 });
  bench.run();
  if (bench.error) throw bench.error;
  return bench.stats.mean / tensors.length;
}

/** A rows x cols matrix of random codes and per-row scales (the data does not change the speed). */
function randomMatrix(format: Format, rows: number, cols: number): AddonQTensor {
  const codes = new Uint8Array(rows * cols);
  for (let i = 0; i < codes.length; i++) codes[i] = (Math.random() * CODES[format]) | 0;
  const scales = Float32Array.from({ length: rows }, () => 0.01 + Math.random() * 0.01);
  return binding().AddonQTensor.fromCodes(format, rows, cols, 0, codes, scales);
}

function copies(t: AddonQTensor, count: number, layout: KernelResult['layout']): AddonQTensor[] {
  const { format, rows, cols } = t.info();
  const packed = t.packed(), scales = t.scales();
  return Array.from({ length: count }, () => {
    const copy = binding().AddonQTensor.fromPacked(format, rows, cols, 0, packed, scales);
    if (layout === 'rows') return copy;
    const interleaved = copy.interleaved();
    copy.dispose();
    return interleaved;
  });
}

/**
 * Runs `timing` (returning seconds) between two readings of each probe; returns the seconds and
 * each probe's mean of its two readings, the bandwidth the row is divided by.
 */
function timeBetweenReads(probes: ReadProbe[], threads: number, timing: () => number): { seconds: number; reads: number[] } {
  const before = probes.map((p) => p.take(threads));
  const seconds = timing();
  return { seconds, reads: probes.map((p, i) => (before[i] + p.take(threads)) / 2) };
}

const results: KernelResult[] = [];

function record(r: Omit<KernelResult, 'weightGBps' | 'ratioToBandwidth' | 'gops' | 'ratioToSameSizeRead'>, bytes: number) {
  const weightGBps = bytes / r.seconds / 1e9;
  const row: KernelResult = {
    ...r, weightGBps, ratioToBandwidth: weightGBps / r.bandwidthGBps, gops: (2 * r.rows * r.cols * r.n) / r.seconds / 1e9,
  };
  if (r.sameSizeReadGBps) row.ratioToSameSizeRead = weightGBps / r.sameSizeReadGBps;
  results.push(row);
  console.log(
    `${row.format.padEnd(5)} ${row.isa.padEnd(13)} ${row.threads}t ${row.regime.padEnd(5)} ${row.layout.padEnd(11)} ${`${row.rows}x${row.cols}`.padEnd(11)} n=${String(row.n).padEnd(4)}` +
      ` ${(row.seconds * 1e6).toFixed(1).padStart(9)} us ${row.weightGBps.toFixed(1).padStart(6)} GB/s  ratio ${row.ratioToBandwidth.toFixed(2)}` +
      `  ${row.gops.toFixed(0).padStart(5)} GOP/s  (bandwidth ${row.bandwidthGBps.toFixed(1)}` +
      `${row.ratioToSameSizeRead ? `; same-size read ${row.sameSizeReadGBps!.toFixed(1)}, ratio ${row.ratioToSameSizeRead.toFixed(2)}` : ''})`,
  );
}

function gemv(format: Format, rows: number, cols: number) {
  const x = Float32Array.from({ length: cols }, () => Math.random() - 0.5);
  const layouts: KernelResult['layout'][] = ['rows'];
  if (info.interleavedIsas.some((i) => isas.includes(i))) layouts.push('interleaved');
  for (const layout of layouts) {
    const base = randomMatrix(format, rows, cols);
    const bytes = base.info().bytes;
    const one = layout === 'rows' ? base : base.interleaved();
    if (one !== base) base.dispose();
    const dram = regimes.has('dram') ? [one, ...copies(one, Math.ceil(DRAM_BYTES / bytes) - 1, layout)] : [];
    const sameSizeReads = regimes.has('cache') && bytes <= CACHE_LIMIT ? cacheProbe(bytes) : undefined;
    for (const isa of isas) {
      if (layout === 'interleaved' && !info.interleavedIsas.includes(isa)) continue;
      for (const threads of threadCounts) {
        const shape = { format, isa, threads, layout, rows, cols, n: 1 };
        if (dram.length) {
          const { seconds, reads: [bandwidthGBps] } = timeBetweenReads([dramReads], threads, () => time(dram, x, 1, threads, isa));
          record({ ...shape, regime: 'dram', seconds, bandwidthGBps }, bytes);
        }
        if (sameSizeReads) {
          const { seconds, reads: [bandwidthGBps, sameSizeReadGBps] } =
            timeBetweenReads([cacheReads, sameSizeReads], threads, () => time(Array(CACHE_REPEATS).fill(one), x, 1, threads, isa));
          record({ ...shape, regime: 'cache', seconds, bandwidthGBps, sameSizeReadGBps }, bytes);
        }
      }
    }
    for (const t of new Set([one, ...dram])) t.dispose();
  }
}

function gemm(format: Format, rows: number, cols: number) {
  const w = randomMatrix(format, rows, cols);
  const bytes = w.info().bytes;
  for (const n of GEMM_N) {
    const x = Float32Array.from({ length: n * cols }, () => Math.random() - 0.5);
    for (const isa of isas) {
      for (const threads of threadCounts) {
        const { seconds, reads: [bandwidthGBps] } = timeBetweenReads([cacheReads], threads, () => time([w], x, n, threads, isa));
        record({ format, isa, threads, regime: 'cache', layout: 'rows', rows, cols, n, seconds, bandwidthGBps }, bytes);
      }
    }
  }
  w.dispose();
}

console.log(`lowbit kernel benchmark: ${describeHost()}; ISAs ${isas.join(', ')}, threads ${threadCounts.join(', ')}`);
for (const threads of threadCounts) {
  console.log(`read bandwidth, ${threads} thread(s): DRAM ${dramReads.take(threads).toFixed(1)} GB/s, 16 MiB ${cacheReads.take(threads).toFixed(1)} GB/s`);
}
for (const format of formats) {
  if (regimes.has('dram') || regimes.has('cache')) for (const [rows, cols] of GEMV_SHAPES) gemv(format, rows, cols);
  if (regimes.has('gemm')) for (const [rows, cols] of GEMM_SHAPES) gemm(format, rows, cols);
}
for (const line of [...dramReads.describe('DRAM'), ...cacheReads.describe('16 MiB')]) console.log(line);

fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${results.length} rows to ${values.out}`);
