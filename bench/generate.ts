/**
 * End-to-end benchmark (npm run bench:generate): decode and prefill tokens/s, peak RSS and file
 * size for every bit width on synthetic models of real shapes, 1 and 2 threads, against llama.cpp
 * (node-llama-cpp 3.21.1) running the same weights in its nearest types — Q4_0 (from b4), TQ2_0 and
 * TQ1_0 (from t158; only where rows are whole 256-blocks) — with F16 embeddings and head on both
 * sides. Each measurement runs in its own process; the whole list of rows runs --passes times,
 * round robin, and each row keeps the median of all its passes (this shared machine's bandwidth
 * drifts over minutes: one pass alone can catch a row in a fast or slow spell). Reports each
 * decode rate as a share of the DRAM roofline: tokens/s x bytes read per token / read bandwidth,
 * round by round against the reads the worker takes just before and just after that decode round
 * (the host's bandwidth swings between readings a few seconds apart while decode keeps its pace),
 * and the median over all rounds. Writes bench/results/generate.json.
 *
 * Options: --shapes llama-1b,mobilellm-600m  --bits 1,1.58,2,3,4  --threads 1,2  --passes 2
 *          --no-peer  --cache DIR (synthetic models, default bench/.cache)  --out FILE
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { exportGguf, type GgufLinearType } from '../lib/convert/gguf-export';
import { SYNTH_SHAPES, type SynthShapeName, synthModel } from '../lib/convert/synth';
import { openModel } from '../lib/io';
import { EMBED_TOKENS, LM_HEAD } from '../lib/io/llama';
import { describeHost, dramProbe, median, pairedRatios } from './bandwidth';
import { CONTEXT, DECODE_TOKENS, PROMPT_TOKENS, type WorkerResult } from './generate-worker';

const BITS_FORMAT: Record<string, string> = { 1: 'b1', 1.58: 't158', 2: 'b2', 3: 'b3', 4: 'b4' };

export interface GenerateResult {
  engine: 'lowbit' | 'llama.cpp';
  shape: string;
  format: string;
  threads: number;
  promptTokens: number;
  genTokens: number;
  /** Passes over the whole list of rows this row's figures come from. */
  passes: number;
  /** The median of prefillPassesTps. */
  prefillTps: number;
  /** Prefill tokens/s of each pass. */
  prefillPassesTps: number[];
  /** The median of decodeRoundsTps (decode timed DECODE_ROUNDS times in each pass's process). */
  decodeTps: number;
  decodeRoundsTps: number[];
  /** For each decode round, the mean of the DRAM reads taken just before and just after it. */
  decodeRoundsReadGBps: number[];
  /** For each decode round: its tokens/s x bytesPerToken / its read bandwidth. */
  decodeRoundsRoofline: number[];
  /** The largest of the passes' peaks. */
  rssBytes: number;
  fileBytes: number;
  /** Bytes a decode step reads: every weight but the embedding rows it gathers, plus the KV cache. */
  bytesPerToken: number;
  /** The median of decodeRoundsReadGBps. */
  bandwidthGBps: number;
  /** The median of decodeRoundsRoofline: the share of the DRAM roofline decode reaches. */
  rooflineRatio: number;
}

const { values } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'llama-1b,mobilellm-600m' }, bits: { type: 'string', default: '1,1.58,2,3,4' },
    threads: { type: 'string', default: '1,2' }, passes: { type: 'string', default: '2' },
    'no-peer': { type: 'boolean', default: false },
    cache: { type: 'string', default: path.join(__dirname, '.cache') },
    out: { type: 'string', default: path.join(__dirname, 'results', 'generate.json') },
  },
});
const shapes = values.shapes!.split(',') as SynthShapeName[];
const bitsList = values.bits!.split(',');
const threadCounts = values.threads!.split(',').map(Number);
const passes = Number(values.passes);
if (!Number.isInteger(passes) || passes < 1) throw new RangeError(`--passes must be a whole number >= 1, got ${values.passes}`);
const cacheDir = values.cache!;
const MODELS = path.join(__dirname, '..', '..', 'shared', 'models');
/** GGUF files whose tokenizer metadata is the vocabulary of a synth shape, by vocabulary size. */
const VOCABULARIES: Record<number, string> = {
  32000: path.join(MODELS, 'tokenizers', 'ggml-vocab-llama-spm.gguf'),
  512: path.join(MODELS, 'stories260K', 'stories260K-f32.gguf'),
};

