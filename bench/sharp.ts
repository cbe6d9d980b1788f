/**
 * SHARP benchmark (node --import tsx bench/sharp.ts): for each bundled float model x schedule x
 * rank x recovery init (x float or 4-bit weights), and for a synthetic 2-bit model at a real shape
 * (MobileLLM-125M, random weights on the ParetoQ grid: what sharing saves in bytes and costs in
 * speed at size; its quality columns only say how far sharing moves the function), the stored
 * MLP parameters saved, file bytes, weights in memory, peak RSS (in its own process, via
 * bench/generate-worker.ts), decode tokens/s as a ratio to the unshared model (best of alternating
 * runs, as the machine is shared), perplexity on test/data/sharp-eval.txt and KL / top-1 agreement
 * against the original model. Recovery is calibrated on test/data/sharp-calibration.txt (a
 * different text). Float activations and an f32 KV cache for quality, so the numbers measure
 * the weights. Writes bench/results/sharp.json and prints the markdown table docs/BENCHMARKS.md
 * carries.
 *
 * Options: --models stories260K,babyllama-tok105  --bits f32,4  --synth mobilellm-125m (or none)
 *          --threads 1  --out FILE
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { cpuInfo, evaluateText, loadModel, type LowbitModel, quantizeModel } from '../lib';
import { type SharpModelOptions, sharpModel } from '../lib/convert/sharp';
import { synthModel } from '../lib/convert/synth';
import type { WorkerResult } from './generate-worker';

const MODELS = path.join(__dirname, '..', '..', 'shared', 'models');
const DATA = path.join(__dirname, '..', 'test', 'data');
const SOURCES = [
  { name: 'stories260K', file: 'stories260K/stories260K.bin', tokenizer: 'stories260K/tok512.model' },
  { name: 'babyllama-tok105', file: 'babyllama-tok105/babyllama-tok105.bin', tokenizer: 'babyllama-tok105/tok105.model' },
];
/** later-half and every-other (1 and 2 targets of 5 layers), and three later layers on one reference. */
const SCHEDULES = ['later-half', 'every-other', '2<1,3<1,4<1'];
const RANKS = [8, 32];
/** Recovery variants: direct sharing, data-free SVD, covariance-weighted SVD, and cov + SLW. */
const RECOVERIES: { label: string; options: SharpModelOptions; ranked: boolean }[] = [
  { label: 'none', options: { init: 'none' }, ranked: false },
  { label: 'svd', options: { init: 'svd' }, ranked: true },
  { label: 'cov', options: { init: 'cov' }, ranked: true },
  { label: 'cov+slw', options: { init: 'cov', refine: 300, refineLearningRate: 0.01 }, ranked: true },
];
/**
 * The synthetic model: its bits, and data-free recovery only (random layers have nothing a
 * calibration text could teach; it still measures each variant's MLP output error).
 */
const SYNTH_BITS = 2;
const SYNTH_SCHEDULES = ['later-half', 'every-other'];
const SYNTH_RANKS = [16, 64];
const EVAL_CTX = 256;
const CALIB_TOKENS = 2048;

interface SharpBenchRow {
  model: string;
  /**
   * `f32`; `4-bit` (every linear layer 4-bit rtn, embeddings and recovery factors f16); `2-bit`
   * (the synthetic model: grid weights packed exactly, recovery factors f16).
   */
  weights: string;
  /** `unshared`, or the SHARP schedule. */
  schedule: string;
  rank: number;
  init: string;
  /** 1 - stored / logical MLP parameters. */
  mlpParametersSaved: number;
  /** 1 - stored / logical MLP bytes in memory (f32 or f16 factors weigh more than 4-bit weights). */
  mlpBytesSaved: number;
  fileBytes: number;
  /** Weights in memory (distinct storage: a shared reference counts once). */
  weightBytes: number;
  rssBytes: number;
  decodeTps: number;
  /** decodeTps / the unshared model's (same weights), both the best of alternating runs. */
  decodeVsUnshared: number;
  perplexity: number;
  klVsOriginal: number;
  top1Agreement: number;
  /** Mean SLW loss of the target layers (relative MLP output error) after the recovery; direct sharing's for `none`. */
  slwLoss: number | null;
}

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: SOURCES.map((s) => s.name).join(',') },
    bits: { type: 'string', default: 'f32,4' },
    synth: { type: 'string', default: 'mobilellm-125m' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(__dirname, 'results', 'sharp.json') },
  },
});

