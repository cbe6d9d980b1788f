/** Tokenizers from GGUF metadata: `llama` (SentencePiece) and `gpt2` (byte-level BPE), and broken metadata. */
import assert from 'node:assert/strict';
import { LowbitFormatError } from '../../lib/errors';
import { readGgufMetadata } from '../../lib/io/gguf';
import type { GgufValue } from '../../lib/io/types';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import { LLAMA3_TIKTOKEN, LLAMA_SPM_GGUF, VARIED_TEXTS, llama3Vocabulary, sharedTokenizer } from './helpers';

type Metadata = Map<string, GgufValue>;

/** Llama 3 as convert_hf_to_gguf.py stores it: GPT-2 spelled tokens, control types, "a b" merges, pre llama-bpe. */
function llama3Metadata(): Metadata {
  const { tokens, merges, specials } = llama3Vocabulary();
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', 'gpt2'],
    ['tokenizer.ggml.pre', 'llama-bpe'],
    ['tokenizer.ggml.tokens', [...tokens, ...specials]],
    ['tokenizer.ggml.token_type', [...tokens.map(() => 1), ...specials.map(() => 3)]],
    ['tokenizer.ggml.merges', merges.map(([left, right]) => `${left} ${right}`)],
    ['tokenizer.ggml.bos_token_id', 128000],
    ['tokenizer.ggml.eos_token_id', 128009],
  ]);
}

function expectBadMetadata(metadata: Metadata, key: string, message: RegExp): void {
  assert.throws(
    () => loadTokenizer({ kind: 'gguf', metadata }),
    (error: unknown) => error instanceof LowbitFormatError && error.key === key && message.test(error.message),
  );
}

describe('tokenizer/gguf', () => {
  let llama2: Metadata;
  before(() => {
    llama2 = new Map(readGgufMetadata(LLAMA_SPM_GGUF).metadata);
  });

  it('gpt2 (Llama 3 converted by llama.cpp) encodes like the tiktoken file', function () {
    this.timeout(60_000);
    const fromGguf = loadTokenizer({ kind: 'gguf', metadata: llama3Metadata() });
    const tiktoken = sharedTokenizer(LLAMA3_TIKTOKEN);
    assert.equal(fromGguf.kind, 'bpe');
    assert.equal(fromGguf.bosId, 128000);
    assert.deepEqual(fromGguf.eosIds, [128009, 128001, 128008]);
    for (const text of VARIED_TEXTS) {
      assert.deepEqual(fromGguf.encode(text), tiktoken.encode(text), JSON.stringify(text));
      assert.equal(fromGguf.decode(fromGguf.encode(text)), text);
    }
    const chat = '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>';
    assert.deepEqual(fromGguf.encode(chat, { parseSpecial: true }), tiktoken.encode(chat, { parseSpecial: true }));
    assert.equal(fromGguf.tokenText(128009), '<|eot_id|>');
  });

  it('llama: add_space_prefix = false drops the dummy prefix', () => {
    const withPrefix = loadTokenizer({ kind: 'gguf', metadata: llama2 });
    const without = loadTokenizer({ kind: 'gguf', metadata: new Map(llama2).set('tokenizer.ggml.add_space_prefix', false) });
    assert.deepEqual(withPrefix.encode('Hello'), [15043]);
    assert.notDeepEqual(without.encode('Hello'), [15043]);
    assert.equal(without.decode([1, ...without.encode('Hello world')]), '<s>Hello world');
  });

  it('llama: eot/eom ids join the EOS ids', () => {
    const t: Tokenizer = loadTokenizer({ kind: 'gguf', metadata: new Map(llama2).set('tokenizer.ggml.eot_token_id', 13) });
    assert.deepEqual(t.eosIds, [2, 13]);
  });

  describe('broken metadata is a LowbitFormatError naming the key', () => {
    it('missing or mistyped tokens', () => {
      const metadata = new Map(llama2);
      metadata.delete('tokenizer.ggml.tokens');
      expectBadMetadata(metadata, 'tokenizer.ggml.tokens', /missing/);
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.tokens', [1, 2, 3]), 'tokenizer.ggml.tokens', /wrong type/);
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.tokens', []), 'tokenizer.ggml.tokens', /empty/);
    });

    it('scores or types that do not match the tokens', () => {
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.scores', [0, 1]), 'tokenizer.ggml.scores', /2 entries for 32000/);
      const types = (llama2.get('tokenizer.ggml.token_type') as number[]).slice();
      types[5] = 9;
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.token_type', types), 'tokenizer.ggml.token_type', /token 5/);
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.token_type', 'x'), 'tokenizer.ggml.token_type', /wrong type/);
    });

    it('unsupported tokenizer models and pre-tokenizers', () => {
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.model', 'bert'), 'tokenizer.ggml.model', /'bert' is not supported/);
      const gpt2 = new Map<string, GgufValue>([
        ['tokenizer.ggml.model', 'gpt2'],
        ['tokenizer.ggml.tokens', ['a', 'b', 'ab']],
        ['tokenizer.ggml.merges', ['a b']],
        ['tokenizer.ggml.pre', 'something-new'],
      ]);
      expectBadMetadata(gpt2, 'tokenizer.ggml.pre', /'something-new' is not supported/);
      expectBadMetadata(new Map(gpt2).set('tokenizer.ggml.pre', 'gpt2').set('tokenizer.ggml.merges', ['a c']), 'tokenizer.ggml.merges', /merge 0/);
      const minimal = loadTokenizer({ kind: 'gguf', metadata: new Map(gpt2).set('tokenizer.ggml.pre', 'gpt2') });
      assert.deepEqual(minimal.encode('abba'), [2, 1, 0]);
      assert.deepEqual(minimal.encode('abca'), [2, 0]); // bytes without a token (no unk) are dropped, as Hugging Face does
    });

    it('ids outside the vocabulary are treated as absent', () => {
      const t = loadTokenizer({ kind: 'gguf', metadata: new Map(llama2).set('tokenizer.ggml.bos_token_id', 99999999) });
      assert.equal(t.bosId, 1); // found by its text instead
      expectBadMetadata(new Map(llama2).set('tokenizer.ggml.bos_token_id', 1.5), 'tokenizer.ggml.bos_token_id', /not a token id/);
    });
  });
});
