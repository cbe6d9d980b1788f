/**
 * Hugging Face `tokenizer.json` with a BPE model, in its two Llama flavours: byte-level (ByteLevel
 * pre-tokenizer/decoder, Split regex, as Llama 3) and SentencePiece-style (byte_fallback, `▁`
 * via Prepend + Replace normalizers or a Metaspace pre-tokenizer, as Llama 2). Also the BOS/EOS
 * names of a model directory's tokenizer_config.json and special_tokens_map.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { isJsonObject, parseJson, readJsonObject, type JsonObject as ConfigObject } from '../io/json';
import { resolveMerges, type MergeList } from './bpe';
import { ByteLevelModel, unicodeToBytes } from './byte-level';
import { TokenType, type AddedToken, type LoadedTokenizer, type TokenizerModel } from './model';
import { compileSplitPattern, escapeRegExp, GPT2_PATTERN, sequence, splitter, type PreTokenizer } from './pretokenize';
import { SentencePieceModel, type DummyPrefix } from './sentencepiece';
import { resolveBosId, resolveEosIds } from './special-ids';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Sequences nest a level or two in real files; a limit keeps hostile ones off the stack. */
const MAX_NESTING = 16;
type JsonObject = { [key: string]: Json };

/** The parts of tokenizer.json both flavours use. */
interface HfBpe {
  readonly file: string;
  readonly json: JsonObject;
  readonly model: JsonObject;
  /** Token string -> id, vocabulary and added tokens. */
  readonly idOf: Map<string, number>;
  /** Token string of each id ('' for ids nothing names). */
  readonly tokens: string[];
  readonly added: AddedToken[];
  readonly merges: MergeList;
  readonly unkId: number | undefined;
}

/** Reads a Hugging Face tokenizer.json (the whole file in `bytes`; `file` names it in errors). */
export function readHfTokenizerJson(file: string, bytes: Uint8Array): LoadedTokenizer {
  const bpe = readBpe(file, parseJson(file, bytes) as Json);
  const byteLevel = hasComponent(bpe.json.pre_tokenizer, 'ByteLevel') || hasComponent(bpe.json.decoder, 'ByteLevel');
  const model = byteLevel ? byteLevelModel(bpe) : sentencePieceModel(bpe);
  return { model, bosId: resolveBosId(model, undefined), eosIds: resolveEosIds(model, []) };
}

function readBpe(file: string, json: Json): HfBpe {
  const root = object(file, json, 'tokenizer.json');
  const model = object(file, root.model, 'model');
  const type = model.type ?? 'BPE';
  if (type !== 'BPE') throw new LowbitFormatError(file, `model type ${JSON.stringify(type)} is not supported (BPE only)`, 'model.type');
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[key] !== undefined && model[key] !== null && model[key] !== '') {
      throw new LowbitFormatError(file, 'is not supported', `model.${key}`);
    }
  }
  const vocab = object(file, model.vocab, 'model.vocab');
  const added = array(file, root.added_tokens ?? [], 'added_tokens').map((entry, index) => addedToken(file, entry, index));
  const entries: [string, number][] = Object.entries(vocab).map(([token, id]) => [token, tokenId(file, id, `model.vocab.${token}`)]);
  for (const token of added) entries.push([token.text, token.id]);
  const size = entries.reduce((max, [, id]) => Math.max(max, id + 1), 0);
  // Ids index arrays: a file may not claim more ids than it names.
  if (size > entries.length) {
    throw new LowbitFormatError(file, `ids go up to ${size - 1} but only ${entries.length} tokens are named`, 'model.vocab');
  }
  const tokens = new Array<string>(size).fill('');
  const idOf = new Map<string, number>();
  for (const [token, id] of entries) {
    tokens[id] = token;
    if (!idOf.has(token)) idOf.set(token, id);
  }
  const merges = resolveMerges(array(file, model.merges ?? [], 'model.merges'), idOf);
  if (typeof merges === 'string') throw new LowbitFormatError(file, merges, 'model.merges');
  const unkToken = model.unk_token;
  const unkId = typeof unkToken === 'string' ? idOf.get(unkToken) : undefined;
  return { file, json: root, model, idOf, tokens, added, merges, unkId };
}

