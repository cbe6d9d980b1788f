/**
 * Pre-tokenizer regexes of byte-level BPE vocabularies (the text is cut into words, each word is
 * BPE-encoded on its own), and the translation of their Oniguruma/PCRE spelling into JS RegExp.
 */

/** GPT-2's split regex (also llama.cpp's default for byte-level BPE). */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** Llama 3's split regex (tiktoken's cl100k family). */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Qwen 2's: Llama 3's with single digits. */
export const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Cuts text into the pieces that BPE encodes one by one. */
export type PreTokenizer = (text: string) => string[];

/**
 * Unicode White_Space, which `\s` means in Rust's regex (tiktoken) and Oniguruma (Hugging Face);
 * JS's `\s` differs (it has U+FEFF and lacks U+0085).
 */
const WHITE_SPACE = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/**
 * A global JS RegExp for a tokenizer's split pattern: `(?i:...)` groups are spelled out letter by
 * letter (JS has no scoped flags) and `\s` / `\S` get their Unicode meaning. Throws SyntaxError for
 * patterns JS cannot express.
 */
export function compileSplitPattern(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  const caseInsensitive: boolean[] = [false];
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    const ignoreCase = caseInsensitive[caseInsensitive.length - 1];
    if (char === '\\') {
      const escape = escapeAt(pattern, i);
      out += translateEscape(escape, inClass);
      i += escape.length - 1;
    } else if (inClass) {
      if (char === ']') inClass = false;
      out += char;
    } else if (char === '[') {
      inClass = true;
      out += char;
      if (pattern[i + 1] === ']' || pattern.startsWith('^]', i + 1)) throw new SyntaxError(`unsupported class in ${pattern}`);
    } else if (pattern.startsWith('(?i:', i)) {
      caseInsensitive.push(true);
      out += '(?:';
      i += 3;
    } else if (char === '(') {
      caseInsensitive.push(ignoreCase);
      out += char;
    } else if (char === ')') {
      if (caseInsensitive.length > 1) caseInsensitive.pop();
      out += char;
    } else if (ignoreCase && char.toLowerCase() !== char.toUpperCase()) {
      out += `[${char.toLowerCase()}${char.toUpperCase()}]`;
    } else {
      out += char;
    }
  }
  return new RegExp(out, 'gu');
}

/** The whole escape sequence starting at the backslash at `at` (`\s`, `\p{L}`, `\x41`, `\u{1F600}`). */
function escapeAt(pattern: string, at: number): string {
  const letter = pattern[at + 1] ?? '';
  const braced = /^\\[pPux]\{[^}]*\}/.exec(pattern.slice(at));
  if (braced !== null) return braced[0];
  if (letter === 'x') return pattern.slice(at, at + 4);
  if (letter === 'u') return pattern.slice(at, at + 6);
  return pattern.slice(at, at + 2);
}

function translateEscape(escape: string, inClass: boolean): string {
  if (escape === '\\s') return inClass ? WHITE_SPACE : `[${WHITE_SPACE}]`;
  if (escape === '\\S' && !inClass) return `[^${WHITE_SPACE}]`;
  return escape;
}

/** `text` as a regex matching itself (valid with and without the `u` flag). */
export function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/** A pre-tokenizer that keeps every regex match and every gap between matches as a piece (HF "Isolated"). */
export function splitter(pattern: RegExp): PreTokenizer {
  return (text) => {
    const pieces: string[] = [];
    let end = 0;
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      if (match[0] === '') {
        pattern.lastIndex++;
        continue;
      }
      if (match.index > end) pieces.push(text.slice(end, match.index));
      pieces.push(match[0]);
      end = pattern.lastIndex;
    }
    if (end < text.length) pieces.push(text.slice(end));
    return pieces;
  };
}

/** Runs `stages` one after another, each on every piece the previous one produced. */
export function sequence(stages: readonly PreTokenizer[]): PreTokenizer {
  return (text) => stages.reduce<string[]>((pieces, stage) => pieces.flatMap(stage), [text]);
}
