/**
 * The tables of docs/BENCHMARKS.md, printed as markdown from the benches' JSON (npm run
 * bench:tables), so every table there comes from a file one command wrote:
 * - kernels (bench/results/kernels.json): one line per format, ISA, layout and thread count; the
 *   median over the GEMV shapes of GB/s and of each ratio, and the median GEMM rate over its
 *   shapes at n = 64 and 128;
 * - generate (bench/results/generate.json): one line per row, with its paired roofline (median
 *   and range of its rounds) and the same rate against the run's median read for its thread count.
 * A table whose file is missing is skipped.
 *
 * Options: --kernels FILE  --generate FILE
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { median, MiB } from './bandwidth';
import type { GenerateResult } from './generate';
import type { KernelResult } from './kernels';

const fixed = (digits: number) => (x: number) => x.toFixed(digits);

function markdown(header: string[], lines: string[][]): string {
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** Rows grouped by key, groups in order of first appearance. */
function groupBy<T>(rows: readonly T[], key: (row: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const k = key(row);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(row);
  }
  return [...groups.values()];
}

/** "median (ratio median)" of `rows`, or "-" when there are none. */
function gemvCell(rows: KernelResult[], withSameSize: boolean): string {
  if (!rows.length) return '-';
  const ratios = [median(rows.map((r) => r.ratioToBandwidth))];
  if (withSameSize) ratios.push(median(rows.map((r) => r.ratioToSameSizeRead ?? NaN)));
  return `${fixed(1)(median(rows.map((r) => r.weightGBps)))} (${ratios.map(fixed(2)).join('; ')})`;
}

export function kernelTable(results: readonly KernelResult[]): string {
  const lines = groupBy(results, (r) => `${r.format} ${r.isa} ${r.layout} ${r.threads}`).map((rows) => {
    const { format, isa, layout, threads } = rows[0];
    const gemv = (regime: KernelResult['regime']) => rows.filter((r) => r.n === 1 && r.regime === regime);
    const gemm = [64, 128].map((n) => rows.filter((r) => r.n === n));
    const gemmCell = layout === 'interleaved' ? 'as rows (row copies)'
      : gemm.every((g) => g.length) ? gemm.map((g) => fixed(0)(median(g.map((r) => r.gops)))).join(' / ') : '-';
    return [format, isa, layout, String(threads), gemvCell(gemv('dram'), false), gemvCell(gemv('cache'), true), gemmCell];
  });
  return markdown(['format', 'ISA', 'layout', 'threads', 'DRAM GEMV GB/s (ratio)',
    'cached GEMV GB/s (ratio to 16 MiB read; to same-size read)', 'GEMM GOP/s, n = 64 / 128'], lines);
}

export function generateTable(results: readonly GenerateResult[]): string {
  const runRead = new Map(groupBy(results, (r) => String(r.threads))
    .map((rows) => [rows[0].threads, median(rows.flatMap((r) => r.decodeRoundsReadGBps))]));
  const lines = results.map((r) => {
    const rounds = r.decodeRoundsRoofline;
    const againstRun = r.decodeTps * r.bytesPerToken / 1e9 / runRead.get(r.threads)!;
    return [r.shape, r.engine, r.format, String(r.threads), fixed(1)(r.decodeTps),
      `${fixed(2)(r.rooflineRatio)} (${fixed(2)(Math.min(...rounds))}-${fixed(2)(Math.max(...rounds))})`, fixed(2)(againstRun),
      fixed(1)(r.prefillTps), fixed(0)(r.bytesPerToken / 1e6), fixed(0)(r.rssBytes / MiB), fixed(0)(r.fileBytes / MiB)];
  });
  return markdown(['shape', 'engine', 'format', 'threads', 'decode tok/s', 'roofline, paired (rounds)', 'roofline, run-median read',
    'prefill tok/s (512)', 'MB read / token', 'peak RSS MiB', 'file MiB'], lines);
}

function main() {
  const results = path.join(__dirname, 'results');
  const { values } = parseArgs({
    options: {
      kernels: { type: 'string', default: path.join(results, 'kernels.json') },
      generate: { type: 'string', default: path.join(results, 'generate.json') },
    },
  });
  const tables: [string, string, (rows: never[]) => string][] = [
    ['kernels', values.kernels!, kernelTable], ['generate', values.generate!, generateTable]];
  for (const [name, file, table] of tables) {
    if (!fs.existsSync(file)) {
      console.log(`(${name}: no ${file})\n`);
      continue;
    }
    console.log(`${name} (${file}):\n\n${table(JSON.parse(fs.readFileSync(file, 'utf8')))}\n`);
  }
}

if (require.main === module) main();
