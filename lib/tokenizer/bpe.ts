/**
 * The one BPE merge engine: SentencePiece scores, tiktoken ranks and Hugging Face merge lists are
 * all a "pair rank" fed to `mergePairs`. It is the textbook loop "merge the best adjacent pair
 * until none is left" run with a heap and a linked list, so a long word costs O(n log n).
 */

/**
 * How eagerly two adjacent symbols merge: lower ranks merge first, ties go to the leftmost pair;
 * `undefined` means the pair never merges.
 */
export type PairRank = (left: string, right: string) => number | undefined;

/** A pair found mergeable, with the generations its two symbols had when it was found. */
interface Candidate {
  readonly rank: number;
  readonly left: number;
  readonly right: number;
  readonly leftGeneration: number;
  readonly rightGeneration: number;
}

/**
 * Merges `symbols` pairwise by `rankOf` until no adjacent pair merges; returns the merged symbols.
 * Equivalent to rescanning the whole sequence for its best pair before each merge.
 */
export function mergePairs(symbols: readonly string[], rankOf: PairRank): string[] {
  const count = symbols.length;
  if (count < 2) return symbols.slice();
  const text = symbols.slice();
  const next = new Int32Array(count);
  const prev = new Int32Array(count);
  // Bumped whenever a symbol's text changes, so queued pairs that saw the old text are recognised as stale; -1 = merged away.
  const generation = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    next[i] = i + 1 < count ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const queue = new MinHeap<Candidate>((a, b) => a.rank - b.rank || a.left - b.left);
  const consider = (left: number, right: number): void => {
    if (left < 0 || right < 0) return;
    const rank = rankOf(text[left], text[right]);
    if (rank === undefined) return;
    queue.push({ rank, left, right, leftGeneration: generation[left], rightGeneration: generation[right] });
  };
  for (let i = 0; i + 1 < count; i++) consider(i, i + 1);

  for (let best = queue.pop(); best !== undefined; best = queue.pop()) {
    const { left, right } = best;
    const stale =
      generation[left] !== best.leftGeneration || generation[right] !== best.rightGeneration || next[left] !== right;
    if (stale) continue;
    text[left] += text[right];
    generation[left]++;
    generation[right] = -1;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    consider(prev[left], left);
    consider(left, next[left]);
  }

  // Symbol 0 is only ever a left side, so it survives and starts the list.
  const merged: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) merged.push(text[i]);
  return merged;
}

/** A binary min-heap ordered by `compare`. */
export class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly compare: (a: T, b: T) => number) {}

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    const items = this.items;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(items[parent], item) <= 0) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = item;
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= items.length) break;
      if (child + 1 < items.length && this.compare(items[child + 1], items[child]) < 0) child++;
      if (this.compare(last, items[child]) <= 0) break;
      items[i] = items[child];
      i = child;
    }
    items[i] = last;
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Merge lists (Hugging Face tokenizer.json, GGUF tokenizer.ggml.merges)

/** Merges as `[leftId, rightId]`, highest priority first. */
export type MergeList = readonly (readonly [number, number])[];

/**
 * Merge order of a merge list: a pair's rank is its position in the list. `symbols` spells each id
 * as the engine sees it and `idOf` maps the symbols the engine may use and produce back to ids
 * (the first id, should two be spelled alike). Merges producing anything else (a control token,
 * a non-token) are left out.
 */
export function mergeListRank(merges: MergeList, symbols: readonly string[], idOf: ReadonlyMap<string, number>): PairRank {
  const keyOf = (leftId: number, rightId: number): number => leftId * symbols.length + rightId;
  const rankOfPair = new Map<number, number>();
  merges.forEach(([left, right], rank) => {
    const key = keyOf(left, right);
    if (!rankOfPair.has(key) && idOf.has(symbols[left] + symbols[right])) rankOfPair.set(key, rank);
  });
  return (left, right) => {
    const leftId = idOf.get(left);
    const rightId = idOf.get(right);
    return leftId === undefined || rightId === undefined ? undefined : rankOfPair.get(keyOf(leftId, rightId));
  };
}

/**
 * Resolves merges spelled `"left right"` or `["left", "right"]` against the vocabulary; returns an
 * error message for the first merge that is not a pair of tokens.
 */
export function resolveMerges(merges: readonly unknown[], idOf: ReadonlyMap<string, number>): MergeList | string {
  const resolved: [number, number][] = [];
  for (let rank = 0; rank < merges.length; rank++) {
    const pair = splitMerge(merges[rank]);
    const left = pair && idOf.get(pair[0]);
    const right = pair && idOf.get(pair[1]);
    if (left === undefined || right === undefined) return `merge ${rank} (${JSON.stringify(merges[rank])}) is not a pair of tokens`;
    resolved.push([left, right]);
  }
  return resolved;
}

function splitMerge(merge: unknown): readonly [string, string] | undefined {
  if (Array.isArray(merge)) {
    return merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string' ? [merge[0], merge[1]] : undefined;
  }
  if (typeof merge !== 'string') return undefined;
  // The first token cannot be empty, so a space at index 0 belongs to it.
  const space = merge.indexOf(' ', 1);
  return space < 0 ? undefined : [merge.slice(0, space), merge.slice(space + 1)];
}
