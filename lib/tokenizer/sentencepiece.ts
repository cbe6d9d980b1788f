/**
 * SentencePiece-style BPE (Llama 1/2, TinyLlama, llama2.c vocabularies): spaces become `▁`, a
 * dummy-prefix `▁` goes in front, the text is split into characters and merged pairwise by
 * piece score (or by a Hugging Face merge list), and characters no piece covers fall back to
 * `<0xXX>` byte pieces or to `<unk>`. Matches SentencePiece and llama.cpp's SPM tokenizer.
 */
import { mergeListRank, mergePairs, type MergeList, type PairRank } from './bpe';
import { TokenType, type AddedToken, type TokenizerModel } from './model';

/** When the dummy-prefix space is added: never, only at the very start, or before every text run. */
export type DummyPrefix = 'none' | 'first' | 'always';

/** Everything a SentencePiece-style vocabulary file says about encoding. */
export interface SentencePieceVocab {
  readonly pieces: readonly string[];
  /** Higher scores merge first (unused when `merges` is given). */
  readonly scores: ArrayLike<number>;
  /** One TokenType per piece. */
  readonly types: ArrayLike<number>;
  readonly unkId: number | undefined;
  /** The character pieces use for a space: `▁`, or a plain space in llama2.c's tokenizer.bin. */
  readonly spaceSymbol: string;
  readonly dummyPrefix: DummyPrefix;
  /** Trim leading/trailing spaces and squeeze runs of spaces (SentencePiece's normalizer option). */
  readonly removeExtraWhitespaces: boolean;
  /** Text normalization applied before everything else (NFKC ...), when the file asks for one. */
  readonly normalize?: (text: string) => string;
  /** Cut the text before every space symbol and encode the words apart (HF Metaspace `split`). */
  readonly splitWords?: boolean;
  /** Merge order from a Hugging Face merge list; by default pieces merge by score. */
  readonly merges?: MergeList;
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const utf8 = new TextEncoder();

/** SentencePiece-style BPE over a SentencePieceVocab (see the file comment for the algorithm). */
export class SentencePieceModel implements TokenizerModel {
  readonly kind = 'sentencepiece';
  readonly vocabSize: number;
  readonly addedTokens: readonly AddedToken[];
  private readonly vocab: SentencePieceVocab;
  /** Pieces merges may produce and symbols resolve to: normal, user-defined and unused ones. */
  private readonly pieceIds = new Map<string, number>();
  /** Id of the `<0xXX>` piece of each byte, -1 where the vocabulary has none. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** Byte value of each byte piece, -1 for other pieces. */
  private readonly byteOfPiece: Int16Array;
  private readonly rankOf: PairRank;
  private readonly decoded: (Uint8Array | undefined)[] = [];

  constructor(vocab: SentencePieceVocab) {
    this.vocab = vocab;
    this.vocabSize = vocab.pieces.length;
    this.byteOfPiece = new Int16Array(this.vocabSize).fill(-1);
    const added: AddedToken[] = [];
    vocab.pieces.forEach((piece, id) => {
      const type = vocab.types[id];
      if (type === TokenType.byte) {
        const byte = BYTE_PIECE.exec(piece);
        if (byte !== null) {
          this.byteOfPiece[id] = parseInt(byte[1], 16);
          if (this.byteIds[this.byteOfPiece[id]] < 0) this.byteIds[this.byteOfPiece[id]] = id;
        }
      } else if (type === TokenType.control || type === TokenType.unknown) {
        added.push({ id, text: piece, special: true });
      } else if (!this.pieceIds.has(piece)) {
        this.pieceIds.set(piece, id);
        // SentencePiece never splits user-defined pieces; they are cut out of the text first.
        if (type === TokenType.userDefined) added.push({ id, text: piece, special: false });
      }
    });
    this.addedTokens = added;
    this.rankOf = vocab.merges === undefined ? this.rankByScore() : mergeListRank(vocab.merges, vocab.pieces, this.pieceIds);
  }

  encodeText(text: string, atTextStart: boolean, out: number[]): void {
    const { spaceSymbol } = this.vocab;
    let normalized = this.vocab.normalize === undefined ? text : this.vocab.normalize(text);
    if (this.vocab.removeExtraWhitespaces) normalized = normalized.replace(/ +/g, ' ').replace(/^ | $/g, '');
    if (normalized === '') return;
    normalized = normalized.replaceAll(' ', spaceSymbol);
    const { dummyPrefix } = this.vocab;
    if (dummyPrefix === 'always' || (dummyPrefix === 'first' && atTextStart)) normalized = spaceSymbol + normalized;
    const words = this.vocab.splitWords === true ? splitBefore(normalized, spaceSymbol) : [normalized];
    for (const word of words) this.encodeWord(word, out);
  }

  tokenText(id: number): string {
    return this.vocab.pieces[id];
  }

  isSpecial(id: number): boolean {
    const type = this.vocab.types[id];
    return type === TokenType.control || type === TokenType.unknown;
  }

  decodeBytes(id: number, previousId: number, bosId: number | undefined): Uint8Array {
    const byte = this.byteOfPiece[id];
    if (byte >= 0) return Uint8Array.of(byte);
    const bytes = (this.decoded[id] ??= utf8.encode(this.pieceAsText(id)));
    // The space the dummy prefix put in front of the text is not part of it (SentencePiece, llama2.c's decode).
    const isPrefixSpace = bytes[0] === 0x20 && previousId === bosId && this.vocab.dummyPrefix !== 'none';
    return isPrefixSpace && !this.isSpecial(id) ? bytes.subarray(1) : bytes;
  }

  private pieceAsText(id: number): string {
    return this.isSpecial(id) ? this.vocab.pieces[id] : this.vocab.pieces[id].replaceAll(this.vocab.spaceSymbol, ' ');
  }

  /** Merges `word`; symbols no piece covers become byte pieces, else `<unk>`, else nothing. */
  private encodeWord(word: string, out: number[]): void {
    let previousWasUnknown = false;
    for (const symbol of mergePairs(Array.from(word), this.rankOf)) {
      const id = this.pieceIds.get(symbol);
      if (id !== undefined) {
        out.push(id);
        previousWasUnknown = false;
      } else if (this.pushBytes(symbol, out)) {
        previousWasUnknown = false;
      } else if (this.vocab.unkId !== undefined) {
        // SentencePiece folds a run of unknown characters into one <unk>.
        if (!previousWasUnknown) out.push(this.vocab.unkId);
        previousWasUnknown = true;
      }
    }
  }

  /** Appends the byte pieces of `symbol`'s UTF-8; false when the vocabulary lacks one of them. */
  private pushBytes(symbol: string, out: number[]): boolean {
    const bytes = utf8.encode(symbol);
    if (!bytes.every((byte) => this.byteIds[byte] >= 0)) return false;
    for (const byte of bytes) out.push(this.byteIds[byte]);
    return true;
  }

  /** SentencePiece's merge order: the pair whose concatenation is the highest-scoring piece first. */
  private rankByScore(): PairRank {
    const { scores } = this.vocab;
    return (left, right) => {
      const id = this.pieceIds.get(left + right);
      return id === undefined ? undefined : -scores[id];
    };
  }
}

/** `text` cut in front of every `separator` (the first word keeps a leading one). */
function splitBefore(text: string, separator: string): string[] {
  const words: string[] = [];
  let start = 0;
  for (let at = text.indexOf(separator, 1); at > 0; at = text.indexOf(separator, at + 1)) {
    words.push(text.slice(start, at));
    start = at;
  }
  words.push(text.slice(start));
  return words;
}