/** Peak RSS of loading the model and generating with it, in a process of its own. */
function peakRss(file: string, vocab: number): number {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'generate-worker.ts'), 'lowbit', file, values.threads!, String(vocab)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20,
  });
  return (JSON.parse(out.trim().split('\n').pop()!) as WorkerResult).rssBytes;
}

const DECODE_TOKENS = 256;
const SPEED_ROUNDS = 5;

async function decodeTps(model: LowbitModel): Promise<number> {
  const generation = model.generate('Once upon a time', { temperature: 0, maxTokens: DECODE_TOKENS, ignoreEos: true });
  for await (const chunk of generation) void chunk;
  return generation.stats!.decodeTokensPerSecond;
}

/** Best decode tokens/s of the model and of the unshared one, measured in alternation (drifts in load hit both). */
async function decodeSpeeds(file: string, unshared: string, threads: number): Promise<[number, number]> {
  await using model = await loadModel(file, { threads, contextLength: 512 });
  await using base = await loadModel(unshared, { threads, contextLength: 512 });
  let best = 0, bestBase = 0;
  for (let round = 0; round < SPEED_ROUNDS; round++) {
    best = Math.max(best, await decodeTps(model));
    bestBase = Math.max(bestBase, await decodeTps(base));
  }
  return [best, bestBase];
}

async function quality(file: string, text: string, original: LowbitModel) {
  await using model = await loadModel(file, { activations: 'f32', kvCache: 'f32' });
  const e = await evaluateText(model, text, { ctx: EVAL_CTX, ref: original });
  const mlp = model.info.mlp;
  return {
    perplexity: e.perplexity, klVsOriginal: e.ref!.kl, top1Agreement: e.ref!.top1Agreement, weightBytes: model.info.bytes,
    mlpBytesSaved: 1 - mlp.storedBytes / mlp.logicalBytes,
  };
}

function printTable(rows: readonly SharpBenchRow[]): void {
  console.log('| model | weights | schedule | init | rank | MLP params saved | MLP bytes saved | file KiB | weights KiB | peak RSS MiB | decode vs unshared | perplexity | KL vs original | top-1 | SLW loss |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.weights} | ${r.schedule} | ${r.init} | ${r.rank} | ${(100 * r.mlpParametersSaved).toFixed(1)}% | ${(100 * r.mlpBytesSaved).toFixed(1)}% | ` +
      `${(r.fileBytes / 1024).toFixed(0)} | ${(r.weightBytes / 1024).toFixed(0)} | ${(r.rssBytes / 2 ** 20).toFixed(0)} | ${r.decodeVsUnshared.toFixed(2)} | ` +
      `${r.perplexity.toFixed(2)} | ${r.klVsOriginal.toFixed(3)} | ${(100 * r.top1Agreement).toFixed(1)}% | ${r.slwLoss === null ? '-' : r.slwLoss.toFixed(3)} |`);
  }
}

/** A model to share: its unshared file (the speed and size baseline) and how sharpModel re-encodes its weights. */
interface Subject {
  model: string;
  weights: string;
  /** The file sharpModel reads, and the unshared model with the same weights. */
  source: string;
  base: string;
  tokenizer?: string;
  encoding: Partial<SharpModelOptions>;
}

/** One variant to measure: a schedule with a recovery at a rank. */
interface Variant {
  schedule: string;
  recovery: (typeof RECOVERIES)[number];
  rank: number;
}

function variants(schedules: readonly string[], recoveries: typeof RECOVERIES, ranks: readonly number[]): Variant[] {
  return schedules.flatMap((schedule) => recoveries.flatMap((recovery) => (recovery.ranked ? ranks : [0]).map((rank) => ({ schedule, recovery, rank }))));
}

