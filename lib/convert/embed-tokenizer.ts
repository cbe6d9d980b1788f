/**
 * The tokenizer a converted file carries: the bytes of the source's tokenizer file and their kind,
 * the BOS id and every id that ends generation, and the chat template. GGUF models keep their
 * vocabulary in metadata, so it is written out as a GGUF file holding only the `tokenizer.*` keys.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGgufMetadata } from '../io/gguf';
import { writeGguf } from '../io/gguf-writer';
import type { LowbitTokenizer } from '../io/lowbit-format';
import type { EmbeddedTokenizerKind, GgufValue, ModelSource, TokenizerSource } from '../io/types';
import { loadTokenizer, type Tokenizer } from '../tokenizer';
import { readTokenizerBytes, readTokenizerContent } from '../tokenizer/load';
import { invalidParameter } from '../validate';

/** A GGUF file holding just the tokenizer keys of `metadata`. */
function tokenizerOnlyGguf(metadata: ReadonlyMap<string, GgufValue>): Uint8Array {
  const entries = [...metadata].filter(([key]) => key.startsWith('tokenizer.'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-tokenizer-'));
  try {
    const file = path.join(dir, 'tokenizer.gguf');
    writeGguf(file, entries, []);
    return new Uint8Array(fs.readFileSync(file));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The content and kind of a tokenizer file, recognised as the loader recognises it. */
function tokenizerFile(file: string): { format: EmbeddedTokenizerKind; bytes: Uint8Array } {
  const bytes = readTokenizerBytes(file);
  if (bytes === 'GGUF') return { format: 'gguf', bytes: tokenizerOnlyGguf(readGgufMetadata(file).metadata) };
  return { format: readTokenizerContent(file, bytes).kind, bytes };
}

function tokenizerBytes(source: TokenizerSource): { format: EmbeddedTokenizerKind; bytes: Uint8Array } {
  switch (source.kind) {
    case 'embedded':
      return { format: source.format, bytes: source.bytes };
    case 'file':
      return tokenizerFile(source.path);
    case 'gguf':
      return { format: 'gguf', bytes: tokenizerOnlyGguf(source.metadata) };
    case 'hf-dir': {
      // As lib/tokenizer reads a folder: tokenizer.json first.
      const file = ['tokenizer.json', 'tokenizer.model'].map((name) => path.join(source.dir, name)).find((f) => fs.existsSync(f))!;
      return tokenizerFile(file);
    }
  }
}

/**
 * Ids that end generation, as loadModel decides them for the source: the tokenizer's, the model
 * config's, and BOS for llama2.c checkpoints (their story separator).
 */
function stopIds(source: ModelSource, tokenizer: Tokenizer): number[] {
  const ids = new Set([...tokenizer.eosIds, ...(source.eosIds ?? [])]);
  if (source.container === 'llama2c' && tokenizer.bosId !== undefined) ids.add(tokenizer.bosId);
  return [...ids];
}

/**
 * The tokenizer of `source` to embed in a lowbit file. Throws when the source has none (pass a
 * tokenizer file to openModel then).
 */
export function tokenizerToEmbed(source: ModelSource): LowbitTokenizer {
  if (source.tokenizer === undefined) {
    throw invalidParameter('tokenizer', `a tokenizer file: ${source.path} has none inside or next to it`, undefined);
  }
  const tokenizer = loadTokenizer(source.tokenizer, { bosId: source.bosId, eosIds: source.eosIds });
  return {
    ...tokenizerBytes(source.tokenizer),
    ...(tokenizer.bosId !== undefined && { bosId: tokenizer.bosId }),
    eosIds: stopIds(source, tokenizer),
    ...(source.chatTemplate !== undefined && { chatTemplate: source.chatTemplate }),
  };
}
