/**
 * Text generation: the token loop over a native context, streaming text as it completes, stop
 * sequences, AbortSignal, and statistics. Tokens come from a native loop off the event loop that
 * runs one token ahead of the consumer.
 */
import { LowbitError } from './errors';
import { type AddonContext, type AddonSampler, binding, callNative, nativeError } from './native';
import type { Tokenizer } from './tokenizer';
import { integerIn, invalidParameter, knownOptions, numberIn, plainObject } from './validate';

export interface SamplingOptions {
  /** Softmax temperature; 0 picks the most likely token every time (greedy). Defaults to `0.8`. */
  temperature?: number;
  /** Keep only the k most likely tokens (0: all). Defaults to `40`. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1: off). Defaults to `0.95`. */
  topP?: number;
  /** Drop tokens less likely than minP times the best one (0: off). Defaults to `0.05`. */
  minP?: number;
  /** Divide positive (multiply negative) logits of recent tokens by this (1: off). Defaults to `1`. */
  repeatPenalty?: number;
  /** How many recent tokens the repeat penalty looks at. Defaults to `64`. */
  repeatLastN?: number;
  /** Seed of the sampler: the same seed, prompt and options give the same text. Defaults to a random seed. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate. Defaults to filling the context. */
  maxTokens?: number;
  /** Strings that end generation; the text stops before them. Defaults to none. */
  stop?: readonly string[];
  /** Aborts generation within one token; the iteration then rejects with the signal's reason (an AbortError). */
  signal?: AbortSignal;
  /** Put the BOS token before a text prompt. Defaults to `true` when the model has one. */
  bos?: boolean;
  /** Keep generating past end-of-text tokens (for benchmarks). Defaults to `false`. */
  ignoreEos?: boolean;
}

export interface GenerateChunk {
  /** Text completed by this step (may be empty while a character or a possible stop sequence is pending). */
  text: string;
  /** The token ids of this step. */
  tokens: number[];
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'abort';

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens found in the context from the previous call and not evaluated again. */
  cachedTokens: number;
  generatedTokens: number;
  /** Native time spent on the prompt (the consumer's time between tokens is not counted). */
  prefillSeconds: number;
  /** Native time spent on the tokens after the first. */
  decodeSeconds: number;
  /** Prompt tokens evaluated per second. */
  prefillTokensPerSecond: number;
  /** Tokens generated per second after the first. */
  decodeTokensPerSecond: number;
  finishReason: FinishReason;
}

const GENERATE_OPTIONS = [
  'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'repeatLastN', 'seed', 'maxTokens', 'stop', 'signal', 'bos', 'ignoreEos',
] as const;

export interface ResolvedGenerateOptions {
  sampler: { temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number; repeatLastN: number };
  seed: number;
  maxTokens: number;
  stop: string[];
  signal: AbortSignal | undefined;
  bos: boolean | undefined;
  ignoreEos: boolean;
}

