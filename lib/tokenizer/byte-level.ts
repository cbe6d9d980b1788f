/**
 * Byte-level BPE (GPT-2, Llama 3): the text is cut into words by a regex, each word's UTF-8 bytes
 * are merged pairwise (by tiktoken rank or by merge list), so every string encodes without
 * unknown tokens. Tokens are held as "binary strings": one char (U+0000..U+00FF) per byte.
 */
import { mergeListRank, mergePairs, type MergeList, type PairRank } from './bpe';
import type { AddedToken, TokenizerModel } from './model';
import type { PreTokenizer } from './pretokenize';

/** Everything a byte-level vocabulary file says about encoding. */
export interface ByteLevelVocab {
  /** Bytes of each id as a binary string; for added tokens, the UTF-8 of their text. */
  readonly tokenBytes: readonly string[];
  /** Tokens matched in the raw text; they never take part in merges. */
  readonly addedTokens: readonly AddedToken[];
  readonly preTokenize: PreTokenizer;
  /** Merge order from a merge list; by default the pair whose concatenation has the lowest id merges first (tiktoken ranks). */
  readonly merges?: MergeList;
  /** A word that is a token as a whole is that token, whatever the merges say (tiktoken, HF `ignore_merges`). */
  readonly wholeWordFirst: boolean;
  /** Stands for bytes without a token; without one they are dropped, as Hugging Face does. */
  readonly unkId: number | undefined;
}

/** Words remembered with their ids (real text repeats words a lot), and the longest one worth remembering. */
const WORD_CACHE_LIMIT = 1 << 16;
const CACHED_WORD_LENGTH = 64;

/** Byte-level BPE over a ByteLevelVocab; decoding is the concatenation of the tokens' bytes. */
export class ByteLevelModel implements TokenizerModel {
  readonly kind = 'bpe';
  readonly vocabSize: number;
  readonly addedTokens: readonly AddedToken[];
  private readonly vocab: ByteLevelVocab;
  /** Ids of the tokens merges work with (all but the added ones), by bytes. */
  private readonly idOfBytes = new Map<string, number>();
  private readonly special = new Set<number>();
  private readonly addedText = new Map<number, string>();
  private readonly rankOf: PairRank;
  private readonly wordCache = new Map<string, readonly number[]>();
  private readonly decoded: (Uint8Array | undefined)[] = [];

  constructor(vocab: ByteLevelVocab) {
    this.vocab = vocab;
    this.vocabSize = vocab.tokenBytes.length;
    this.addedTokens = vocab.addedTokens;
    for (const token of vocab.addedTokens) {
      this.addedText.set(token.id, token.text);
      if (token.special) this.special.add(token.id);
    }
    vocab.tokenBytes.forEach((bytes, id) => {
      if (!this.addedText.has(id) && !this.idOfBytes.has(bytes)) this.idOfBytes.set(bytes, id);
    });
    this.rankOf =
      vocab.merges === undefined
        ? (left, right) => this.idOfBytes.get(left + right)
        : mergeListRank(vocab.merges, vocab.tokenBytes, this.idOfBytes);
  }

  encodeText(text: string, _atTextStart: boolean, out: number[]): void {
    for (const word of this.vocab.preTokenize(text)) {
      let ids = this.wordCache.get(word);
      if (ids === undefined) {
        ids = this.encodeWord(Buffer.from(word, 'utf8').toString('latin1'));
        if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
        if (word.length <= CACHED_WORD_LENGTH) this.wordCache.set(word, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  tokenText(id: number): string {
    return this.addedText.get(id) ?? bytesToUnicode(this.vocab.tokenBytes[id]);
  }

  isSpecial(id: number): boolean {
    return this.special.has(id);
  }

  decodeBytes(id: number): Uint8Array {
    return (this.decoded[id] ??= Buffer.from(this.vocab.tokenBytes[id], 'latin1'));
  }

  private encodeWord(bytes: string): number[] {
    const whole = this.idOfBytes.get(bytes);
    if (whole !== undefined && this.vocab.wholeWordFirst) return [whole];
    const ids: number[] = [];
    for (const symbol of mergePairs(bytes.split(''), this.rankOf)) {
      const id = this.idOfBytes.get(symbol) ?? this.vocab.unkId;
      if (id !== undefined) ids.push(id);
    }
    return ids;
  }
}

/**
 * GPT-2's reversible byte -> printable character map: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes (controls, space, ...) become U+0100 and up in byte order.
 */
const BYTE_TO_CHAR: readonly string[] = (() => {
  const isPrintable = (byte: number): boolean =>
    (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
  const chars: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    chars.push(String.fromCharCode(isPrintable(byte) ? byte : 256 + shifted++));
  }
  return chars;
})();

/** Byte of each char code of GPT-2's spelling (all below U+0144), -1 for other chars. */
const CHAR_TO_BYTE: Int16Array = (() => {
  const bytes = new Int16Array(0x144).fill(-1);
  BYTE_TO_CHAR.forEach((char, byte) => (bytes[char.charCodeAt(0)] = byte));
  return bytes;
})();

/** A binary string in GPT-2's printable spelling (`Ġthe` for " the"). */
export function bytesToUnicode(bytes: string): string {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += BYTE_TO_CHAR[bytes.charCodeAt(i)];
  return text;
}

/** The binary string a GPT-2-spelled token stands for; undefined if a character is outside the map. */
export function unicodeToBytes(text: string): string | undefined {
  let bytes = '';
  for (let i = 0; i < text.length; i++) {
    const byte = CHAR_TO_BYTE[text.charCodeAt(i)] ?? -1;
    if (byte < 0) return undefined;
    bytes += String.fromCharCode(byte);
  }
  return bytes;
}
