/**
 * loadTokenizer: picks the reader for a TokenizerSource (a file recognised by its content, GGUF
 * metadata, or a Hugging Face model directory) and applies the caller's BOS/EOS hints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { readGgufHeader, readGgufMetadata } from '../io/gguf';
import { BufferSource, FileSource } from '../io/source';
import type { EmbeddedTokenizer, EmbeddedTokenizerKind, TokenizerSource } from '../io/types';
import { integerIn, invalidParameter, knownOptions, oneOf, plainObject } from '../validate';
import { readGgufTokenizer } from './gguf';
import { readHfSpecialIds, readHfTokenizerJson } from './hf';
import { readLlama2cTokenizer } from './llama2c';
import type { LoadedTokenizer } from './model';
import { readSentencePieceModel } from './sentencepiece-proto';
import { looksLikeTiktoken, readTiktoken } from './tiktoken';
import { LowbitTokenizer, type Tokenizer } from './tokenizer';

/** Ids that override what the tokenizer files say. */
export interface TokenizerHints {
  /** The id `encode(..., { bos: true })` prepends. Defaults to the id the files name. */
  readonly bosId?: number;
  /** The ids that end generation. Defaults to the ids the files name plus known end-of-turn tokens. */
  readonly eosIds?: readonly number[];
}

/** Tokenizer files are at most tens of megabytes; anything far larger is refused unread. */
const MAX_TOKENIZER_BYTES = 256 << 20;

const KNOWN_KINDS = 'llama2.c tokenizer.bin, SentencePiece .model, tiktoken, tokenizer.json, GGUF';

/**
 * Loads the tokenizer of `source`:
 * - `file`: llama2.c `tokenizer.bin`, SentencePiece `.model`, tiktoken `tokenizer.model`,
 *   Hugging Face `tokenizer.json` or a GGUF file, recognised by content, not by name;
 * - `gguf`: the `tokenizer.ggml.*` metadata of a GGUF file;
 * - `hf-dir`: `tokenizer.json` (else `tokenizer.model`) of a Hugging Face model directory, with
 *   BOS/EOS from its tokenizer_config.json and special_tokens_map.json;
 * - `embedded`: the bytes of a tokenizer file of a stated kind carried inside a model file, with
 *   the BOS/EOS ids that model file names.
 *
 * Throws LowbitFormatError (naming the file) for unreadable, truncated or unsupported files.
 */
export function loadTokenizer(source: TokenizerSource, hints: TokenizerHints = {}): Tokenizer {
  const checked = checkHints(hints);
  const loaded = readSource(source);
  const lastId = loaded.model.vocabSize - 1;
  if (checked.bosId !== undefined) integerIn('hints.bosId', checked.bosId, 0, lastId);
  checked.eosIds?.forEach((id, i) => integerIn(`hints.eosIds[${i}]`, id, 0, lastId));
  return new LowbitTokenizer(loaded.model, checked.bosId ?? loaded.bosId, checked.eosIds ?? loaded.eosIds);
}

function readSource(source: TokenizerSource): LoadedTokenizer {
  if (typeof source !== 'object' || source === null) throw invalidParameter('source', 'a TokenizerSource object', source);
  const kind = oneOf('source.kind', source.kind, ['file', 'gguf', 'hf-dir', 'embedded']);
  if (kind === 'embedded') return readEmbedded(source as EmbeddedTokenizer);
  if (kind === 'gguf') {
    const { metadata } = source as { metadata: unknown };
    if (!(metadata instanceof Map)) throw invalidParameter('source.metadata', 'a Map of GGUF metadata', metadata);
    return readGgufTokenizer(metadata);
  }
  if (kind === 'file') return readTokenizerFile(checkPath(source, 'path'));
  return readHfDirectory(checkPath(source, 'dir'));
}

/** Reads any tokenizer file, recognising its kind from its first bytes. */
function readTokenizerFile(file: string): LoadedTokenizer {
  const bytes = readTokenizerBytes(file);
  if (bytes === 'GGUF') return readGgufTokenizer(readGgufMetadata(file).metadata, file);
  return readTokenizerContent(file, bytes).loaded;
}

/** A tokenizer read from the whole content of a file that is not GGUF, and the kind it was recognised as. */
export interface RecognisedTokenizer {
  readonly kind: Exclude<EmbeddedTokenizerKind, 'gguf'>;
  readonly loaded: LoadedTokenizer;
}

