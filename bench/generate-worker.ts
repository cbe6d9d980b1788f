/**
 * One measurement of bench/generate.ts in its own process (so peak RSS is this run's alone):
 *   node --import tsx bench/generate-worker.ts <lowbit|llama.cpp> <model file> <threads> <vocab size>
 * Prints one JSON object: decode tokens/s (128 tokens after a 32-token prompt; the median of three
 * rounds, each round's figure kept), prefill tokens/s (a 512-token prompt), peak RSS. Prompts are
 * fixed pseudo-random token ids; generation ignores end-of-text so every run decodes the same
 * number of tokens.
 */
import * as fs from 'node:fs';

import { loadModel } from '../lib';
import { median } from './bandwidth';

export const PROMPT_TOKENS = 32;
export const DECODE_TOKENS = 128;
export const PREFILL_TOKENS = 512;
export const CONTEXT = 1024;
/** Decode is timed this many times; the median counts (this shared machine swings by 10-30%). */
export const DECODE_ROUNDS = 3;

export interface WorkerResult {
  prefillTps: number;
  /** The median of decodeRoundsTps. */
  decodeTps: number;
  decodeRoundsTps: number[];
  rssBytes: number;
  fileBytes: number;
}

type Speeds = Omit<WorkerResult, 'rssBytes' | 'fileBytes' | 'decodeTps'>;


/** Deterministic token ids in [3, vocab): the same prompts for both engines. */
export function promptIds(count: number, vocab: number, seed: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return 3 + (state % (vocab - 3));
  });
}

async function runLowbit(file: string, threads: number, vocab: number): Promise<Speeds> {
  await using model = await loadModel(file, { threads, contextLength: CONTEXT });
  const options = { temperature: 0, ignoreEos: true };
  await model.complete(promptIds(8, vocab, 9), { ...options, maxTokens: 8 });  // warm up
  const decodeRoundsTps: number[] = [];
  for (let round = 0; round < DECODE_ROUNDS; round++) {
    // later rounds find the prompt cached and decode the same positions again
    const decode = model.generate(promptIds(PROMPT_TOKENS, vocab, 1), { ...options, maxTokens: DECODE_TOKENS });
    for await (const chunk of decode) void chunk;
    decodeRoundsTps.push(decode.stats!.decodeTokensPerSecond);
  }
  const prefill = model.generate(promptIds(PREFILL_TOKENS, vocab, 2), { ...options, maxTokens: 1 });
  for await (const chunk of prefill) void chunk;
  return { decodeRoundsTps, prefillTps: prefill.stats!.prefillTokensPerSecond };
}

async function runLlamaCpp(file: string, threads: number, vocab: number): Promise<Speeds> {
  // node-llama-cpp is ESM-only; its prebuilt CPU binary, no GPU, no source builds.
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: CONTEXT, threads: { ideal: threads, min: threads }, batchSize: PREFILL_TOKENS });
  try {
    let sequence = context.getSequence();
    // warm up
    let n = 0;
    for await (const token of sequence.evaluate(promptIds(8, vocab, 9) as never, { temperature: 0 })) {
      void token;
      if (++n >= 8) break;
    }
    const decodeRoundsTps: number[] = [];
    for (let round = 0; round < DECODE_ROUNDS; round++) {
      sequence.dispose();
      sequence = context.getSequence();
      // decode: time from the first generated token (which ends the prefill) to the last
      let first = 0, count = 0;
      for await (const token of sequence.evaluate(promptIds(PROMPT_TOKENS, vocab, 1) as never, { temperature: 0 })) {
        void token;
        if (++count === 1) first = performance.now();
        if (count >= DECODE_TOKENS) break;
      }
      decodeRoundsTps.push((DECODE_TOKENS - 1) / ((performance.now() - first) / 1000));
    }
    sequence.dispose();
    sequence = context.getSequence();
    const t0 = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(promptIds(PREFILL_TOKENS, vocab, 2) as never);
    const prefillTps = PREFILL_TOKENS / ((performance.now() - t0) / 1000);
    sequence.dispose();
    return { decodeRoundsTps, prefillTps };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

/**
 * This process's peak resident set. Linux's getrusage maxRSS would also count the parent's
 * resident set at the moment it spawned this process (it is kept across exec); VmHWM belongs to
 * this process's own memory map.
 */
function peakRssBytes(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS * 1024;
}

async function main(): Promise<void> {
  const [engine, file, threadsText, vocabText] = process.argv.slice(2);
  const threads = Number(threadsText), vocab = Number(vocabText);
  const run = engine === 'lowbit' ? runLowbit : engine === 'llama.cpp' ? runLlamaCpp : undefined;
  if (!run || !file || !(threads > 0) || !(vocab > 3)) throw new Error('usage: generate-worker.ts <lowbit|llama.cpp> <model> <threads> <vocab>');
  const speed = await run(file, threads, vocab);
  const result: WorkerResult = {
    ...speed, decodeTps: median(speed.decodeRoundsTps), rssBytes: peakRssBytes(), fileBytes: fs.statSync(file).size,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