/** Weight bytes a decode step streams: all matrices except a separate embedding (only rows are gathered). */
function weightBytesPerToken(file: string): number {
  const source = openModel(file);
  try {
    let bytes = 0;
    const untiedEmbedding = source.tensors.has(LM_HEAD);
    for (const t of source.tensors.values()) {
      if (t.shape.length !== 2 || (t.name === EMBED_TOKENS && untiedEmbedding)) continue;
      bytes += t.byteLength + ('readScales' in t ? t.shape[0] * 4 : 0);
    }
    return bytes;
  } finally {
    source.close();
  }
}

/** KV cache bytes a decode step reads, averaged over the generated tokens (f16 cache: both engines' default). */
function kvBytesPerToken(shape: SynthShapeName): number {
  const c = SYNTH_SHAPES[shape].config;
  const averagePositions = PROMPT_TOKENS + DECODE_TOKENS / 2;
  return 2 * c.nLayers * c.nKvHeads * c.headDim * 2 * averagePositions;
}

function runWorker(engine: 'lowbit' | 'llama.cpp', file: string, threads: number, vocab: number): WorkerResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'generate-worker.ts'), engine, file, String(threads), String(vocab)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as WorkerResult;
}

async function lowbitFile(shape: SynthShapeName, bits: string): Promise<string> {
  const file = path.join(cacheDir, `${shape}-${BITS_FORMAT[bits]}.lowbit`);
  if (!fs.existsSync(file)) {
    console.log(`synthesizing ${path.basename(file)} ...`);
    await synthModel(file, { shape, bits: Number(bits), seed: 1 });
  }
  return file;
}

function ggufFile(shape: SynthShapeName, from: string, type: GgufLinearType): string {
  const file = path.join(cacheDir, `${shape}-${type}.gguf`);
  if (!fs.existsSync(file)) {
    console.log(`exporting ${path.basename(file)} ...`);
    exportGguf(from, file, { linear: type, vocabulary: VOCABULARIES[SYNTH_SHAPES[shape].config.vocabSize] });
  }
  return file;
}

/** One row of the table: an engine running one file at one thread count. */
interface RowSpec {
  engine: GenerateResult['engine'];
  shape: SynthShapeName;
  format: string;
  file: string;
  threads: number;
  bytesPerToken: number;
}

const specs: RowSpec[] = [];
const results: GenerateResult[] = [];


function addRows(engine: GenerateResult['engine'], shape: SynthShapeName, format: string, file: string) {
  const bytesPerToken = weightBytesPerToken(file) + kvBytesPerToken(shape);
  for (const threads of threadCounts) specs.push({ engine, shape, format, file, threads, bytesPerToken });
}

