/**
 * The contract between the file loaders of lib/tokenizer and the public Tokenizer: a loader turns
 * a file into a TokenizerModel (vocabulary + encoding algorithm) plus the BOS/EOS ids it names.
 */

/** Token kinds, numbered as SentencePiece's `ModelProto.SentencePiece.Type` and GGUF's `token_type`. */
export const TokenType = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;
export type TokenType = (typeof TokenType)[keyof typeof TokenType];

/** A token matched in the raw text before the model sees it (control tokens, user-defined pieces). */
export interface AddedToken {
  readonly id: number;
  readonly text: string;
  /** Matched only when encoding with `parseSpecial`; otherwise always. */
  readonly special: boolean;
  /** Whitespace before / after the match is swallowed (Hugging Face `lstrip` / `rstrip`). */
  readonly lstrip?: boolean;
  readonly rstrip?: boolean;
}

/** A vocabulary and the algorithm that maps text to its ids and back. */
export interface TokenizerModel {
  readonly kind: 'sentencepiece' | 'bpe';
  readonly vocabSize: number;
  readonly addedTokens: readonly AddedToken[];
  /**
   * Appends the ids of `text`, a run of text between added tokens; `atTextStart` is true when it
   * begins the whole input (SentencePiece's "first" dummy-prefix scheme needs that).
   */
  encodeText(text: string, atTextStart: boolean, out: number[]): void;
  /** The raw piece, as the vocabulary spells it. */
  tokenText(id: number): string;
  isSpecial(id: number): boolean;
  /** The bytes `id` contributes to decoded text when it follows `previousId` (-1 at the start). */
  decodeBytes(id: number, previousId: number, bosId: number | undefined): Uint8Array;
}

/** What every loader returns: the model and the ids the file itself names. */
export interface LoadedTokenizer {
  readonly model: TokenizerModel;
  readonly bosId: number | undefined;
  readonly eosIds: readonly number[];
}
