/**
 * Tokenizers stored in GGUF metadata (`tokenizer.ggml.*`): `llama` (SentencePiece: tokens,
 * scores, token_type) and `gpt2` (byte-level BPE: tokens in GPT-2's byte spelling, merges
 * "a b", `pre` naming the split regex). Keys and their meaning follow llama.cpp's llama-vocab.
 */
import { LowbitFormatError } from '../errors';
import type { GgufValue } from '../io/types';
import { resolveMerges } from './bpe';
import { ByteLevelModel, unicodeToBytes } from './byte-level';
import { TokenType, type AddedToken, type LoadedTokenizer } from './model';
import { compileSplitPattern, GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN, splitter } from './pretokenize';
import { SentencePieceModel } from './sentencepiece';
import { resolveBosId, resolveEosIds } from './special-ids';

/**
 * Reads the tokenizer in `metadata`; `file` names it in errors (metadata handed over without its
 * file is called "GGUF metadata").
 */
export function readGgufTokenizer(metadata: ReadonlyMap<string, GgufValue>, file = 'GGUF metadata'): LoadedTokenizer {
  const keys = new TokenizerKeys(metadata, file);
  const kind = keys.string('model');
  const tokens = keys.strings('tokens');
  if (tokens === undefined) throw keys.fail('is missing', 'tokens');
  if (tokens.length === 0) throw keys.fail('is empty', 'tokens');
  const types = keys.numbers('token_type', tokens.length) ?? tokens.map(() => TokenType.normal);
  const badType = types.findIndex((type) => !(Number.isInteger(type) && type >= TokenType.normal && type <= TokenType.byte));
  if (badType >= 0) throw keys.fail(`token ${badType} has unknown type ${types[badType]}`, 'token_type');

  let model: SentencePieceModel | ByteLevelModel;
  if (kind === 'llama') model = sentencePieceModel(keys, tokens, types);
  else if (kind === 'gpt2') model = byteLevelModel(keys, tokens, types);
  else throw keys.fail(`tokenizer '${kind}' is not supported (llama, gpt2)`, 'model');
  const id = (key: string): number | undefined => keys.tokenId(key, tokens.length);
  return {
    model,
    bosId: resolveBosId(model, id('bos_token_id')),
    eosIds: resolveEosIds(model, [id('eos_token_id'), id('eot_token_id'), id('eom_token_id')]),
  };
}

function sentencePieceModel(keys: TokenizerKeys, tokens: string[], types: number[]): SentencePieceModel {
  return new SentencePieceModel({
    pieces: tokens,
    scores: keys.numbers('scores', tokens.length) ?? tokens.map(() => 0),
    types,
    unkId: keys.tokenId('unknown_token_id', tokens.length),
    spaceSymbol: '▁',
    // llama.cpp puts the space in front of every text run that starts the input or follows a special token.
    dummyPrefix: (keys.boolean('add_space_prefix') ?? true) ? 'always' : 'none',
    removeExtraWhitespaces: keys.boolean('remove_extra_whitespaces') ?? false,
  });
}

/**
 * The `tokenizer.ggml.pre` names lowbit knows, with the split regex llama.cpp uses for each and
 * whether it encodes a word that is a token as that token before merging (llama.cpp's ignore_merges).
 */
export const GGUF_PRE_TOKENIZERS: Readonly<Record<string, { pattern: string; wholeWordFirst: boolean }>> = {
  default: { pattern: GPT2_PATTERN, wholeWordFirst: false },
  gpt2: { pattern: GPT2_PATTERN, wholeWordFirst: false },
  'llama-bpe': { pattern: LLAMA3_PATTERN, wholeWordFirst: true },
  llama3: { pattern: LLAMA3_PATTERN, wholeWordFirst: true },
  'llama-v3': { pattern: LLAMA3_PATTERN, wholeWordFirst: true },
  dbrx: { pattern: LLAMA3_PATTERN, wholeWordFirst: false },
  'smaug-bpe': { pattern: LLAMA3_PATTERN, wholeWordFirst: false },
  qwen2: { pattern: QWEN2_PATTERN, wholeWordFirst: false },
};

