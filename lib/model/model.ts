/**
 * LowbitModel: a loaded model with its tokenizer and one generation context. Load with
 * `loadModel(path)`; generate with `model.generate(prompt)` (streaming) or `model.complete(prompt)`.
 */
import { DisposedError, LowbitFormatError } from '../errors';
import {
  type GenerateChunk, type GenerateOptions, LowbitGeneration, resolveGenerateOptions,
} from '../generate';
import { openModel } from '../io';
import type { LlamaConfig, ModelContainer, ModelSource } from '../io/types';
import { type AddonContext, type AddonModel, awaitNative, binding, callNative, type FormatName } from '../native';
import { type ChatFormat, type ChatMessage, detectChatFormat, formatChat, loadTokenizer, type Tokenizer } from '../tokenizer';
import { integerIn, invalidParameter, knownOptions, oneOf, plainObject } from '../validate';
import type { SharpLayout } from '../io/sharp';
import { assembleModel, type MlpStorage } from './assemble';

export interface LoadModelOptions {
  /** Threads for the model's work. Defaults to the number of physical cores. */
  threads?: number;
  /** A tokenizer file to use instead of the one in (or next to) the model file. */
  tokenizer?: string;
  /** Positions the context holds (prompt + generated). Defaults to the model's length, at most 4096. */
  contextLength?: number;
  /** How quantized layers multiply: `int8` (fast) or `f32` activations. Defaults to `int8`. */
  activations?: 'int8' | 'f32';
  /** Precision of the KV cache. Defaults to `f16` (half the memory, as llama.cpp); `f32` for float arithmetic throughout. */
  kvCache?: 'f32' | 'f16';
  /** Pack float weights that lie on a ParetoQ grid into that grid's codes (lossless). Defaults to `true`. */
  detectGrids?: boolean;
}

const LOAD_OPTIONS = ['threads', 'tokenizer', 'contextLength', 'activations', 'kvCache', 'detectGrids'] as const;

export interface ModelInfo {
  readonly path: string;
  readonly container: ModelContainer;
  readonly architecture: 'llama';
  readonly config: LlamaConfig;
  /** Weights, counting a tied embedding and output once. */
  readonly parameters: number;
  /** Format of every weight tensor, by canonical (Hugging Face) name. */
  readonly tensorFormats: Readonly<Record<string, FormatName>>;
  /** How many weight tensors each format holds. */
  readonly formats: Readonly<Partial<Record<FormatName, number>>>;
  /** Bytes of weights in memory (shared tensors once). */
  readonly bytes: number;
  /** MLP weights the model computes with (logical) and holds (stored); they differ when SHARP shares. */
  readonly mlp: MlpStorage;
  /** SHARP: which layers reuse which layer's MLP weights, when the model shares. */
  readonly sharp?: SharpLayout;
  readonly contextLength: number;
  /** Bytes of the KV cache. */
  readonly kvCacheBytes: number;
  readonly tokenizer: { kind: string; vocabSize: number; bosId: number | undefined; eosIds: readonly number[] };
  /** The chat format of the model's template, when it carries one lowbit knows. */
  readonly chatFormat: ChatFormat | undefined;
}

export interface ChatOptions extends GenerateOptions {
  /** Overrides the template the model carries. Defaults to the model's. */
  format?: ChatFormat;
}

export class LowbitModel {
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  #native: AddonModel | undefined;
  #context: AddonContext | undefined;
  #threads: number;
  #kvCache: 'f32' | 'f16';
  #stopIds: Set<number>;
  #queue: Promise<unknown> = Promise.resolve();

