/**
 * SentencePiece-style BPE over every file that carries it: the Llama 2 vocabulary as .model,
 * llama2.c .bin and GGUF metadata against llama.cpp's test vectors; the tiny test vocabularies;
 * llama2.c's run.c transcribed as the reference for .bin files.
 */
import assert from 'node:assert/strict';
import { readGgufMetadata } from '../../lib/io/gguf';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import {
  LLAMA2_BIN,
  LLAMA2_MODEL,
  LLAMA_SPM_GGUF,
  VARIED_TEXTS,
  readLlama2cVocab,
  readVocabVectors,
  runcEncode, sharedTokenizer } from './helpers';
import { modelPath } from '../helpers/models';

const vectors = readVocabVectors(LLAMA_SPM_GGUF);

/** The Llama 2 vocabulary from each file kind that holds it. */
const llama2Sources: [string, () => Tokenizer][] = [
  ['GGUF metadata', () => loadTokenizer({ kind: 'gguf', metadata: readGgufMetadata(LLAMA_SPM_GGUF).metadata })],
  ['SentencePiece .model', () => sharedTokenizer(LLAMA2_MODEL)],
  ['llama2.c .bin', () => loadTokenizer({ kind: 'file', path: LLAMA2_BIN })],
];

/** Pushes `ids` one by one; returns what each push produced. */
function streamPieces(tokenizer: Tokenizer, ids: readonly number[]): string[] {
  const stream = tokenizer.createStreamDecoder();
  return [...ids.map((id) => stream.push(id)), stream.flush()];
}