/** Checks generate() options and fills in defaults. */
export function resolveGenerateOptions(options: unknown): ResolvedGenerateOptions {
  const o = plainObject('options', options);
  knownOptions('generate', o, GENERATE_OPTIONS);
  const num = (name: string, def: number, min: number, max: number) => (o[name] === undefined ? def : numberIn(name, o[name], min, max));
  const int = (name: string, def: number, min: number) => (o[name] === undefined ? def : integerIn(name, o[name], min));
  if (o.stop !== undefined && (!Array.isArray(o.stop) || o.stop.some((s) => typeof s !== 'string' || s === ''))) {
    throw invalidParameter('stop', 'an array of non-empty strings', o.stop);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidParameter('signal', 'an AbortSignal', o.signal);
  for (const flag of ['bos', 'ignoreEos'] as const) {
    if (o[flag] !== undefined && typeof o[flag] !== 'boolean') throw invalidParameter(flag, 'a boolean', o[flag]);
  }
  return {
    sampler: {
      temperature: num('temperature', 0.8, 0, 100),
      topK: int('topK', 40, 0),
      topP: num('topP', 0.95, 0, 1),
      minP: num('minP', 0.05, 0, 1),
      repeatPenalty: num('repeatPenalty', 1, 0.01, 100),
      repeatLastN: int('repeatLastN', 64, 0),
    },
    seed: int('seed', Math.floor(Math.random() * 2 ** 32), 0),
    maxTokens: int('maxTokens', Number.MAX_SAFE_INTEGER, 1),
    stop: (o.stop as string[] | undefined) ?? [],
    signal: o.signal as AbortSignal | undefined,
    bos: o.bos as boolean | undefined,
    ignoreEos: (o.ignoreEos as boolean | undefined) ?? false,
  };
}

/**
 * Holds back text that could still turn into a stop sequence; reports when one completes.
 */
export class StopMatcher {
  #pending = '';
  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what is safe to emit and whether a stop sequence was reached. */
  push(text: string): { emit: string; stopped: boolean } {
    this.#pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.#pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const emit = this.#pending.slice(0, cut);
      this.#pending = '';
      return { emit, stopped: true };
    }
    const hold = this.#heldSuffix();
    const emit = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    return { emit, stopped: false };
  }

  /** Whatever is held back, at the end of generation. */
  flush(): string {
    const rest = this.#pending;
    this.#pending = '';
    return rest;
  }

  // Length of the longest suffix of the pending text that is a proper prefix of a stop string.
  #heldSuffix(): number {
    let longest = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.#pending.length); n > longest; n--) {
        if (this.#pending.endsWith(s.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}

export function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** What a generation needs from its model. */
export interface GenerationTarget {
  readonly context: AddonContext;
  readonly contextLength: number;
  readonly tokenizer: Tokenizer;
  /** Ids that end generation (end of text / turn; BOS for llama2.c-trained models). */
  readonly stopIds: ReadonlySet<number>;
}

/**
 * The tokens of a native generate() loop, taken one at a time. Each take lets the loop produce one
 * more, and one extra is allowed at the start: the loop computes the next token while JS handles
 * this one, and never runs further ahead than that.
 */
class TokenFeed {
  #queue: [number, number][] = [];
  #waiter: { resolve: (event: [number, number]) => void; reject: (error: unknown) => void } | undefined;
  #failure: { error: unknown } | undefined;

  constructor(private readonly context: AddonContext) {}

  /** Starts the native loop, one token ahead. */
  start(prompt: Int32Array, sampler: AddonSampler, maxTokens: number, endIds: Int32Array): Promise<void> {
    const loop = this.context.generate(prompt, sampler, maxTokens, endIds, this.#push);
    this.context.allow(1);
    loop.then(() => this.#end(new LowbitError('the native generation loop ended early', 'LOWBIT_NATIVE')), (e) => this.#end(e));
    return loop;
  }

  #push = (token: number, seconds: number): void => {
    if (this.#waiter) {
      this.#waiter.resolve([token, seconds]);
      this.#waiter = undefined;
    } else {
      this.#queue.push([token, seconds]);
    }
  };

  // The loop ended: a take that finds no token fails with this error.
  #end(error: unknown): void {
    this.#failure = { error };
    this.#waiter?.reject(error);
    this.#waiter = undefined;
  }

  /** The next token and the seconds its step took. */
  take(): Promise<[number, number]> {
    this.context.allow(1);
    const event = this.#queue.shift();
    if (event) return Promise.resolve(event);
    if (this.#failure) return Promise.reject(this.#failure.error);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }
}

function commonPrefix(a: Int32Array, b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/**
 * One generation, iterable once: `for await (const chunk of generation)`. `text` holds all text
 * so far and `stats` is set when it ends.
 */
export class LowbitGeneration implements AsyncIterable<GenerateChunk> {
  text = '';
  stats: GenerationStats | undefined;
  #started = false;

  /** @internal */
  constructor(
    private readonly target: GenerationTarget,
    private readonly promptTokens: readonly number[],
    private readonly options: ResolvedGenerateOptions,
    private readonly lock: (run: () => AsyncGenerator<GenerateChunk>) => AsyncGenerator<GenerateChunk>,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    if (this.#started) throw new LowbitError('a generation can be iterated only once', 'LOWBIT_BAD_INPUT');
    this.#started = true;
    return this.lock(() => this.#run());
  }

  async *#run(): AsyncGenerator<GenerateChunk> {
    const { context, tokenizer, stopIds, contextLength } = this.target;
    const { signal, maxTokens } = this.options;
    const prompt = this.promptTokens;
    if (prompt.length === 0) throw new RangeError('the prompt has no tokens');
    if (prompt.length >= contextLength) {
      throw new RangeError(`the prompt has ${prompt.length} tokens; the context holds ${contextLength}`);
    }
    if (signal?.aborted) throw abortError(signal);
    // Reuse the cached prefix; the last prompt token is always evaluated to get its logits.
    const cached = Math.min(commonPrefix(callNative(() => context.tokens()), prompt), prompt.length - 1);
    context.truncate(cached);
    const AddonSampler = binding().AddonSampler;
    const sampler = new AddonSampler(this.options.sampler, this.options.seed);
    const decoder = tokenizer.createStreamDecoder();
    const stops = new StopMatcher(this.options.stop);
    const onAbort = () => context.abort();
    signal?.addEventListener('abort', onAbort);
    const stats: GenerationStats = {
      promptTokens: prompt.length, cachedTokens: cached, generatedTokens: 0, prefillSeconds: 0, decodeSeconds: 0,
      prefillTokensPerSecond: 0, decodeTokensPerSecond: 0, finishReason: 'length',
    };
    // The native loop ends by itself on the same conditions as the loop below (an end id, the
    // token limit, a full context); it is aborted when this one stops first. Its errors reach
    // this loop through feed.take().
    const feed = new TokenFeed(context);
    const endIds = Int32Array.from(this.options.ignoreEos ? [] : stopIds);
    let loop: Promise<void> | undefined;
    // The next token and the seconds the native loop spent on it (started by the first call).
    const take = async (): Promise<[number, number]> => {
      try {
        loop ??= feed.start(Int32Array.from(prompt.slice(cached)), sampler, maxTokens, endIds);
        return await feed.take();
      } catch (error) {
        if (signal?.aborted) {
          stats.finishReason = 'abort';
          throw abortError(signal);
        }
        throw nativeError(error);
      }
    };
    try {
      let [next, seconds] = await take();
      stats.prefillSeconds = seconds;
      let position = prompt.length, decodeSteps = 0;
      for (;;) {
        if (signal?.aborted) {
          stats.finishReason = 'abort';
          throw abortError(signal);
        }
        if (!this.options.ignoreEos && stopIds.has(next)) {
          stats.finishReason = 'eos';
          break;
        }
        stats.generatedTokens++;
        const { emit, stopped } = stops.push(decoder.push(next));
        if (emit || !stopped) {
          this.text += emit;
          yield { text: emit, tokens: [next] };
        }
        if (stopped) {
          stats.finishReason = 'stop';
          break;
        }
        if (stats.generatedTokens >= maxTokens || position >= contextLength) break;
        [next, seconds] = await take();
        stats.decodeSeconds += seconds;
        position++;
        decodeSteps++;
        stats.decodeTokensPerSecond = decodeSteps / stats.decodeSeconds;
      }
      if (stats.finishReason !== 'stop') {
        const rest = stops.flush() + decoder.flush();
        if (rest) {
          this.text += rest;
          yield { text: rest, tokens: [] };
        }
      }
    } finally {
      if (loop) {
        context.abort();  // no-op once the loop has ended; the next call's claim clears it
        await loop.catch(() => undefined);
      }
      signal?.removeEventListener('abort', onAbort);
      const evaluated = prompt.length - cached;
      stats.prefillTokensPerSecond = stats.prefillSeconds > 0 ? evaluated / stats.prefillSeconds : 0;
      this.stats = stats;
    }
  }
}
