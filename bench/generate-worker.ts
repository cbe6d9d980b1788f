/**
 * One measurement of bench/generate.ts in its own process (so peak RSS is this run's alone):
 *   node --import tsx bench/generate-worker.ts <lowbit|llama.cpp> <model file> <threads> <vocab size>
 * Prints one JSON object: prefill tokens/s (a 512-token prompt), peak RSS, then decode tokens/s
 * (128 tokens after a 32-token prompt; three rounds, each round's figure kept) with DRAM read
 * bandwidth measured before the first round and after each, for pairing (bench/bandwidth.ts). Prompts are
 * fixed pseudo-random token ids; generation ignores end-of-text so every run decodes the same
 * number of tokens.
 */
import * as fs from 'node:fs';

import { loadModel } from '../lib';
import { dramProbe, median } from './bandwidth';

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
  /** DRAM read GB/s measured before the first decode round and after each (one more than rounds). */
  decodeReadsGBps: number[];
  /** Peak resident set after loading, warming up and the prefill (before the read probe's buffer). */
  rssBytes: number;
  fileBytes: number;
}

/** Deterministic token ids in [3, vocab): the same prompts for both engines. */
export function promptIds(count: number, vocab: number, seed: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return 3 + (state % (vocab - 3));
  });
}

/** An engine with a model loaded and warmed up, ready for timed runs. */
interface Engine {
  /** Tokens/s of a PREFILL_TOKENS-token prompt's evaluation. */
  prefill(): Promise<number>;
  /** Decode tokens/s: DECODE_TOKENS new tokens after the PROMPT_TOKENS-token prompt. */
  decode(): Promise<number>;
  close(): Promise<void>;
}

async function openLowbit(file: string, threads: number, vocab: number): Promise<Engine> {
  const model = await loadModel(file, { threads, contextLength: CONTEXT });
  const options = { temperature: 0, ignoreEos: true };
  await model.complete(promptIds(8, vocab, 9), { ...options, maxTokens: 8 });  // warm up
  return {
    async prefill() {
      const prefill = model.generate(promptIds(PREFILL_TOKENS, vocab, 2), { ...options, maxTokens: 1 });
      for await (const chunk of prefill) void chunk;
      return prefill.stats!.prefillTokensPerSecond;
    },
    async decode() {
      // later rounds find the prompt cached and decode the same positions again
      const decode = model.generate(promptIds(PROMPT_TOKENS, vocab, 1), { ...options, maxTokens: DECODE_TOKENS });
      for await (const chunk of decode) void chunk;
      return decode.stats!.decodeTokensPerSecond;
    },
    close: () => model[Symbol.asyncDispose](),
  };
}

async function openLlamaCpp(file: string, threads: number, vocab: number): Promise<Engine> {
  // node-llama-cpp is ESM-only; its prebuilt CPU binary, no GPU, no source builds.
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: CONTEXT, threads: { ideal: threads, min: threads }, batchSize: PREFILL_TOKENS });
  let sequence = context.getSequence();
  const fresh = () => {
    sequence.dispose();
    return (sequence = context.getSequence());
  };
  // warm up
  let n = 0;
  for await (const token of sequence.evaluate(promptIds(8, vocab, 9) as never, { temperature: 0 })) {
    void token;
    if (++n >= 8) break;
  }
  return {
    async prefill() {
      const t0 = performance.now();
      await fresh().evaluateWithoutGeneratingNewTokens(promptIds(PREFILL_TOKENS, vocab, 2) as never);
      return PREFILL_TOKENS / ((performance.now() - t0) / 1000);
    },
    async decode() {
      // time from the first generated token (which ends the prefill) to the last
      let first = 0, count = 0;
      for await (const token of fresh().evaluate(promptIds(PROMPT_TOKENS, vocab, 1) as never, { temperature: 0 })) {
        void token;
        if (++count === 1) first = performance.now();
        if (count >= DECODE_TOKENS) break;
      }
      return (DECODE_TOKENS - 1) / ((performance.now() - first) / 1000);
    },
    async close() {
      sequence.dispose();
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
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
  const [engineName, file, threadsText, vocabText] = process.argv.slice(2);
  const threads = Number(threadsText), vocab = Number(vocabText);
  const open = engineName === 'lowbit' ? openLowbit : engineName === 'llama.cpp' ? openLlamaCpp : undefined;
  if (!open || !file || !(threads > 0) || !(vocab > 3)) throw new Error('usage: generate-worker.ts <lowbit|llama.cpp> <model> <threads> <vocab>');
  const engine = await open(file, threads, vocab);
  try {
    const prefillTps = await engine.prefill();
    // the peak so far: the DRAM probe's buffer, allocated next, is the benchmark's, not the engine's
    const rssBytes = peakRssBytes();
    const reads = dramProbe();
    const decodeReadsGBps = [reads.take(threads)], decodeRoundsTps: number[] = [];
    for (let round = 0; round < DECODE_ROUNDS; round++) {
      decodeRoundsTps.push(await engine.decode());
      decodeReadsGBps.push(reads.take(threads));
    }
    const result: WorkerResult = {
      prefillTps, decodeTps: median(decodeRoundsTps), decodeRoundsTps, decodeReadsGBps, rssBytes, fileBytes: fs.statSync(file).size,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await engine.close();
  }
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