function byteLevelModel(keys: TokenizerKeys, tokens: string[], types: number[]): ByteLevelModel {
  const pre = keys.string('pre') ?? 'default';
  const preTokenizer = Object.hasOwn(GGUF_PRE_TOKENIZERS, pre) ? GGUF_PRE_TOKENIZERS[pre] : undefined;
  if (preTokenizer === undefined) throw keys.fail(`pre-tokenizer '${pre}' is not supported`, 'pre');
  const addedTokens: AddedToken[] = [];
  const tokenBytes = tokens.map((token, id) => {
    const added = types[id] === TokenType.control || types[id] === TokenType.userDefined;
    if (added) addedTokens.push({ id, text: token, special: types[id] === TokenType.control });
    // Control and user-defined tokens are stored as plain text, the others in GPT-2's byte spelling.
    const bytes = added ? undefined : unicodeToBytes(token);
    return bytes ?? Buffer.from(token, 'utf8').toString('latin1');
  });
  const mergeList = keys.strings('merges');
  if (mergeList === undefined) throw keys.fail('is missing', 'merges');
  const merges = resolveMerges(mergeList, firstIds(tokens));
  if (typeof merges === 'string') throw keys.fail(merges, 'merges');
  return new ByteLevelModel({
    tokenBytes,
    addedTokens,
    preTokenize: splitter(compileSplitPattern(preTokenizer.pattern)),
    merges,
    wholeWordFirst: preTokenizer.wholeWordFirst,
    unkId: keys.tokenId('unknown_token_id', tokens.length),
  });
}

/** Each token's first id (a vocabulary may spell two ids alike). */
function firstIds(tokens: readonly string[]): Map<string, number> {
  const ids = new Map<string, number>();
  tokens.forEach((token, id) => ids.has(token) || ids.set(token, id));
  return ids;
}

/** Typed access to the `tokenizer.ggml.<key>` values; a value of the wrong type is a LowbitFormatError. */
class TokenizerKeys {
  constructor(
    private readonly metadata: ReadonlyMap<string, GgufValue>,
    private readonly file: string,
  ) {}

  fail(message: string, key: string): LowbitFormatError {
    return new LowbitFormatError(this.file, message, `tokenizer.ggml.${key}`);
  }

  string(key: string): string | undefined {
    return this.get(key, (value): value is string => typeof value === 'string');
  }

  boolean(key: string): boolean | undefined {
    return this.get(key, (value): value is boolean => typeof value === 'boolean');
  }

  strings(key: string): string[] | undefined {
    return this.get(key, (value): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string'));
  }

  /** A numeric array with one entry per token. */
  numbers(key: string, length: number): number[] | undefined {
    const values = this.get(key, Array.isArray);
    if (values === undefined) return undefined;
    if (values.length !== length) throw this.fail(`has ${values.length} entries for ${length} tokens`, key);
    return values.map((value) => {
      if (typeof value !== 'number' && typeof value !== 'bigint') throw this.fail(`has a non-numeric entry (${typeof value})`, key);
      return Number(value);
    });
  }

  /** A token id, or undefined when absent or outside the vocabulary (files write -1 / UINT32_MAX for "none"). */
  tokenId(key: string, vocabSize: number): number | undefined {
    const value = this.get(key, (v): v is number | bigint => typeof v === 'number' || typeof v === 'bigint');
    if (value === undefined) return undefined;
    const id = Number(value);
    if (!Number.isInteger(id)) throw this.fail(`${id} is not a token id`, key);
    return id >= 0 && id < vocabSize ? id : undefined;
  }

  private get<T extends GgufValue>(key: string, is: (value: GgufValue) => value is T): T | undefined {
    const value = this.metadata.get(`tokenizer.ggml.${key}`);
    if (value === undefined) return undefined;
    if (!is(value)) throw this.fail(`has the wrong type (${Array.isArray(value) ? `array of ${value.length}` : typeof value})`, key);
    return value;
  }
}
