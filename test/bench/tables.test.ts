// The docs' tables from the benches' JSON: which rows a cell summarizes, and how.
import { strict as assert } from 'node:assert';

import type { GenerateResult } from '../../bench/generate';
import type { KernelResult } from '../../bench/kernels';
import { generateTable, kernelTable } from '../../bench/tables';

function kernelRow(fields: Partial<KernelResult>): KernelResult {
  return {
    format: 'b2', isa: 'avx512', threads: 1, regime: 'dram', layout: 'rows', rows: 64, cols: 64, n: 1, seconds: 1,
    weightGBps: 10, ratioToBandwidth: 0.5, gops: 100, bandwidthGBps: 20, ...fields,
  };
}

function generateRow(fields: Partial<GenerateResult>): GenerateResult {
  return {
    engine: 'lowbit', shape: 'llama-1b', format: 'b2', threads: 2, promptTokens: 32, genTokens: 128, passes: 1, prefillTps: 200,
    prefillPassesTps: [200], decodeTps: 100, decodeRoundsTps: [100], decodeRoundsReadGBps: [40], decodeRoundsRoofline: [0.9],
    rssBytes: 512 * 2 ** 20, fileBytes: 256 * 2 ** 20, bytesPerToken: 300e6, bandwidthGBps: 40, rooflineRatio: 0.9, ...fields,
  };
}

const bodyLines = (table: string) => table.split('\n').slice(2);

describe('bench tables', () => {
  it('summarizes a kernel group by the median over its shapes, GEMM at n = 64 / 128', () => {
    const rows = [
      kernelRow({ weightGBps: 10, ratioToBandwidth: 0.5 }), kernelRow({ weightGBps: 30, ratioToBandwidth: 0.9 }),
      kernelRow({ weightGBps: 20, ratioToBandwidth: 0.7 }),
      kernelRow({ regime: 'cache', weightGBps: 40, ratioToBandwidth: 0.6, ratioToSameSizeRead: 0.45 }),
      kernelRow({ regime: 'cache', n: 16, gops: 50 }),
      kernelRow({ regime: 'cache', n: 64, gops: 210 }), kernelRow({ regime: 'cache', n: 64, gops: 250 }),
      kernelRow({ regime: 'cache', n: 128, gops: 300 }),
      kernelRow({ layout: 'interleaved', weightGBps: 25, ratioToBandwidth: 0.95 }),
    ];
    assert.deepEqual(bodyLines(kernelTable(rows)), [
      '| b2 | avx512 | rows | 1 | 20.0 (0.70) | 40.0 (0.60; 0.45) | 230 / 300 |',
      '| b2 | avx512 | interleaved | 1 | 25.0 (0.95) | - | as rows (row copies) |',
    ]);
  });

  it('gives a generate row its paired roofline and the same rate against the run\'s median read', () => {
    const rows = [
      generateRow({ decodeRoundsRoofline: [0.8, 0.95, 0.9], decodeRoundsReadGBps: [30, 30, 60] }),
      generateRow({ format: 'b4', decodeTps: 50, bytesPerToken: 600e6, decodeRoundsReadGBps: [40], rooflineRatio: 0.75 }),
      generateRow({ threads: 1, decodeRoundsReadGBps: [25] }),
    ];
    assert.deepEqual(bodyLines(generateTable(rows)), [
      // 100 tok/s x 300 MB = 30 GB/s, against the median 2-thread read (30, 30, 40, 60 -> 35)
      '| llama-1b | lowbit | b2 | 2 | 100.0 | 0.90 (0.80-0.95) | 0.86 | 200.0 | 300 | 512 | 256 |',
      '| llama-1b | lowbit | b4 | 2 | 50.0 | 0.75 (0.90-0.90) | 0.86 | 200.0 | 600 | 512 | 256 |',
      '| llama-1b | lowbit | b2 | 1 | 100.0 | 0.90 (0.90-0.90) | 1.20 | 200.0 | 300 | 512 | 256 |',
    ]);
  });
});
