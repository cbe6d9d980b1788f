import assert from 'node:assert/strict';
import { MinHeap, mergeListRank, mergePairs, resolveMerges } from '../../lib/tokenizer/bpe';

/** The definition: rescan every pair before each merge, lowest rank first, leftmost on ties. */
function naiveMerge(symbols: string[], rankOf: (left: string, right: string) => number | undefined): string[] {
  const parts = symbols.slice();
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = rankOf(parts[i], parts[i + 1]);
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = i;
      }
    }
    if (best < 0) return parts;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
}

/** Deterministic pseudo-random numbers in [0, 1). */
function random(seed: number): () => number {
  let state = seed;
  return () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

describe('tokenizer/bpe', () => {
  it('mergePairs equals the rescanning definition on random vocabularies, ties included', () => {
    const next = random(7);
    for (let trial = 0; trial < 300; trial++) {
      const alphabet = 'abcd'.slice(0, 2 + Math.floor(next() * 3));
      // Random ranks over all strings up to length 4, many of them equal.
      const ranks = new Map<string, number>();
      const grow = (prefix: string): void => {
        if (prefix.length > 1 && next() < 0.6) ranks.set(prefix, Math.floor(next() * 6));
        if (prefix.length < 4) for (const c of alphabet) grow(prefix + c);
      };
      grow('');
      const rankOf = (left: string, right: string): number | undefined => ranks.get(left + right);
      const word = Array.from({ length: 1 + Math.floor(next() * 24) }, () => alphabet[Math.floor(next() * alphabet.length)]);
      assert.deepEqual(mergePairs(word, rankOf), naiveMerge(word, rankOf), `trial ${trial}: ${word.join('')}`);
    }
  });

  it('mergePairs leaves symbols alone when nothing merges, and handles 0 and 1 symbols', () => {
    assert.deepEqual(mergePairs([], () => 0), []);
    assert.deepEqual(mergePairs(['x'], () => 0), ['x']);
    assert.deepEqual(mergePairs(['a', 'b', 'c'], () => undefined), ['a', 'b', 'c']);
  });

  it('mergePairs merges a 100,000-symbol word level by level (speed: bench/tokenizer.ts)', () => {
    const word = 'ab'.repeat(50_000).split('');
    const ranks = new Map([['ab', 0], ['abab', 1], ['abababab', 2]]);
    const merged = mergePairs(word, (l, r) => ranks.get(l + r));
    assert.equal(merged.length, 12_500);
    assert.ok(merged.every((symbol) => symbol === 'abababab'));
  });

  it('MinHeap pops in order', () => {
    const heap = new MinHeap<number>((a, b) => a - b);
    const next = random(3);
    const values = Array.from({ length: 500 }, () => Math.floor(next() * 100));
    for (const value of values) heap.push(value);
    const popped: number[] = [];
    for (let value = heap.pop(); value !== undefined; value = heap.pop()) popped.push(value);
    assert.deepEqual(popped, values.sort((a, b) => a - b));
  });

  it('merge lists: both spellings resolve, the position is the rank, bad merges are reported', () => {
    const idOf = new Map([['a', 0], ['b', 1], ['ab', 2], ['abb', 3]]);
    const merges = resolveMerges(['a b', ['ab', 'b']], idOf);
    assert.deepEqual(merges, [[0, 1], [2, 1]]);
    const rankOf = mergeListRank(merges as [number, number][], ['a', 'b', 'ab', 'abb'], idOf);
    assert.equal(rankOf('a', 'b'), 0);
    assert.equal(rankOf('ab', 'b'), 1);
    assert.equal(rankOf('b', 'a'), undefined);
    // A merge whose result the engine may not produce (say, a control token) is left out.
    const withoutAbb = new Map([...idOf].filter(([symbol]) => symbol !== 'abb'));
    assert.equal(mergeListRank(merges as [number, number][], ['a', 'b', 'ab', 'abb'], withoutAbb)('ab', 'b'), undefined);
    assert.match(resolveMerges(['a c'], idOf) as string, /merge 0/);
    assert.match(resolveMerges(['b'], idOf) as string, /not a pair of tokens/);
    assert.match(resolveMerges(['ab'], idOf) as string, /merge 0/);
    assert.match(resolveMerges([42], idOf) as string, /merge 0/);
  });
});
