/**
 * Shared fixtures of the tokenizer tests: paths into ../shared/models, the llama.cpp test vectors,
 * and deliberately naive reference encoders written from the algorithms' published descriptions
 * (they share no code with lib/tokenizer).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import { modelPath } from '../helpers/models';

export const TOKENIZERS = modelPath('tokenizers');
export const LLAMA2_MODEL = path.join(TOKENIZERS, 'llama2-tokenizer.model');
export const LLAMA2_BIN = path.join(TOKENIZERS, 'llama2-tokenizer.bin');
export const LLAMA3_TIKTOKEN = path.join(TOKENIZERS, 'llama3-tokenizer.model');
export const LLAMA_SPM_GGUF = path.join(TOKENIZERS, 'ggml-vocab-llama-spm.gguf');

/** llama.cpp's tokenizer test vectors: `.inp` strings joined by a separator, `.out` ids one line each. */
export function readVocabVectors(gguf: string): { text: string; ids: number[] }[] {
  const texts = fs.readFileSync(`${gguf}.inp`, 'utf8').split('\n__ggml_vocab_test__\n');
  const lines = fs.readFileSync(`${gguf}.out`, 'utf8').split('\n');
  texts.pop(); // the file ends with a separator
  return texts.map((text, i) => ({ text, ids: lines[i].trim() === '' ? [] : lines[i].trim().split(' ').map(Number) }));
}

/** A fresh temporary directory, removed by the returned function. */
export function temporaryDirectory(): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-tokenizer-'));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Bytes as a "binary string", one char per byte. */
export function binary(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1');
}

// ---------------------------------------------------------------------------------------------
// Llama 3 reference: tiktoken's algorithm, the slow way

/** Llama 3's split regex from the README, with `(?i:...)` written out by hand. */
export const LLAMA3_SPLIT =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** The rank file read line by line: token bytes (binary string) -> rank. */
export function readRanks(file: string): Map<string, number> {
  const ranks = new Map<string, number>();
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const [base64, rank] = line.split(' ');
    ranks.set(binary(Buffer.from(base64, 'base64')), Number(rank));
  }
  return ranks;
}

/**
 * tiktoken's encoder in its plainest form: split by the regex; a word that is a token is that
 * token; otherwise rescan all adjacent pairs and merge the one whose concatenation has the lowest
 * rank (leftmost on ties) until none is a token. O(n²) per word.
 */
export function naiveTiktokenEncode(text: string, ranks: Map<string, number>): number[] {
  const ids: number[] = [];
  for (const word of text.match(LLAMA3_SPLIT) ?? []) {
    const bytes = binary(Buffer.from(word, 'utf8'));
    if (ranks.has(bytes)) {
      ids.push(ranks.get(bytes) as number);
      continue;
    }
    const parts = bytes.split('');
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rank = ranks.get(parts[i] + parts[i + 1]);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      parts.splice(best, 2, parts[best] + parts[best + 1]);
    }
    for (const part of parts) ids.push(ranks.get(part) as number);
  }
  return ids;
}

/** GPT-2's bytes_to_unicode, as published in its encoder.py. */
export function gpt2ByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Array<string>(256);
  for (const b of printable) chars[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (chars[b] === undefined) chars[b] = String.fromCodePoint(256 + n++);
  return chars;
}

// ---------------------------------------------------------------------------------------------
// llama2.c reference: run.c's encode, transcribed

/** A tokenizer.bin read as run.c reads it. */
export function readLlama2cVocab(file: string): { pieces: string[]; scores: number[] } {
  const bytes = fs.readFileSync(file);
  const pieces: string[] = [];
  const scores: number[] = [];
  for (let at = 4; at < bytes.length; ) {
    scores.push(bytes.readFloatLE(at));
    const length = bytes.readInt32LE(at + 4);
    pieces.push(bytes.subarray(at + 8, at + 8 + length).toString('utf8'));
    at += 8 + length;
  }
  return { pieces, scores };
}

/**
 * run.c's encode(): " " token first for non-empty text, each UTF-8 codepoint looked up (else its
 * bytes as ids byte + 3), then repeatedly merge the adjacent pair whose concatenation has the
 * highest score (first one on ties). O(n²).
 */