function addedToken(file: string, entry: Json, index: number): AddedToken {
  const token = object(file, entry, `added_tokens[${index}]`);
  if (typeof token.content !== 'string') throw new LowbitFormatError(file, 'content must be a string', `added_tokens[${index}]`);
  return {
    id: tokenId(file, token.id, `added_tokens[${index}].id`),
    text: token.content,
    special: token.special === true,
    lstrip: token.lstrip === true,
    rstrip: token.rstrip === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Byte-level flavour

function byteLevelModel(bpe: HfBpe): ByteLevelModel {
  const addedIds = new Set(bpe.added.map((token) => token.id));
  const tokenBytes = bpe.tokens.map((token, id) =>
    addedIds.has(id) ? utf8Binary(token) : (unicodeToBytes(token) ?? utf8Binary(token)),
  );
  const normalize = textNormalization(bpe.file, bpe.json.normalizer, 'normalizer');
  const split = preTokenizer(bpe.file, bpe.json.pre_tokenizer, 'pre_tokenizer');
  return new ByteLevelModel({
    tokenBytes,
    addedTokens: bpe.added,
    preTokenize: normalize === undefined ? split : (text) => split(normalize(text)),
    merges: bpe.merges,
    wholeWordFirst: bpe.model.ignore_merges === true,
    unkId: bpe.unkId,
  });
}

/** The pre-tokenizer of a byte-level tokenizer.json (Sequence, Split, ByteLevel, Digits). */
function preTokenizer(file: string, json: Json | undefined, key: string, depth = 0): PreTokenizer {
  if (json === undefined || json === null) return (text) => [text];
  const spec = object(file, json, key);
  const fail = (message: string): LowbitFormatError => new LowbitFormatError(file, message, key);
  if (depth > MAX_NESTING) throw fail('nested too deeply');
  switch (spec.type) {
    case 'Sequence':
      return sequence(
        array(file, spec.pretokenizers, `${key}.pretokenizers`).map((item, i) =>
          preTokenizer(file, item, `${key}.pretokenizers[${i}]`, depth + 1),
        ),
      );
    case 'Split': {
      if (spec.behavior !== 'Isolated' || spec.invert === true) throw fail(`Split with behavior ${String(spec.behavior)} is not supported`);
      const pattern = object(file, spec.pattern, `${key}.pattern`);
      if (typeof pattern.Regex === 'string') return splitter(compile(file, pattern.Regex, key));
      if (typeof pattern.String === 'string') return splitter(new RegExp(escapeRegExp(pattern.String), 'gu'));
      throw fail('Split pattern must be a Regex or a String');
    }
    case 'ByteLevel': {
      const split = spec.use_regex === false ? (text: string) => [text] : splitter(compile(file, GPT2_PATTERN, key));
      return spec.add_prefix_space === true ? (text) => split(text.startsWith(' ') ? text : ` ${text}`) : split;
    }
    case 'Digits':
      return splitter(spec.individual_digits === true ? /\p{N}/gu : /\p{N}+/gu);
    default:
      throw fail(`pre-tokenizer ${JSON.stringify(spec.type)} is not supported`);
  }
}

function compile(file: string, pattern: string, key: string): RegExp {
  try {
    return compileSplitPattern(pattern);
  } catch (error) {
    throw new LowbitFormatError(file, `regex ${JSON.stringify(pattern)} cannot be used: ${(error as Error).message}`, key);
  }
}

// ---------------------------------------------------------------------------------------------
// SentencePiece flavour

function sentencePieceModel(bpe: HfBpe): SentencePieceModel {
  const { file } = bpe;
  const normalizer = sentencePieceNormalizer(file, bpe.json.normalizer);
  const metaspace = metaspaceOf(file, bpe.json.pre_tokenizer);
  if (!normalizer.escapesSpaces && metaspace === undefined) {
    throw new LowbitFormatError(file, 'neither byte-level nor SentencePiece-style (no ByteLevel, Metaspace or " " -> "▁" Replace)');
  }
  const byteFallback = bpe.model.byte_fallback === true;
  const addedType = new Map(bpe.added.map((token) => [token.id, token.special ? TokenType.control : TokenType.userDefined]));
  const types = bpe.tokens.map((token, id): number => {
    if (addedType.has(id)) return addedType.get(id) as number;
    if (id === bpe.unkId) return TokenType.unknown;
    return byteFallback && /^<0x[0-9A-Fa-f]{2}>$/.test(token) ? TokenType.byte : TokenType.normal;
  });
  return new SentencePieceModel({
    pieces: bpe.tokens,
    scores: new Float32Array(bpe.tokens.length),
    types,
    unkId: bpe.unkId,
    spaceSymbol: '▁',
    dummyPrefix: metaspace?.dummyPrefix ?? normalizer.dummyPrefix,
    removeExtraWhitespaces: false,
    normalize: normalizer.normalize,
    splitWords: metaspace?.splitWords,
    merges: bpe.merges,
  });
}

/** Llama 2's normalizer: Sequence [Prepend "▁", Replace " " -> "▁"], possibly with a Unicode normal form. */
function sentencePieceNormalizer(
  file: string,
  json: Json | undefined,
): { escapesSpaces: boolean; dummyPrefix: DummyPrefix; normalize?: (text: string) => string } {
  const result: { escapesSpaces: boolean; dummyPrefix: DummyPrefix; normalize?: (text: string) => string } = {
    escapesSpaces: false,
    dummyPrefix: 'none',
  };
  for (const [key, spec] of flattenSequence(file, json, 'normalizer', 'normalizers')) {
    const fail = (): LowbitFormatError => new LowbitFormatError(file, `normalizer ${JSON.stringify(spec)} is not supported`, key);
    if (spec.type === 'Prepend') {
      if (spec.prepend !== '▁') throw fail();
      result.dummyPrefix = 'always';
    } else if (spec.type === 'Replace') {
      const pattern = object(file, spec.pattern, `${key}.pattern`);
      if (pattern.String !== ' ' || spec.content !== '▁') throw fail();
      result.escapesSpaces = true;
    } else {
      result.normalize = textNormalization(file, spec, key);
    }
  }
  return result;
}

/** A Metaspace pre-tokenizer's settings, if there is one (newer Llama tokenizers). */
function metaspaceOf(file: string, json: Json | undefined): { dummyPrefix: DummyPrefix; splitWords: boolean } | undefined {
  let found: { dummyPrefix: DummyPrefix; splitWords: boolean } | undefined;
  for (const [key, spec] of flattenSequence(file, json, 'pre_tokenizer', 'pretokenizers')) {
    if (spec.type !== 'Metaspace' || spec.replacement !== '▁') {
      throw new LowbitFormatError(file, `pre-tokenizer ${JSON.stringify(spec)} is not supported with SentencePiece-style BPE`, key);
    }
    const scheme = spec.prepend_scheme ?? (spec.add_prefix_space === false ? 'never' : 'always');
    const dummyPrefix = ({ always: 'always', first: 'first', never: 'none' } as const)[String(scheme) as 'always'];
    if (dummyPrefix === undefined) throw new LowbitFormatError(file, `prepend_scheme ${JSON.stringify(scheme)} is not supported`, key);
    found = { dummyPrefix, splitWords: spec.split === true };
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Unicode normal forms; undefined for a null normalizer. Anything else is not supported. */
function textNormalization(file: string, json: Json | undefined, key: string): ((text: string) => string) | undefined {
  const forms: string[] = [];
  for (const [itemKey, spec] of flattenSequence(file, json, key, 'normalizers')) {
    if (!['NFC', 'NFD', 'NFKC', 'NFKD'].includes(String(spec.type))) {
      throw new LowbitFormatError(file, `normalizer ${JSON.stringify(spec.type)} is not supported`, itemKey);
    }
    forms.push(String(spec.type));
  }
  return forms.length === 0 ? undefined : (text) => forms.reduce((result, form) => result.normalize(form), text);
}

/** The components of a normalizer / pre-tokenizer, with nested Sequences flattened, keyed by path. */
function flattenSequence(file: string, json: Json | undefined, key: string, listName: string, depth = 0): [string, JsonObject][] {
  if (json === undefined || json === null) return [];
  const spec = object(file, json, key);
  if (spec.type !== 'Sequence') return [[key, spec]];
  if (depth > MAX_NESTING) throw new LowbitFormatError(file, 'nested too deeply', key);
  return array(file, spec[listName], `${key}.${listName}`).flatMap((item, i) =>
    flattenSequence(file, item, `${key}.${listName}[${i}]`, listName, depth + 1),
  );
}

/** Whether `json` is, or is a Sequence containing, a component of `type`. */
function hasComponent(json: Json | undefined, type: string, depth = 0): boolean {
  if (json === null || typeof json !== 'object' || Array.isArray(json) || depth > MAX_NESTING) return false;
  if (json.type === type) return true;
  return Object.values(json).some((value) => Array.isArray(value) && value.some((item) => hasComponent(item, type, depth + 1)));
}

function utf8Binary(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

// ---------------------------------------------------------------------------------------------
// JSON access

function object(file: string, value: Json | undefined, key: string): JsonObject {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) {
    throw new LowbitFormatError(file, 'must be an object', key);
  }
  return value;
}

function array(file: string, value: Json | undefined, key: string): Json[] {
  if (!Array.isArray(value)) throw new LowbitFormatError(file, 'must be an array', key);
  return value;
}

function tokenId(file: string, value: Json | undefined, key: string): number {
  if (!(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) {
    throw new LowbitFormatError(file, `${JSON.stringify(value)} is not a token id`, key);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Model directory configs

/**
 * Tokenizer configs that name special tokens, most authoritative first. (config.json and
 * generation_config.json belong to the model reader, lib/io, which passes their ids as hints.)
 */
const CONFIG_FILES = ['tokenizer_config.json', 'special_tokens_map.json'];

/**
 * BOS and EOS ids named by the config files of a Hugging Face model directory (token ids, or
 * token texts looked up in `model`); undefined / empty where none names them.
 */
export function readHfSpecialIds(dir: string, model: TokenizerModel): { bosId: number | undefined; eosIds: number[] } {
  let bosId: number | undefined;
  const eosIds: number[] = [];
  for (const name of CONFIG_FILES) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    const config = readJsonObject(file);
    bosId ??= idsOf(config, 'bos_token', model)[0];
    eosIds.push(...idsOf(config, 'eos_token', model));
  }
  return { bosId, eosIds: [...new Set(eosIds)] };
}

/**
 * Ids a config gives for `bos_token` / `eos_token`: `<key>_id` (a number or a list) and `<key>`
 * (a text or `{ content }`). Names this vocabulary does not have are ignored.
 */
function idsOf(config: ConfigObject, key: string, model: TokenizerModel): number[] {
  const byId = config[`${key}_id`];
  const ids = (Array.isArray(byId) ? byId : [byId]).filter(
    (id): id is number => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < model.vocabSize,
  );
  const named = config[key];
  const text = isJsonObject(named) ? named.content : named;
  const idOfText = typeof text === 'string' ? findTokenId(model, text) : undefined;
  return idOfText === undefined ? ids : [...ids, idOfText];
}

function findTokenId(model: TokenizerModel, text: string): number | undefined {
  const added = model.addedTokens.find((token) => token.text === text);
  if (added !== undefined) return added.id;
  for (let id = 0; id < model.vocabSize; id++) if (model.tokenText(id) === text) return id;
  return undefined;
}