/** The unshared row, then one row per variant, each against `original` on `text`. */
async function benchSubject(subject: Subject, list: readonly Variant[], original: LowbitModel, text: string, scratch: string,
                            rows: SharpBenchRow[], started: number): Promise<void> {
  const threads = Number(values.threads), vocab = original.info.config.vocabSize;
  const [baseTps] = await decodeSpeeds(subject.base, subject.base, threads);
  const baseQuality = await quality(subject.base, text, original);
  rows.push({
    model: subject.model, weights: subject.weights, schedule: 'unshared', rank: 0, init: '-', mlpParametersSaved: 0, mlpBytesSaved: 0,
    fileBytes: fs.statSync(subject.base).size, weightBytes: baseQuality.weightBytes, rssBytes: peakRss(subject.base, vocab), decodeTps: baseTps,
    decodeVsUnshared: 1, perplexity: baseQuality.perplexity, klVsOriginal: baseQuality.klVsOriginal, top1Agreement: baseQuality.top1Agreement, slwLoss: null,
  });
  for (const { schedule, recovery, rank } of list) {
    const out = path.join(scratch, `${subject.model}-${subject.weights}-${schedule.replace(/[<,]/g, '_')}-${recovery.label}-${rank}.lowbit`);
    const result = await sharpModel(subject.source, out, {
      tokenizer: subject.tokenizer, schedule, rank, calib: path.join(DATA, 'sharp-calibration.txt'), calibTokens: CALIB_TOKENS,
      ...recovery.options, ...subject.encoding,
    });
    const [tps, unsharedTps] = await decodeSpeeds(out, subject.base, threads), q = await quality(out, text, original);
    const losses = result.layers.map((l) => l.lossRefined);
    const row: SharpBenchRow = {
      model: subject.model, weights: subject.weights, schedule, rank, init: recovery.label, mlpParametersSaved: result.mlp.savedFraction,
      mlpBytesSaved: q.mlpBytesSaved, fileBytes: result.bytes, weightBytes: q.weightBytes, rssBytes: peakRss(out, vocab), decodeTps: tps,
      decodeVsUnshared: tps / unsharedTps, perplexity: q.perplexity, klVsOriginal: q.klVsOriginal,
      top1Agreement: q.top1Agreement, slwLoss: losses.reduce((a, b) => a + b, 0) / losses.length,
    };
    rows.push(row);
    console.error(`${subject.model} ${subject.weights} ${schedule} ${recovery.label} r${rank}: saved ${(100 * row.mlpParametersSaved).toFixed(1)}% ` +
      `ppl ${row.perplexity.toFixed(2)} kl ${row.klVsOriginal.toFixed(3)} decode x${row.decodeVsUnshared.toFixed(2)} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    fs.rmSync(out);
  }
}

async function main() {
  const text = fs.readFileSync(path.join(DATA, 'sharp-eval.txt'), 'utf8');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-bench-sharp-'));
  const rows: SharpBenchRow[] = [];
  const started = performance.now();
  try {
    for (const source of SOURCES.filter((s) => values.models!.split(',').includes(s.name))) {
      const file = path.join(MODELS, source.file), tokenizer = path.join(MODELS, source.tokenizer);
      await using original = await loadModel(file, { tokenizer, activations: 'f32', kvCache: 'f32' });
      for (const bits of values.bits!.split(',').filter((b) => b === 'f32' || b === '4')) {
        // The unshared model with the same weights: the float source, or `lowbit quantize` at 4 bits.
        const base = bits === 'f32' ? file : path.join(scratch, `${source.name}-b4.lowbit`);
        if (bits === '4') await quantizeModel(file, base, { bits: 4, method: 'rtn', tokenizer });
        const encoding = bits === '4' ? { bits: 4, method: 'rtn' as const, recovery: 'f16' as const } : {};
        await benchSubject({ model: source.name, weights: bits === '4' ? '4-bit' : 'f32', source: file, base, tokenizer, encoding },
          variants(SCHEDULES, RECOVERIES, RANKS), original, text, scratch, rows, started);
      }
    }
    for (const shape of values.synth!.split(',').filter((s) => s !== 'none')) {
      // Grid weights shared as they are (`exact` packs the reference losslessly).
      const file = path.join(scratch, `${shape}-b${SYNTH_BITS}.lowbit`);
      await synthModel(file, { shape, bits: SYNTH_BITS });
      await using original = await loadModel(file, { activations: 'f32', kvCache: 'f32' });
      const encoding = { bits: SYNTH_BITS, method: 'exact' as const, recovery: 'f16' as const };
      await benchSubject({ model: `${shape} (synthetic)`, weights: `${SYNTH_BITS}-bit`, source: file, base: file, encoding },
        variants(SYNTH_SCHEDULES, RECOVERIES.filter((r) => r.label === 'none' || r.label === 'svd'), SYNTH_RANKS), original, text, scratch, rows, started);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const cpu = cpuInfo();
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(values.out!, `${JSON.stringify({
    date: new Date().toISOString(), node: process.version, isa: cpu.isa, threads: Number(values.threads), evalCtx: EVAL_CTX,
    calibrationTokens: CALIB_TOKENS, rows,
  }, null, 2)}\n`);
  printTable(rows);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