export function runcEncode(vocab: { pieces: string[]; scores: number[] }, text: string): number[] {
  const lookup = new Map<string, number>();
  vocab.pieces.forEach((piece, id) => lookup.has(piece) || lookup.set(piece, id));
  const tokens: number[] = [];
  if (text !== '') tokens.push(lookup.get(' ') as number);
  for (const char of text) {
    const id = lookup.get(char);
    if (id !== undefined) tokens.push(id);
    else for (const byte of Buffer.from(char, 'utf8')) tokens.push(byte + 3);
  }
  for (;;) {
    let best = -1;
    let bestScore = -1e10;
    let bestId = -1;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const id = lookup.get(vocab.pieces[tokens[i]] + vocab.pieces[tokens[i + 1]]);
      if (id !== undefined && vocab.scores[id] > bestScore) {
        bestScore = vocab.scores[id];
        bestId = id;
        best = i;
      }
    }
    if (best < 0) break;
    tokens.splice(best, 2, bestId);
  }
  return tokens;
}

/** Texts that exercise pre-tokenizers and merges: ASCII, digits, punctuation runs, newlines, emoji, CJK, accents, contractions. */
export const VARIED_TEXTS = [
  'Hello world',
  'Once upon a time, there was a little girl named Lily.',
  "I'm sure you'll see, DON'T you? We've, they'd, she's, it'S, I'M, YOU'LL, 'twas",
  '3.14159 12345678901234567890 1,000,000 2024-06-01 0x1F 42nd',
  '!!!!!! ...... ------======= ?!?! (((nested))) [a] {b} <c> "quotes" `code`',
  'line one\nline two\n\n\nline five\r\nwindows\rold mac\n',
  '\t\ttabs\t and   spaces   \n  \n',
  'emoji: 😀😃😄 👨‍👩‍👧‍👦 🇯🇵 ❤️ ✅',
  '日本語のテキスト、中文文本。한국어 텍스트',
  'Ångström naïve café résumé Zürich façade Ελληνικά Русский текст',
  'mixed: abc123def 東京2024 x²+y²=z² √2 ∑∞ ½ ¾',
  '   leading and trailing spaces   ',
  'URL https://example.com/path?q=1&r=2#frag and e-mail a.b@c.de',
  'function f(x) {\n  return x * 2; // comment\n}\n',
  'ied 4 ½ months',
  "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
];

// ---------------------------------------------------------------------------------------------
// Llama 3 in other containers, derived from the tiktoken ranks

export interface Llama3Vocabulary {
  /** Token bytes (binary string) -> rank. */
  ranks: Map<string, number>;
  /** Each rank's token in GPT-2's byte spelling, as tokenizer.json and GGUF store it. */
  tokens: string[];
  /** Merges as Hugging Face's tiktoken converter derives them: every split of a token into two tokens, by the token's rank. */
  merges: [string, string][];
  /** Meta's special tokens 128000..128255. */
  specials: string[];
}

let llama3: Llama3Vocabulary | undefined;

export function llama3Vocabulary(): Llama3Vocabulary {
  if (llama3 !== undefined) return llama3;
  const ranks = readRanks(LLAMA3_TIKTOKEN);
  const byteToChar = gpt2ByteToChar();
  const byRank = [...ranks.keys()].sort((a, b) => (ranks.get(a) as number) - (ranks.get(b) as number));
  const spelled = new Map(byRank.map((bytes) => [bytes, Array.from(bytes, (c) => byteToChar[c.charCodeAt(0)]).join('')]));
  const spell = (bytes: string): string => spelled.get(bytes) as string;
  const merges: [string, string][] = [];
  for (const token of byRank) {
    const splits: [string, string][] = [];
    for (let i = 1; i < token.length; i++) {
      const left = token.slice(0, i);
      const right = token.slice(i);
      if (ranks.has(left) && ranks.has(right)) splits.push([left, right]);
    }
    if (splits.length > 1) splits.sort((a, b) => (ranks.get(a[0]) as number) - (ranks.get(b[0]) as number) || (ranks.get(a[1]) as number) - (ranks.get(b[1]) as number));
    for (const [left, right] of splits) merges.push([spell(left), spell(right)]);
  }
  const named = ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>', '<|reserved_special_token_1|>',
    '<|finetune_right_pad_id|>', '<|step_id|>', '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>',
    '<|python_tag|>', '<|image|>'];
  const specials = Array.from({ length: 256 }, (_, i) => named[i] ?? `<|reserved_special_token_${i - 10}|>`);
  llama3 = { ranks, tokens: byRank.map(spell), merges, specials };
  return llama3;
}

// ---------------------------------------------------------------------------------------------
// Tokenizers many tests read, loaded once per run (tokenizers are immutable)

const loaded = new Map<string, Tokenizer>();

/** The tokenizer of a file, loaded on first use. */
export function sharedTokenizer(file: string): Tokenizer {
  let tokenizer = loaded.get(file);
  if (tokenizer === undefined) loaded.set(file, (tokenizer = loadTokenizer({ kind: 'file', path: file })));
  return tokenizer;
}