describe('tokenizer/sentencepiece', () => {
  it(`the llama.cpp vectors are ${vectors.length} strings`, () => {
    assert.equal(vectors.length, 46);
  });

  for (const [name, load] of llama2Sources) {
    describe(`Llama 2 vocabulary from ${name}`, () => {
      const tokenizer = load();

      it('is a 32000-piece SentencePiece vocabulary with BOS 1 and EOS 2', () => {
        assert.equal(tokenizer.kind, 'sentencepiece');
        assert.equal(tokenizer.vocabSize, 32000);
        assert.equal(tokenizer.bosId, 1);
        assert.deepEqual(tokenizer.eosIds, [2]);
        assert.equal(tokenizer.tokenText(1), '<s>');
        assert.equal(tokenizer.tokenText(13), '<0x0A>');
        assert.ok(tokenizer.isSpecial(1) && tokenizer.isSpecial(2) && !tokenizer.isSpecial(13) && !tokenizer.isSpecial(15043));
      });

      it('encodes every llama.cpp test vector exactly', () => {
        for (const { text, ids } of vectors) assert.deepEqual(tokenizer.encode(text), ids, JSON.stringify(text));
      });

      it('decodes every vector back after BOS (the dummy-prefix space is dropped)', () => {
        for (const { text, ids } of vectors) assert.equal(tokenizer.decode([1, ...ids], { skipSpecial: true }), text);
      });

      it('round-trips varied text, batch and streamed', () => {
        for (const text of VARIED_TEXTS) {
          const ids = tokenizer.encode(text, { bos: true });
          assert.equal(tokenizer.decode(ids, { skipSpecial: true }), text);
          assert.equal(streamPieces(tokenizer, ids).join(''), tokenizer.decode(ids));
        }
      });
    });
  }

  describe('decoding rules', () => {
    const llama2 = sharedTokenizer(LLAMA2_MODEL);

    it('keeps the leading space unless the piece follows BOS', () => {
      assert.deepEqual(llama2.encode('Hello'), [15043]); // ▁Hello
      assert.equal(llama2.decode([15043]), ' Hello');
      assert.equal(llama2.decode([1, 15043]), '<s>Hello');
      assert.equal(llama2.decode([1, 15043], { skipSpecial: true }), 'Hello');
      assert.equal(llama2.decode([15043, 1, 15043, 2]), ' Hello<s>Hello</s>');
      assert.deepEqual(streamPieces(llama2, [1, 15043, 15043]), ['<s>', 'Hello', ' Hello', '']);
      const quiet = llama2.createStreamDecoder({ skipSpecial: true });
      assert.deepEqual([1, 15043, 2].map((id) => quiet.push(id)), ['', 'Hello', '']);
    });

    it('never splits a UTF-8 character across byte-fallback pieces when streaming', () => {
      const ids = llama2.encode('😀!');
      assert.deepEqual(ids, [29871, 243, 162, 155, 131, 29991]); // ▁ <0xF0> <0x9F> <0x98> <0x80> !
      assert.deepEqual(streamPieces(llama2, ids), [' ', '', '', '', '😀', '!', '']);
    });

    it('flushes an unfinished character as U+FFFD', () => {
      assert.deepEqual(streamPieces(llama2, [243, 162]), ['', '', '\uFFFD']);
      assert.equal(llama2.decode([243, 162, 29991]), '\uFFFD!');
    });
  });

  it('round-trips 100 KB of text with the 32k Llama 2 vocabulary (speed: bench/tokenizer.ts)', () => {
    const llama2 = sharedTokenizer(LLAMA2_MODEL);
    const sample = [...VARIED_TEXTS, ...vectors.map((vector) => vector.text)].join('\n');
    const text = sample.repeat(Math.ceil(100_000 / sample.length)).slice(0, 100_000);
    for (const input of [text, 'a'.repeat(100_000)]) {
      const ids = llama2.encode(input, { bos: true });
      assert.equal(llama2.decode(ids, { skipSpecial: true }), input);
    }
  });

  describe('special tokens', () => {
    const llama2 = sharedTokenizer(LLAMA2_MODEL);

    it('are plain text unless parseSpecial', () => {
      const plain = llama2.encode('<s>Hi</s>');
      assert.ok(!plain.includes(1) && !plain.includes(2));
      assert.equal(llama2.decode([1, ...plain], { skipSpecial: true }), '<s>Hi</s>');
      // llama.cpp adds the dummy prefix again after each special token.
      assert.deepEqual(llama2.encode('<s>Hello</s>', { parseSpecial: true }), [1, 15043, 2]);
      assert.deepEqual(llama2.encode('Hello', { bos: true, eos: true }), [1, 15043, 2]);
    });
  });

  describe('llama2.c .bin against run.c', () => {
    it('agrees with run.c on the Llama 2 vocabulary for every vector and strings that look like special pieces', () => {
      const vocab = readLlama2cVocab(LLAMA2_BIN);
      const tokenizer = loadTokenizer({ kind: 'file', path: LLAMA2_BIN });
      const tricky = ['<0x0A>', 'a<0x0A>b', '<s>', '</s>', '<unk>', '\n<s>\n', 'x <0xE2> y', '▁hello'];
      for (const text of [...vectors.map((v) => v.text), ...VARIED_TEXTS, ...tricky]) {
        assert.deepEqual(tokenizer.encode(text), runcEncode(vocab, text), JSON.stringify(text));
      }
    });

    it('known difference: without byte pieces run.c emits byte + 3 ids (out of range), lowbit emits one <unk> per unknown run', () => {
      const file = modelPath('babyllama-tok105/tok105.bin');
      const tokenizer = loadTokenizer({ kind: 'file', path: file });
      const runc = runcEncode(readLlama2cVocab(file), 'a ü b');
      assert.ok(runc.some((id) => id >= tokenizer.vocabSize), 'run.c indexes past the vocabulary');
      const ids = tokenizer.encode('a üü b');
      assert.deepEqual(ids.filter((id) => id === 0), [0]);
      assert.equal(tokenizer.decode([1, ...ids], { skipSpecial: true }), 'a  b');
      assert.equal(tokenizer.decode([1, ...ids]), '<s>a <unk> b');
    });

    it('known difference: a SentencePiece .model may remove extra whitespace (its normalizer says so), run.c never does', () => {
      // tok512.model leaves remove_extra_whitespaces at its proto default, true; the .bin has no normalizer.
      const model = loadTokenizer({ kind: 'file', path: modelPath('stories260K/tok512.model') });
      const bin = loadTokenizer({ kind: 'file', path: modelPath('stories260K/tok512.bin') });
      assert.deepEqual(model.encode('  Once   upon a time '), model.encode('Once upon a time'));
      assert.deepEqual(bin.encode('Once upon a time'), model.encode('Once upon a time'));
      assert.notDeepEqual(bin.encode('  Once   upon a time '), bin.encode('Once upon a time'));
      assert.deepEqual(bin.encode('  Once   upon a time '), runcEncode(readLlama2cVocab(modelPath('stories260K/tok512.bin')), '  Once   upon a time '));
    });
  });

  describe('the test models', () => {
    for (const [bin, model] of [
      ['stories260K/tok512.bin', 'stories260K/tok512.model'],
      ['babyllama-tok105/tok105.bin', 'babyllama-tok105/tok105.model'],
    ]) {
      it(`${bin} and ${model} agree on varied text (single spaces)`, () => {
        const a = loadTokenizer({ kind: 'file', path: modelPath(bin) });
        const b = loadTokenizer({ kind: 'file', path: modelPath(model) });
        assert.equal(a.vocabSize, b.vocabSize);
        for (const text of VARIED_TEXTS) {
          const single = text.replace(/ +/g, ' ').trim();
          assert.deepEqual(a.encode(single), b.encode(single), JSON.stringify(single));
        }
      });
    }

    it('aidreams260K has its own vocabulary and round-trips', () => {
      const t = loadTokenizer({ kind: 'file', path: modelPath('aidreams260K/tok512_aidreams.bin') });
      assert.equal(t.vocabSize, 512);
      for (const text of VARIED_TEXTS) assert.equal(t.decode(t.encode(text, { bos: true }), { skipSpecial: true }), text);
    });
  });
});
