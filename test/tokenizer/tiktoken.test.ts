/** Llama 3's tiktoken tokenizer.model against tiktoken's algorithm written the slow way. */
import assert from 'node:assert/strict';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import { LLAMA3_TIKTOKEN, LLAMA_SPM_GGUF, VARIED_TEXTS, naiveTiktokenEncode, readRanks, readVocabVectors } from './helpers';

describe('tokenizer/tiktoken (Llama 3)', () => {
  const texts = [...VARIED_TEXTS, ...readVocabVectors(LLAMA_SPM_GGUF).map((vector) => vector.text)];
  let llama3: Tokenizer;
  let ranks: Map<string, number>;

  before(() => {
    llama3 = loadTokenizer({ kind: 'file', path: LLAMA3_TIKTOKEN });
    ranks = readRanks(LLAMA3_TIKTOKEN);
  });

  it('loads as a 128256-id byte-level BPE', () => {
    assert.equal(llama3.kind, 'bpe');
    assert.equal(llama3.vocabSize, 128256);
  });

  it("names Meta's special tokens", () => {
    assert.equal(llama3.bosId, 128000);
    assert.deepEqual(llama3.eosIds, [128001, 128008, 128009]);
    const named: [number, string][] = [
      [128000, '<|begin_of_text|>'],
      [128001, '<|end_of_text|>'],
      [128002, '<|reserved_special_token_0|>'],
      [128006, '<|start_header_id|>'],
      [128007, '<|end_header_id|>'],
      [128009, '<|eot_id|>'],
      [128255, '<|reserved_special_token_245|>'],
    ];
    for (const [id, text] of named) {
      assert.equal(llama3.tokenText(id), text);
      assert.ok(llama3.isSpecial(id));
    }
    assert.ok(!llama3.isSpecial(127999));
  });

  it('encodes like the naive rank-BPE reference', () => {
    for (const text of texts) assert.deepEqual(llama3.encode(text), naiveTiktokenEncode(text, ranks), JSON.stringify(text));
  });

  it('encodes long and repetitive text like the reference', () => {
    const text = `${'a'.repeat(1000)} ${'ab'.repeat(500)} ${'😀'.repeat(200)} ${'1'.repeat(100)}\n${VARIED_TEXTS.join(' ')}`;
    assert.deepEqual(llama3.encode(text), naiveTiktokenEncode(text, ranks));
  });

  it('gives the ids everyone knows for "Hello world"', () => {
    assert.deepEqual(llama3.encode('Hello world', { bos: true }), [128000, 9906, 1917]);
    assert.equal(llama3.tokenText(1917), 'Ġworld');
  });

  it('round-trips: decode(encode(x)) === x, also streamed one id at a time', () => {
    for (const text of texts) {
      const ids = llama3.encode(text);
      assert.equal(llama3.decode(ids), text);
      const stream = llama3.createStreamDecoder();
      const pieces = ids.map((id) => stream.push(id));
      assert.equal(pieces.join('') + stream.flush(), text);
      assert.ok(pieces.every((piece) => !piece.includes('\uFFFD')), 'no character is split');
    }
  });

  it('parses special tokens only with parseSpecial', () => {
    const text = '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>';
    const plain = llama3.encode(text);
    assert.ok(plain.every((id) => id < 128000));
    assert.equal(llama3.decode(plain), text);
    assert.deepEqual(llama3.encode(text, { parseSpecial: true }), [128006, ...llama3.encode('user'), 128007, ...llama3.encode('\n\nHi'), 128009]);
    assert.equal(llama3.decode(llama3.encode(text, { parseSpecial: true })), text);
    assert.equal(llama3.decode(llama3.encode(text, { parseSpecial: true }), { skipSpecial: true }), 'user\n\nHi');
  });

  it('adds BOS and EOS on request', () => {
    assert.deepEqual(llama3.encode('', { bos: true, eos: true }), [128000, 128001]);
  });

  it('round-trips 100 KB of text (speed: bench/tokenizer.ts)', () => {
    const text = texts.join('\n').repeat(Math.ceil(100_000 / texts.join('\n').length)).slice(0, 100_000);
    const ids = llama3.encode(text);
    assert.equal(llama3.decode(ids), text);
  });
});
