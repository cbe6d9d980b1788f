import assert from 'node:assert/strict';
import { AddedTokenSplitter } from '../../lib/tokenizer/added-tokens';

describe('tokenizer/added-tokens', () => {
  const splitter = new AddedTokenSplitter([
    { id: 10, text: 'ab', special: true },
    { id: 11, text: 'abc', special: true },
    { id: 12, text: 'bcd', special: true },
    { id: 13, text: '<user>', special: false },
    { id: 14, text: '[x]', special: true, lstrip: true, rstrip: true },
  ]);

  it('matches leftmost-longest', () => {
    assert.deepEqual(splitter.split('xabcd', true), ['x', 11, 'd']);
    assert.deepEqual(splitter.split('abab', true), [10, 10]);
  });

  it('matches special tokens only with parseSpecial, the others always', () => {
    assert.deepEqual(splitter.split('ab<user>cd', false), ['ab', 13, 'cd']);
    assert.deepEqual(splitter.split('ab<user>cd', true), [10, 13, 'cd']);
  });

  it('lstrip / rstrip swallow the whitespace around a token; empty runs vanish', () => {
    assert.deepEqual(splitter.split('a  [x]  b', true), ['a', 14, 'b']);
    assert.deepEqual(splitter.split(' [x] ', true), [14]);
    assert.deepEqual(splitter.split('', true), []);
  });

  it('escapes regex syntax in token texts', () => {
    assert.deepEqual(new AddedTokenSplitter([{ id: 1, text: '.*', special: false }]).split('a.*b', false), ['a', 1, 'b']);
  });
});