/** Reads the content of a tokenizer file (not GGUF), recognising its kind from its first bytes. */
export function readTokenizerContent(file: string, bytes: Uint8Array): RecognisedTokenizer {
  const head = Buffer.from(bytes.subarray(0, 256)).toString('latin1');
  if (/^\s*\{/.test(head) && !head.includes('\0')) return { kind: 'tokenizer.json', loaded: readHfTokenizerJson(file, bytes) };
  if (looksLikeTiktoken(head)) return { kind: 'tiktoken', loaded: readTiktoken(file, bytes) };
  if (bytes[0] === 0x0a) return readSentencePieceOrLlama2c(file, bytes);
  return { kind: 'llama2c', loaded: readLlama2cOrExplain(file, bytes) };
}

/** The reader of each embedded kind: the kind is stated, not guessed. */
const EMBEDDED_READERS: Readonly<Record<EmbeddedTokenizerKind, (file: string, bytes: Uint8Array) => LoadedTokenizer>> = {
  sentencepiece: readSentencePieceModel,
  tiktoken: readTiktoken,
  'tokenizer.json': readHfTokenizerJson,
  llama2c: readLlama2cTokenizer,
  gguf: (file, bytes) => readGgufTokenizer(readGgufHeader(new BufferSource(file, bytes)).metadata, file),
};

/** An embedded tokenizer; its BOS/EOS ids must be in its vocabulary (a LowbitFormatError otherwise). */
function readEmbedded(source: EmbeddedTokenizer): LoadedTokenizer {
  const file = source.file;
  if (typeof file !== 'string') throw invalidParameter('source.file', 'a name for errors', file);
  const format = oneOf('source.format', source.format, Object.keys(EMBEDDED_READERS) as EmbeddedTokenizerKind[]);
  if (!(source.bytes instanceof Uint8Array)) throw invalidParameter('source.bytes', 'a Uint8Array', source.bytes);
  const loaded = EMBEDDED_READERS[format](file, source.bytes);
  const inVocabulary = (id: unknown) => Number.isSafeInteger(id) && (id as number) >= 0 && (id as number) < loaded.model.vocabSize;
  if (source.bosId !== undefined && !inVocabulary(source.bosId)) {
    throw new LowbitFormatError(file, `${String(source.bosId)} is not an id of the ${loaded.model.vocabSize}-token vocabulary`, 'bosId');
  }
  const badEos = source.eosIds?.find((id) => !inVocabulary(id));
  if (badEos !== undefined) {
    throw new LowbitFormatError(file, `${String(badEos)} is not an id of the ${loaded.model.vocabSize}-token vocabulary`, 'eosIds');
  }
  return { model: loaded.model, bosId: source.bosId ?? loaded.bosId, eosIds: source.eosIds ?? loaded.eosIds };
}

/**
 * The whole of a tokenizer file, or 'GGUF' for a GGUF file (whose reader reads only the header).
 */
export function readTokenizerBytes(file: string): Uint8Array | 'GGUF' {
  const source = FileSource.open(file);
  try {
    const magic = Buffer.from(source.read(0, Math.min(4, source.size))).toString('latin1');
    if (magic === 'GGUF') return magic;
    if (source.size > MAX_TOKENIZER_BYTES) throw new LowbitFormatError(file, `${source.size} bytes is too large for a tokenizer`);
    return source.read(0, source.size);
  } finally {
    source.close();
  }
}

/** A ModelProto starts with 0x0a (field 1, a piece); so does a tokenizer.bin whose max_token_length is 10. */
function readSentencePieceOrLlama2c(file: string, bytes: Uint8Array): RecognisedTokenizer {
  try {
    return { kind: 'sentencepiece', loaded: readSentencePieceModel(file, bytes) };
  } catch (error) {
    try {
      return { kind: 'llama2c', loaded: readLlama2cTokenizer(file, bytes) };
    } catch {
      throw error; // why it is not a .model, the likelier reading
    }
  }
}

/** Files no other reader claims are tokenizer.bin files, or not tokenizers at all. */
function readLlama2cOrExplain(file: string, bytes: Uint8Array): LoadedTokenizer {
  try {
    return readLlama2cTokenizer(file, bytes);
  } catch (error) {
    if (!(error instanceof LowbitFormatError)) throw error;
    const reason = error.message.replace(`${file}: `, '');
    throw new LowbitFormatError(file, `not a tokenizer file lowbit recognises (${KNOWN_KINDS}); as a tokenizer.bin: ${reason}`, undefined, {
      cause: error,
    });
  }
}

/** A Hugging Face model directory: tokenizer.json, else tokenizer.model; BOS/EOS also from its configs. */
function readHfDirectory(dir: string): LoadedTokenizer {
  const file = ['tokenizer.json', 'tokenizer.model'].map((name) => path.join(dir, name)).find((candidate) => fs.existsSync(candidate));
  if (file === undefined) throw new LowbitFormatError(dir, 'has neither tokenizer.json nor tokenizer.model');
  const loaded = readTokenizerFile(file);
  const named = readHfSpecialIds(dir, loaded.model);
  return {
    model: loaded.model,
    bosId: named.bosId ?? loaded.bosId,
    eosIds: [...new Set([...named.eosIds, ...loaded.eosIds])],
  };
}

function checkPath(source: object, key: 'path' | 'dir'): string {
  const value = (source as Record<string, unknown>)[key];
  if (typeof value !== 'string' || value === '') throw invalidParameter(`source.${key}`, 'a non-empty path', value);
  return value;
}

/** Type checks of the hints; their range is checked once the vocabulary size is known. */
function checkHints(hints: TokenizerHints): TokenizerHints {
  const checked = plainObject('hints', hints);
  knownOptions('loadTokenizer hints', checked, ['bosId', 'eosIds']);
  if (checked.bosId !== undefined) integerIn('hints.bosId', checked.bosId, 0);
  if (checked.eosIds !== undefined) {
    if (!Array.isArray(checked.eosIds)) throw invalidParameter('hints.eosIds', 'an array of token ids', checked.eosIds);
    checked.eosIds.forEach((id, i) => integerIn(`hints.eosIds[${i}]`, id, 0));
  }
  return checked as TokenizerHints;
}