/** Runs one pass of row `spec` and folds it into its result (created by the first pass). */
function measure(spec: RowSpec, index: number, pass: number) {
  const { engine, shape, format, threads, bytesPerToken } = spec;
  const r = runWorker(engine, spec.file, threads, SYNTH_SHAPES[shape].config.vocabSize);
  const row = results[index] ??= {
    engine, shape, format, threads, passes: 0, promptTokens: PROMPT_TOKENS, genTokens: DECODE_TOKENS, prefillTps: 0,
    prefillPassesTps: [], decodeTps: 0, decodeRoundsTps: [], decodeRoundsReadGBps: [], decodeRoundsRoofline: [], rssBytes: 0,
    fileBytes: r.fileBytes, bytesPerToken, bandwidthGBps: 0, rooflineRatio: 0,
  };
  const paired = pairedRatios(r.decodeRoundsTps.map((tps) => tps * bytesPerToken / 1e9), r.decodeReadsGBps);
  row.passes++;
  row.prefillPassesTps.push(r.prefillTps);
  row.prefillTps = median(row.prefillPassesTps);
  row.decodeRoundsTps.push(...r.decodeRoundsTps);
  row.decodeTps = median(row.decodeRoundsTps);
  row.decodeRoundsReadGBps.push(...paired.reads);
  row.bandwidthGBps = median(row.decodeRoundsReadGBps);
  row.decodeRoundsRoofline.push(...paired.ratios);
  row.rooflineRatio = median(row.decodeRoundsRoofline);
  row.rssBytes = Math.max(row.rssBytes, r.rssBytes);
  console.log(
    `pass ${pass + 1}/${passes} ${engine.padEnd(9)} ${shape.padEnd(15)} ${format.padEnd(6)} ${threads}t  decode ${r.decodeTps.toFixed(1).padStart(6)} tok/s ` +
      `(${(r.decodeTps * bytesPerToken / 1e9).toFixed(1)} GB/s; roofline ${paired.ratios.map((x) => x.toFixed(2)).join(' ')} of reads ${r.decodeReadsGBps.map((x) => x.toFixed(1)).join(' ')})  ` +
      `prefill ${r.prefillTps.toFixed(1).padStart(6)} tok/s  RSS ${(r.rssBytes / 2 ** 20).toFixed(0)} MiB  file ${(r.fileBytes / 2 ** 20).toFixed(0)} MiB`,
  );
}

function printRooflines() {
  for (const row of results) {
    console.log(`${row.engine.padEnd(9)} ${row.shape.padEnd(15)} ${row.format.padEnd(6)} ${row.threads}t  decode ${row.decodeTps.toFixed(1).padStart(6)} tok/s  ` +
      `roofline ${row.rooflineRatio.toFixed(2)} (rounds ${Math.min(...row.decodeRoundsRoofline).toFixed(2)}-${Math.max(...row.decodeRoundsRoofline).toFixed(2)}, read ${row.bandwidthGBps.toFixed(1)} GB/s)`);
  }
}

async function main() {
  fs.mkdirSync(cacheDir, { recursive: true });
  const reads = dramProbe();
  console.log(`lowbit generate benchmark: ${describeHost()}`);
  console.log(`DRAM read bandwidth: ${threadCounts.map((t) => `${t}t ${reads.take(t).toFixed(1)} GB/s`).join(', ')}; context ${CONTEXT}`);
  reads.release();
  for (const shape of shapes) {
    const files = new Map<string, string>();
    for (const bits of bitsList) {
      const file = await lowbitFile(shape, bits);
      files.set(BITS_FORMAT[bits], file);
      addRows('lowbit', shape, BITS_FORMAT[bits], file);
    }
    if (values['no-peer']) continue;
    const c = SYNTH_SHAPES[shape].config;
    const peers: [GgufLinearType, string][] = [['q4_0', 'b4']];
    if (c.dim % 256 === 0 && c.hiddenDim % 256 === 0) peers.push(['tq2_0', 't158'], ['tq1_0', 't158']);
    else console.log(`${shape}: rows of ${c.dim} / ${c.hiddenDim} are not whole 256-blocks: llama.cpp cannot hold them as TQ2_0/TQ1_0`);
    for (const [type, format] of peers) {
      const from = files.get(format);
      if (from) addRows('llama.cpp', shape, type, ggufFile(shape, from, type));
    }
  }
  for (let pass = 0; pass < passes; pass++) specs.forEach((spec, i) => measure(spec, i, pass));
  printRooflines();
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${results.length} rows to ${values.out}`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
