/**
 * tiktoken BPE files (Llama 3's original `tokenizer.model`): one `base64(token bytes) rank` line
 * per token, ranks 0..n-1. Encoding is byte-level BPE by rank after the Llama 3 split regex.
 * Special tokens are not in the file: for Llama 3 (128000 ranks) they follow Meta's list.
 */
import { LowbitFormatError } from '../errors';
import { ByteLevelModel } from './byte-level';
import type { AddedToken, LoadedTokenizer } from './model';
import { compileSplitPattern, LLAMA3_PATTERN, splitter } from './pretokenize';
import { resolveBosId, resolveEosIds } from './special-ids';

const LLAMA3_RANKS = 128000;
const LLAMA3_SPECIAL_COUNT = 256;

/** Meta's named Llama 3 special tokens (llama-models, Llama 3.1+ names), from id 128000 on. */
const LLAMA3_NAMED_SPECIALS = [
  '<|begin_of_text|>',
  '<|end_of_text|>',
  '<|reserved_special_token_0|>',
  '<|reserved_special_token_1|>',
  '<|finetune_right_pad_id|>',
  '<|step_id|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eom_id|>',
  '<|eot_id|>',
  '<|python_tag|>',
  '<|image|>',
];

const LINE = /^([A-Za-z0-9+/]*={0,2}) (\d{1,9})\r?$/;

/** Whether `head` (the start of a file) looks like a tiktoken rank file. */
export function looksLikeTiktoken(head: string): boolean {
  const newline = head.indexOf('\n');
  return LINE.test(newline < 0 ? head : head.slice(0, newline));
}

/** Reads a tiktoken rank file (the whole file in `bytes`; `file` names it in errors). */
export function readTiktoken(file: string, bytes: Uint8Array): LoadedTokenizer {
  const lines = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const tokenBytes = new Array<string>(lines.length);
  lines.forEach((line, index) => {
    const fields = LINE.exec(line);
    if (fields === null) throw new LowbitFormatError(file, `line ${index + 1} is not 'base64 rank'`);
    const rank = Number(fields[2]);
    if (rank >= lines.length || tokenBytes[rank] !== undefined) {
      throw new LowbitFormatError(file, `line ${index + 1}: rank ${rank} is repeated or outside 0..${lines.length - 1}`);
    }
    tokenBytes[rank] = Buffer.from(fields[1], 'base64').toString('latin1');
  });
  if (lines.length < 256) throw new LowbitFormatError(file, `only ${lines.length} ranks: not a tiktoken file`);

  const addedTokens = lines.length === LLAMA3_RANKS ? llama3Specials() : [];
  for (const token of addedTokens) tokenBytes.push(Buffer.from(token.text, 'utf8').toString('latin1'));
  const model = new ByteLevelModel({
    tokenBytes,
    addedTokens,
    preTokenize: splitter(compileSplitPattern(LLAMA3_PATTERN)),
    wholeWordFirst: true,
    unkId: undefined,
  });
  return { model, bosId: resolveBosId(model, undefined), eosIds: resolveEosIds(model, []) };
}

function llama3Specials(): AddedToken[] {
  return Array.from({ length: LLAMA3_SPECIAL_COUNT }, (_, index) => ({
    id: LLAMA3_RANKS + index,
    text: LLAMA3_NAMED_SPECIALS[index] ?? `<|reserved_special_token_${index - LLAMA3_NAMED_SPECIALS.length + 2}|>`,
    special: true,
  }));
}
