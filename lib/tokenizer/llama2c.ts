/**
 * llama2.c `tokenizer.bin`: int32 max_token_length, then until the end of the file, per token:
 * float32 score, int32 byte length, UTF-8 bytes. Pieces carry plain spaces (SentencePiece's `▁`
 * replaced), byte pieces are `<0xXX>`, and BOS/EOS are written `\n<s>\n` / `\n</s>\n`.
 * Encoding follows run.c: a dummy-prefix space, per-character lookup with byte fallback, then
 * merges by highest score; BOS = 1, EOS = 2.
 */
import { LowbitFormatError } from '../errors';
import { ByteCursor } from '../io/cursor';
import { BufferSource } from '../io/source';
import { TokenType, type LoadedTokenizer } from './model';
import { SentencePieceModel } from './sentencepiece';
import { resolveEosIds } from './special-ids';

/** Ids run.c hard-codes (SentencePiece's defaults). */
const UNK_ID = 0;
const BOS_ID = 1;
const EOS_ID = 2;
/** run.c keeps pieces in fixed buffers; anything longer than this is not a tokenizer. */
const MAX_TOKEN_LENGTH_LIMIT = 1 << 16;
const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** Reads a llama2.c tokenizer.bin (the whole file in `bytes`; `file` names it in errors). */
export function readLlama2cTokenizer(file: string, bytes: Uint8Array): LoadedTokenizer {
  const cursor = new ByteCursor(new BufferSource(file, bytes));
  const maxTokenLength = cursor.within('max_token_length', () => cursor.i32());
  if (!(maxTokenLength > 0 && maxTokenLength <= MAX_TOKEN_LENGTH_LIMIT)) {
    throw cursor.fail(`max_token_length ${maxTokenLength} is not in [1, ${MAX_TOKEN_LENGTH_LIMIT}]`, 'max_token_length');
  }
  const pieces: string[] = [];
  const scores: number[] = [];
  while (cursor.remaining > 0) {
    cursor.within(`token ${pieces.length}`, () => {
      scores.push(cursor.f32());
      const length = cursor.i32();
      if (!(length >= 0 && length <= maxTokenLength)) throw cursor.fail(`length ${length} is not in [0, ${maxTokenLength}]`);
      pieces.push(cursor.utf8(length, true));
    });
  }
  if (pieces.length <= EOS_ID) throw new LowbitFormatError(file, `only ${pieces.length} tokens: not a llama2.c tokenizer`);

  const types = pieces.map((piece, id) => typeOf(piece, id));
  // The newlines around <s> and </s> are only there for run.c's printing.
  const texts = pieces.map((piece, id) => (types[id] === TokenType.control ? piece.replace(/^\n([^]*)\n$/, '$1') : piece));
  const model = new SentencePieceModel({
    pieces: texts,
    scores,
    types,
    unkId: UNK_ID,
    spaceSymbol: ' ',
    dummyPrefix: 'always',
    removeExtraWhitespaces: false,
  });
  return { model, bosId: BOS_ID, eosIds: resolveEosIds(model, [EOS_ID]) };
}

/** llama2.c drops piece types; they follow from its fixed layout and the byte-piece spelling. */
function typeOf(piece: string, id: number): TokenType {
  if (id === UNK_ID) return TokenType.unknown;
  if (id === BOS_ID || id === EOS_ID) return TokenType.control;
  return BYTE_PIECE.test(piece) ? TokenType.byte : TokenType.normal;
}
