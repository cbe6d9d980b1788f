import assert from 'node:assert/strict';
import { GGUF_PRE_TOKENIZERS } from '../../lib/tokenizer/gguf';
import { compileSplitPattern, LLAMA3_PATTERN, sequence, splitter } from '../../lib/tokenizer/pretokenize';
import { LLAMA3_SPLIT, VARIED_TEXTS } from './helpers';

describe('tokenizer/pretokenize', () => {
  it('spells out (?i:...) groups letter by letter, and only them', () => {
    const regex = compileSplitPattern("(?i:'re|ab)c");
    assert.deepEqual("'REc 'rEc aBc ABC".match(regex), ["'REc", "'rEc", 'aBc']);
    assert.deepEqual('Ac'.match(compileSplitPattern('(?i:\\x41)c')), ['Ac']); // escapes are left alone
    assert.deepEqual('ac'.match(compileSplitPattern('(?i:\\x41)c')), null);
  });

  it('gives \\s Unicode White_Space meaning (U+0085 yes, U+FEFF no), inside classes too', () => {
    assert.deepEqual('a\u0085b'.match(compileSplitPattern('\\s')), ['\u0085']);
    assert.equal('a\uFEFFb'.match(compileSplitPattern('\\s')), null);
    assert.deepEqual('\u0085\uFEFF'.match(compileSplitPattern('[^\\s]')), ['\uFEFF']);
    assert.deepEqual('\u0085x'.match(compileSplitPattern('\\S')), ['x']);
  });

  it('the Llama 3 pattern splits like the README regex on text without U+0085 / U+FEFF', () => {
    const split = splitter(compileSplitPattern(LLAMA3_PATTERN));
    for (const text of VARIED_TEXTS) assert.deepEqual(split(text), text.match(LLAMA3_SPLIT), JSON.stringify(text));
  });

  it('splitter keeps the gaps between matches; sequence chains splitters', () => {
    assert.deepEqual(splitter(/\d+/gu)('ab12cd3'), ['ab', '12', 'cd', '3']);
    assert.deepEqual(sequence([splitter(/ /gu), splitter(/\d/gu)])('a1 b'), ['a', '1', ' ', 'b']);
  });

  it('every GGUF pre-tokenizer pattern compiles', () => {
    for (const [name, { pattern }] of Object.entries(GGUF_PRE_TOKENIZERS)) assert.ok(compileSplitPattern(pattern), name);
  });
});
