/**
 * The public Tokenizer: argument checks, added/special-token splitting, BOS/EOS and UTF-8-safe
 * (streaming) decoding around a TokenizerModel, shared by every file kind.
 */
import { integerIn, invalidParameter, knownOptions, plainObject } from '../validate';
import { AddedTokenSplitter } from './added-tokens';
import type { TokenizerModel } from './model';

/** Options of `Tokenizer.encode`. */
export interface EncodeOptions {
  /** Prepend the BOS token. Defaults to `false`. */
  readonly bos?: boolean;
  /** Append the first EOS token. Defaults to `false`. */
  readonly eos?: boolean;
  /**
   * Turn the text of control tokens (`<s>`, `<|eot_id|>` ...) into their ids; when false they are
   * tokenized as plain text. User-defined pieces are always matched. Defaults to `false`.
   */
  readonly parseSpecial?: boolean;
}

/** Options of `Tokenizer.decode`. */
export interface DecodeOptions {
  /** Leave out control tokens (BOS, EOS, `<|eot_id|>` ...). Defaults to `false`. */
  readonly skipSpecial?: boolean;
}

/** Incremental decoding for generation: text comes out as soon as it is complete. */
export interface StreamDecoder {
  /** The text `id` completes; bytes of an unfinished UTF-8 character are held back. */
  push(id: number): string;
  /** Whatever is held back (an unfinished character becomes U+FFFD). */
  flush(): string;
}

/** Text <-> token ids for one vocabulary; made by `loadTokenizer`. Immutable, safe to share. */
export interface Tokenizer {
  /** `sentencepiece`: SentencePiece-style BPE over characters with `▁` for spaces; `bpe`: byte-level BPE. */
  readonly kind: 'sentencepiece' | 'bpe';
  /** Number of ids, special tokens included. */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  /** Every id that ends generation (end of text, end of turn, end of message). */
  readonly eosIds: readonly number[];
  /**
   * Ids of `text`. SentencePiece vocabularies add their dummy-prefix space in front of the text
   * (and of each run after a special token), as SentencePiece and llama.cpp do.
   */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * Text of `ids`. SentencePiece vocabularies drop the leading space of the piece that follows BOS
   * (it is the dummy prefix), so `decode(encode(text, { bos: true }), { skipSpecial: true }) === text`.
   */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /**
   * Streaming form of `decode`: the concatenated pushes and flush equal `decode(ids, options)`.
   * The leading-space rule needs to see BOS: push it (with `skipSpecial` it prints nothing), or
   * the last prompt id, before the generated ids.
   */
  createStreamDecoder(options?: DecodeOptions): StreamDecoder;
  /** The raw piece of `id` (`▁the`, `<0x0A>`, `Ġthe`, `<|eot_id|>` ...). */
  tokenText(id: number): string;
  /** Whether `id` is a control / special token. */
  isSpecial(id: number): boolean;
}

/** Tokenizer over any TokenizerModel. */
export class LowbitTokenizer implements Tokenizer {
  readonly kind: 'sentencepiece' | 'bpe';
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: readonly number[];
  private readonly model: TokenizerModel;
  private readonly splitter: AddedTokenSplitter;

  constructor(model: TokenizerModel, bosId: number | undefined, eosIds: readonly number[]) {
    this.model = model;
    this.kind = model.kind;
    this.vocabSize = model.vocabSize;
    this.bosId = bosId;
    this.eosIds = Object.freeze([...eosIds]);
    this.splitter = new AddedTokenSplitter(model.addedTokens);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw invalidParameter('text', 'a string', text);
    const { bos, eos, parseSpecial } = checkFlags('encode', options, ['bos', 'eos', 'parseSpecial']);
    const ids: number[] = [];
    if (bos) ids.push(requireId(this.bosId, 'BOS'));
    const fragments = this.splitter.split(text, parseSpecial);
    fragments.forEach((fragment, index) => {
      if (typeof fragment === 'number') ids.push(fragment);
      else this.model.encodeText(fragment, index === 0, ids);
    });
    if (eos) ids.push(requireId(this.eosIds[0], 'EOS'));
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (!Array.isArray(ids)) throw invalidParameter('ids', 'an array of token ids', ids);
    const decoder = this.streamDecoder(checkFlags('decode', options, ['skipSpecial']).skipSpecial);
    let text = '';
    for (const id of ids) text += decoder.push(id);
    return text + decoder.flush();
  }

  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return this.streamDecoder(checkFlags('createStreamDecoder', options, ['skipSpecial']).skipSpecial);
  }

  tokenText(id: number): string {
    return this.model.tokenText(this.checkId(id));
  }

  isSpecial(id: number): boolean {
    return this.model.isSpecial(this.checkId(id));
  }

  /** The one decoding path: batch decode is a stream that is flushed at the end. */
  private streamDecoder(skipSpecial: boolean): StreamDecoder {
    // ignoreBOM: a U+FEFF at the start of the text is content, not a byte-order mark.
    const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
    let previousId = -1;
    return {
      push: (id: number): string => {
        this.checkId(id);
        const skip = skipSpecial && this.model.isSpecial(id);
        const bytes = skip ? undefined : this.model.decodeBytes(id, previousId, this.bosId);
        previousId = id;
        return bytes === undefined || bytes.length === 0 ? '' : utf8.decode(bytes, { stream: true });
      },
      flush: (): string => utf8.decode(),
    };
  }

  private checkId(id: number): number {
    return integerIn('token id', id, 0, this.vocabSize - 1);
  }
}

function requireId(id: number | undefined, what: string): number {
  if (id === undefined) throw new RangeError(`this tokenizer has no ${what} token`);
  return id;
}

/** Boolean options, all defaulting to false; rejects non-objects, unknown names and non-booleans. */
function checkFlags<K extends string>(what: string, options: unknown, names: readonly K[]): Record<K, boolean> {
  const checked = plainObject(`${what} options`, options);
  knownOptions(what, checked, names);
  const flags = {} as Record<K, boolean>;
  for (const name of names) {
    const value = checked[name];
    if (value !== undefined && typeof value !== 'boolean') throw invalidParameter(`options.${name}`, 'a boolean', value);
    flags[name] = value === true;
  }
  return flags;
}
