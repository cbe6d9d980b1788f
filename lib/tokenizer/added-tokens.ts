/**
 * Splits added tokens (control tokens such as `<|eot_id|>`, user-defined pieces) out of raw text
 * before the model encodes the runs between them. Matching is leftmost-longest, as Hugging Face's
 * added vocabulary and llama.cpp's special-token partition do.
 */
import type { AddedToken } from './model';
import { escapeRegExp } from './pretokenize';

/** A run of plain text, or the id of an added token found in the text. */
export type Fragment = string | number;

/** Cuts text at added tokens: control tokens only when asked (`parseSpecial`), the others always. */
export class AddedTokenSplitter {
  private readonly byText = new Map<string, AddedToken>();
  /** Matches every added token (parseSpecial) / only the always-matched ones; undefined when there are none. */
  private readonly allPattern: RegExp | undefined;
  private readonly alwaysPattern: RegExp | undefined;

  constructor(tokens: readonly AddedToken[]) {
    for (const token of tokens) {
      if (token.text !== '' && !this.byText.has(token.text)) this.byText.set(token.text, token);
    }
    const all = [...this.byText.values()];
    this.allPattern = alternation(all);
    this.alwaysPattern = alternation(all.filter((token) => !token.special));
  }

  /** `text` cut into plain runs (never empty) and added-token ids, in order. */
  split(text: string, parseSpecial: boolean): Fragment[] {
    const pattern = parseSpecial ? this.allPattern : this.alwaysPattern;
    if (pattern === undefined) return text === '' ? [] : [text];
    const fragments: Fragment[] = [];
    let runStart = 0;
    let stripNextRun = false;
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const token = this.byText.get(match[0]) as AddedToken;
      let run = text.slice(runStart, match.index);
      if (stripNextRun) run = run.trimStart();
      if (token.lstrip) run = run.trimEnd();
      if (run !== '') fragments.push(run);
      fragments.push(token.id);
      runStart = pattern.lastIndex;
      stripNextRun = token.rstrip === true;
    }
    let tail = text.slice(runStart);
    if (stripNextRun) tail = tail.trimStart();
    if (tail !== '') fragments.push(tail);
    return fragments;
  }
}

/** One global regex matching any of `tokens`, longest first so the alternation is leftmost-longest. */
function alternation(tokens: readonly AddedToken[]): RegExp | undefined {
  if (tokens.length === 0) return undefined;
  const texts = tokens.map((token) => token.text).sort((a, b) => b.length - a.length);
  return new RegExp(texts.map(escapeRegExp).join('|'), 'g');
}