  /** @internal */
  constructor(native: AddonModel, context: AddonContext, info: ModelInfo, tokenizer: Tokenizer, stopIds: Set<number>,
    threads: number, kvCache: 'f32' | 'f16') {
    this.#native = native;
    this.#context = context;
    this.info = info;
    this.tokenizer = tokenizer;
    this.#stopIds = stopIds;
    this.#threads = threads;
    this.#kvCache = kvCache;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  #live(): [AddonModel, AddonContext] {
    if (!this.#native || !this.#context) throw new DisposedError('model');
    return [this.#native, this.#context];
  }

  /** Token ids of `text` (no BOS unless asked). */
  tokenize(text: string, options: { bos?: boolean; special?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw invalidParameter('text', 'a string', text);
    return this.tokenizer.encode(text, { bos: options.bos ?? false, parseSpecial: options.special ?? false });
  }

  /** Text of token ids. */
  detokenize(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
  }

  /**
   * Generates text after `prompt` (a string, or token ids used as they are), streaming chunks:
   * `for await (const chunk of model.generate(prompt)) process.stdout.write(chunk.text)`.
   * Calls on one model run one after another. The prompt's common prefix with the previous call
   * is reused from the cache.
   */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): LowbitGeneration {
    const [, context] = this.#live();
    const resolved = resolveGenerateOptions(options);
    const tokens = typeof prompt === 'string'
      ? this.tokenizer.encode(prompt, { bos: resolved.bos ?? this.tokenizer.bosId !== undefined })
      : this.#checkIds(prompt);
    const target = { context, contextLength: this.info.contextLength, tokenizer: this.tokenizer, stopIds: this.#stopIds };
    return new LowbitGeneration(target, tokens, resolved, (run) => this.#serialized(run));
  }

  /** Generates and resolves with the whole text. */
  async complete(prompt: string | readonly number[], options: GenerateOptions = {}): Promise<string> {
    const generation = this.generate(prompt, options);
    for await (const chunk of generation) void chunk;
    return generation.text;
  }

  /** Applies the model's chat template (Llama 2, Llama 3, ChatML) and generates the assistant's reply. */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): LowbitGeneration {
    const { format, ...rest } = options;
    const chatFormat = format ?? this.info.chatFormat;
    if (!chatFormat) {
      throw invalidParameter('format', "a chat format ('llama2', 'llama3', 'chatml'): the model carries no known chat template", format);
    }
    const text = formatChat(chatFormat, messages, { addGenerationPrompt: true });
    return this.generate(this.tokenizer.encode(text, { parseSpecial: true }), rest);
  }

  /**
   * Logits of every position of `ids` (ids.length x vocabSize, row-major), evaluated in a fresh
   * context so generation state is untouched.
   */
  async logits(ids: readonly number[]): Promise<Float32Array> {
    const [native] = this.#live();
    const tokens = this.#checkIds(ids);
    const AddonContextClass = binding().AddonContext;
    const context = callNative(() => new AddonContextClass(native, tokens.length, this.#kvCache, this.#threads));
    try {
      return (await awaitNative(() => context.eval(Int32Array.from(tokens), 'all')))!;
    } finally {
      context.dispose();
    }
  }

  /** Frees the model's memory now. Idempotent; later calls throw DisposedError. */
  dispose(): void {
    this.#context?.abort();
    this.#context?.dispose();
    this.#native?.dispose();
    this.#context = undefined;
    this.#native = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #checkIds(ids: readonly number[]): number[] {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw invalidParameter('prompt', 'a string or an array of token ids', ids);
    const vocab = this.info.config.vocabSize;
    return Array.from(ids as ArrayLike<number>, (id, i) => integerIn(`token ${i}`, id, 0, vocab - 1));
  }

  // Runs generations one after another on the single context.
  #serialized(run: () => AsyncGenerator<GenerateChunk>): AsyncGenerator<GenerateChunk> {
    const previous = this.#queue;
    let release!: () => void;
    this.#queue = new Promise<void>((resolve) => (release = resolve));
    return (async function* () {
      await previous.catch(() => undefined);
      try {
        yield* run();
      } finally {
        release();
      }
    })();
  }
}

function resolveLoadOptions(options: unknown) {
  const o = plainObject('options', options);
  knownOptions('loadModel', o, LOAD_OPTIONS);
  if (o.tokenizer !== undefined && typeof o.tokenizer !== 'string') throw invalidParameter('tokenizer', 'a file path', o.tokenizer);
  if (o.detectGrids !== undefined && typeof o.detectGrids !== 'boolean') throw invalidParameter('detectGrids', 'a boolean', o.detectGrids);
  return {
    threads: o.threads === undefined ? 0 : integerIn('threads', o.threads, 1, 1024),
    tokenizer: o.tokenizer as string | undefined,
    contextLength: o.contextLength === undefined ? undefined : integerIn('contextLength', o.contextLength, 2, 1 << 20),
    activations: o.activations === undefined ? 'int8' : oneOf('activations', o.activations, ['int8', 'f32'] as const),
    kvCache: o.kvCache === undefined ? 'f16' : oneOf('kvCache', o.kvCache, ['f32', 'f16'] as const),
    detectGrids: (o.detectGrids as boolean | undefined) ?? true,
  };
}

/** Ids that end generation: the tokenizer's end tokens, and BOS for llama2.c-trained models (their story separator). */
function stopIdsOf(source: ModelSource, tokenizer: Tokenizer): Set<number> {
  const ids = new Set(tokenizer.eosIds);
  for (const id of source.eosIds ?? []) ids.add(id);
  if (source.container === 'llama2c' && tokenizer.bosId !== undefined) ids.add(tokenizer.bosId);
  return ids;
}

/**
 * Loads a model: a GGUF file, a llama2.c checkpoint (with its tokenizer.bin), a Hugging Face
 * folder (safetensors or pytorch_model.bin), or a lowbit file. Bad files reject with a
 * LowbitFormatError naming the file and the tensor or key.
 */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LowbitModel> {
  if (typeof path !== 'string') throw invalidParameter('path', 'a file or folder path', path);
  const o = resolveLoadOptions(options);
  await new Promise((resolve) => setImmediate(resolve));  // let the caller's event loop turn first
  const source = openModel(path, { tokenizer: o.tokenizer });
  try {
    if (!source.tokenizer) {
      throw new LowbitFormatError(path, 'has no tokenizer inside or next to it; pass { tokenizer: <file> }');
    }
    const tokenizer = loadTokenizer(source.tokenizer, { bosId: source.bosId, eosIds: source.eosIds });
    const assembled = assembleModel(source, { detectGrids: o.detectGrids, activations: o.activations });
    const config = source.config;
    const contextLength = o.contextLength ?? Math.min(config.maxSeqLen, 4096);
    const AddonContextClass = binding().AddonContext;
    const context = callNative(() => new AddonContextClass(assembled.native, contextLength, o.kvCache, o.threads));
    const formats: Partial<Record<FormatName, number>> = {};
    for (const f of assembled.formats.values()) formats[f] = (formats[f] ?? 0) + 1;
    const kvBytes = 2 * config.nLayers * contextLength * config.nKvHeads * config.headDim * (o.kvCache === 'f16' ? 2 : 4);
    const info: ModelInfo = {
      path, container: source.container, architecture: 'llama', config, parameters: assembled.parameters,
      tensorFormats: Object.fromEntries(assembled.formats), formats, bytes: assembled.native.info().bytes, mlp: assembled.mlp,
      ...(source.sharp !== undefined && { sharp: source.sharp }),
      contextLength, kvCacheBytes: kvBytes,
      tokenizer: { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize, bosId: tokenizer.bosId, eosIds: tokenizer.eosIds },
      chatFormat: detectChatFormat(source.chatTemplate),
    };
    return new LowbitModel(assembled.native, context, info, tokenizer, stopIdsOf(source, tokenizer), o.threads, o.kvCache);
  } finally {
    source.close();
  }
}
