/** The public Tokenizer surface: argument checks, options, streaming. */
import assert from 'node:assert/strict';
import type { GgufValue } from '../../lib/io/types';
import { loadTokenizer } from '../../lib/tokenizer';
import { LLAMA2_MODEL, LLAMA3_TIKTOKEN, sharedTokenizer } from './helpers';

describe('tokenizer/tokenizer', () => {
  const llama2 = sharedTokenizer(LLAMA2_MODEL);

  it('rejects bad arguments with TypeError / RangeError', () => {
    assert.throws(() => llama2.encode(42 as unknown as string), TypeError);
    assert.throws(() => llama2.encode('x', { bos: 'yes' } as unknown as { bos: boolean }), /Expected a boolean for options.bos/);
    assert.throws(() => llama2.encode('x', { parse_special: true } as unknown as { bos: boolean }), /Unknown option "parse_special"/);
    assert.throws(() => llama2.encode('x', null as unknown as object), TypeError);
    assert.throws(() => llama2.encode('x', { parsespecial: true } as unknown as object), /Misspelled option "parsespecial" for encode should be "parseSpecial"/);
    assert.throws(() => llama2.createStreamDecoder({ skip: true } as unknown as object), /Unknown option "skip"/);
    assert.throws(() => llama2.decode('1 2' as unknown as number[]), TypeError);
    assert.throws(() => llama2.decode([1, 32000]), RangeError);
    assert.throws(() => llama2.decode([-1]), RangeError);
    assert.throws(() => llama2.decode([1.5]), RangeError);
    assert.throws(() => llama2.decode(['1'] as unknown as number[]), TypeError);
    assert.throws(() => llama2.tokenText(32000), RangeError);
    assert.throws(() => llama2.isSpecial(-1), RangeError);
    assert.throws(() => llama2.createStreamDecoder().push(99999), RangeError);
  });

  it('encodes the empty string to nothing (no dummy prefix), BOS/EOS only on request', () => {
    assert.deepEqual(llama2.encode(''), []);
    assert.deepEqual(llama2.encode('', { bos: true }), [1]);
    assert.deepEqual(llama2.encode('', { bos: true, eos: true }), [1, 2]);
    assert.equal(llama2.decode([]), '');
  });

  it('refuses bos/eos when the vocabulary has none', () => {
    const metadata = new Map<string, GgufValue>([
      ['tokenizer.ggml.model', 'gpt2'],
      ['tokenizer.ggml.tokens', ['a', 'b', 'ab']],
      ['tokenizer.ggml.merges', ['a b']],
    ]);
    const tiny = loadTokenizer({ kind: 'gguf', metadata });
    assert.equal(tiny.bosId, undefined);
    assert.deepEqual(tiny.eosIds, []);
    assert.throws(() => tiny.encode('ab', { bos: true }), /no BOS/);
    assert.throws(() => tiny.encode('ab', { eos: true }), /no EOS/);
    assert.deepEqual(tiny.encode('ab'), [2]);
  });

  it('eosIds cannot be changed from outside', () => {
    assert.throws(() => (llama2.eosIds as number[]).push(5));
  });

  it('stream decoders are independent and hold back only unfinished characters', () => {
    const llama3 = sharedTokenizer(LLAMA3_TIKTOKEN);
    const ids = llama3.encode('日本語 🇯🇵 ok');
    const a = llama3.createStreamDecoder();
    const b = llama3.createStreamDecoder();
    let textA = '';
    for (const id of ids) {
      const piece = a.push(id);
      assert.ok(!piece.includes('\uFFFD'));
      textA += piece;
    }
    assert.equal(textA + a.flush(), '日本語 🇯🇵 ok');
    assert.equal(b.flush(), '');
    // A character whose bytes end in the last id is complete without a flush.
    assert.equal(ids.map((id) => b.push(id)).join(''), '日本語 🇯🇵 ok');
  });

  it('decode keeps a leading U+FEFF (it is text, not a byte-order mark)', () => {
    const llama3 = sharedTokenizer(LLAMA3_TIKTOKEN);
    assert.equal(llama3.decode(llama3.encode('\uFEFFhi')), '\uFEFFhi');
  });
});
