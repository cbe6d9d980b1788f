/**
 * Which ids begin and end text. Files name some of them (GGUF keys, SentencePiece's trainer spec,
 * Hugging Face configs); end-of-turn tokens of chat models are recognised by their text, as
 * llama.cpp does, so generation stops at `<|eot_id|>` even when only `<|end_of_text|>` is named.
 */
import type { TokenizerModel } from './model';

/** Control-token texts that begin a text, in the order they are tried. */
const BEGIN_OF_TEXT_TEXTS = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];

/** Control-token texts that end a text, a turn or a message. */
const END_OF_TEXT_TEXTS = [
  '</s>',
  '<|end_of_text|>',
  '<|endoftext|>',
  '<|eot_id|>',
  '<|eom_id|>',
  '<|im_end|>',
  '<|end|>',
  '<end_of_turn>',
  '<eos>',
];

/** Ids of the special tokens of `model` whose text is one of `texts`. */
function findSpecial(model: TokenizerModel, texts: readonly string[]): number[] {
  const wanted = new Set(texts);
  return model.addedTokens.filter((token) => token.special && wanted.has(token.text)).map((token) => token.id);
}

/** `named` when the file names a BOS id, else the special token spelled like one. */
export function resolveBosId(model: TokenizerModel, named: number | undefined): number | undefined {
  if (named !== undefined) return named;
  for (const text of BEGIN_OF_TEXT_TEXTS) {
    const [id] = findSpecial(model, [text]);
    if (id !== undefined) return id;
  }
  return undefined;
}

/** The ids the file names first, then every other special token spelled like an end of text or turn. */
export function resolveEosIds(model: TokenizerModel, named: readonly (number | undefined)[]): number[] {
  const ids = named.filter((id): id is number => id !== undefined);
  return [...new Set([...ids, ...findSpecial(model, END_OF_TEXT_TEXTS)])];
}
