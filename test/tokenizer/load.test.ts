/** loadTokenizer's file recognition and its defences: broken files of every kind are LowbitFormatErrors naming the file. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../../lib/errors';
import { loadTokenizer } from '../../lib/tokenizer';
import type { TokenizerSource } from '../../lib/io/types';
import { LLAMA2_BIN, LLAMA2_MODEL, LLAMA3_TIKTOKEN, LLAMA_SPM_GGUF, temporaryDirectory } from './helpers';
import { modelPath } from '../helpers/models';

function expectFormatError(source: TokenizerSource, file: string, message?: RegExp): void {
  assert.throws(
    () => loadTokenizer(source),
    (error: unknown) => {
      assert.ok(error instanceof LowbitFormatError, `expected LowbitFormatError, got ${String(error)}`);
      assert.equal(error.file, file);
      assert.ok(error.message.includes(file), error.message);
      if (message !== undefined) assert.match(error.message, message);
      return true;
    },
  );
}

describe('tokenizer/load', () => {
  let scratch: ReturnType<typeof temporaryDirectory>;
  before(() => (scratch = temporaryDirectory()));
  after(() => scratch.remove());

  /** Writes `bytes` to a scratch file and expects loading it to fail with a LowbitFormatError naming it. */
  function expectBadFile(name: string, bytes: Uint8Array | string, message?: RegExp): void {
    const file = path.join(scratch.dir, name);
    fs.writeFileSync(file, bytes);
    expectFormatError({ kind: 'file', path: file }, file, message);
  }

  describe('recognises files by content', () => {
    const cases: [string, string, 'sentencepiece' | 'bpe', number][] = [
      ['llama2.c tokenizer.bin', LLAMA2_BIN, 'sentencepiece', 32000],
      ['SentencePiece .model', LLAMA2_MODEL, 'sentencepiece', 32000],
      ['tiktoken', LLAMA3_TIKTOKEN, 'bpe', 128256],
      ['GGUF vocabulary', LLAMA_SPM_GGUF, 'sentencepiece', 32000],
      ['GGUF model', modelPath('llama2xs/llama2xs-Q4_0.gguf'), 'sentencepiece', 512],
    ];
    for (const [name, file, kind, vocabSize] of cases) {
      it(`${name} under a misleading name`, () => {
        const copy = path.join(scratch.dir, `${name.replace(/\W/g, '_')}.json`);
        fs.copyFileSync(file, copy);
        const t = loadTokenizer({ kind: 'file', path: copy });
        assert.equal(t.kind, kind);
        assert.equal(t.vocabSize, vocabSize);
      });
    }

    it('a tokenizer.bin whose max_token_length is 10 (starts like a protobuf) is still a tokenizer.bin', () => {
      const bin = fs.readFileSync(modelPath('stories260K/tok512.bin'));
      const patched = Buffer.from(bin);
      assert.ok(bin.readInt32LE(0) <= 10);
      patched.writeInt32LE(10, 0);
      const file = path.join(scratch.dir, 'ten.bin');
      fs.writeFileSync(file, patched);
      assert.deepEqual(loadTokenizer({ kind: 'file', path: file }).encode('Once upon a time'), [403, 407, 261, 378]);
    });
  });

  describe('truncated files', () => {
    const cut = (file: string, keep: number): Buffer => fs.readFileSync(file).subarray(0, keep);

    it('llama2.c tokenizer.bin cut inside a token', () => {
      const bin = fs.readFileSync(LLAMA2_BIN);
      expectBadFile('cut.bin', bin.subarray(0, bin.length - 3), /truncated/);
      expectBadFile('cut-header.bin', bin.subarray(0, 2), /truncated/);
      expectBadFile('only-header.bin', bin.subarray(0, 4), /only 0 tokens/);
    });

    it('SentencePiece .model cut anywhere', () => {
      const size = fs.statSync(LLAMA2_MODEL).size;
      for (const keep of [1, 2, 17, 1000, Math.floor(size / 2), size - 1]) {
        expectBadFile(`cut-${keep}.model`, cut(LLAMA2_MODEL, keep));
      }
    });

    it('tiktoken cut inside a line', () => {
      expectBadFile('cut.tiktoken', cut(LLAMA3_TIKTOKEN, 1000).toString('latin1').replace(/\n[^\n]*$/, '\nSGVsbG8='), /line \d+/);
    });

    it('tokenizer.json cut short', () => {
      expectBadFile('cut.json', '{"model": {"type": "BPE", "vocab": {"a": 0', /invalid JSON/);
    });

    it('GGUF cut short', () => {
      expectBadFile('cut.gguf', cut(LLAMA_SPM_GGUF, 100_000));
      expectBadFile('magic.gguf', 'GGUF');
    });
  });

  describe('hostile files fail fast without huge allocations', () => {
    it('tokenizer.bin with absurd lengths', () => {
      const header = (maxLength: number, tokenLength: number): Buffer => {
        const bytes = Buffer.alloc(12);
        bytes.writeInt32LE(maxLength, 0);
        bytes.writeFloatLE(0, 4);
        bytes.writeInt32LE(tokenLength, 8);
        return bytes;
      };
      expectBadFile('huge-max.bin', header(0x7fffffff, 1), /max_token_length/);
      expectBadFile('negative-max.bin', header(-5, 1), /max_token_length/);
      expectBadFile('huge-token.bin', header(100, 0x7fffffff), /length 2147483647/);
      expectBadFile('negative-token.bin', header(100, -1), /length -1/);
    });

    it('SentencePiece .model with lengths past the end, bad varints and unsupported models', () => {
      // field 1 (a piece), length 2^31: more than the file holds.
      expectBadFile('long-piece.model', Uint8Array.of(0x0a, 0x80, 0x80, 0x80, 0x80, 0x08), /past the end/);
      expectBadFile('endless-varint.model', Uint8Array.of(0x0a, 0x01, 0x18, ...new Array(12).fill(0xff)));
      expectBadFile('group.model', Uint8Array.of(0x0a, 0x02, 0x0b, 0x0c), /wire type 3/);
      // One piece "a", trainer_spec with model_type 1 (unigram).
      expectBadFile('unigram.model', Uint8Array.of(0x0a, 0x03, 0x0a, 0x01, 0x61, 0x12, 0x02, 0x18, 0x01), /unigram models are not supported/);
      // An empty trainer_spec: model_type defaults to unigram.
      expectBadFile('default-type.model', Uint8Array.of(0x0a, 0x03, 0x0a, 0x01, 0x61, 0x12, 0x00), /unigram/);
      // Pieces and nothing else: cut short after a piece.
      expectBadFile('pieces-only.model', Uint8Array.of(0x0a, 0x03, 0x0a, 0x01, 0x61), /no trainer_spec/);
      // A BPE model whose piece has invalid UTF-8.
      expectBadFile('utf8.model', Uint8Array.of(0x0a, 0x03, 0x0a, 0x01, 0xff, 0x12, 0x02, 0x18, 0x02), /UTF-8/);
    });

    it('tiktoken with repeated or out-of-range ranks', () => {
      const lines = Array.from({ length: 300 }, (_, i) => `${Buffer.from([i % 256, i >> 8]).toString('base64')} ${i}`);
      expectBadFile('repeat.tiktoken', [...lines, lines[0]].join('\n'), /rank 0 is repeated/);
      expectBadFile('range.tiktoken', [...lines.slice(0, -1), 'QQ== 999999'].join('\n'), /outside/);
    });

    it('tokenizer.json with ids beyond the vocabulary, bad merges, unsupported models and components', () => {
      const json = (model: object, rest: object = {}): string =>
        JSON.stringify({ pre_tokenizer: { type: 'ByteLevel' }, ...rest, model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'], ...model } });
      expectBadFile('sparse.json', json({ vocab: { a: 0, b: 1e9 } }), /ids go up to/);
      expectBadFile('negative.json', json({ vocab: { a: -1 } }), /not a token id/);
      expectBadFile('merge.json', json({ merges: ['a c'] }), /merge 0/);
      expectBadFile('unigram.json', json({ type: 'Unigram' }), /not supported/);
      expectBadFile('wordpiece.json', json({ continuing_subword_prefix: '##' }), /continuing_subword_prefix/);
      expectBadFile('pre.json', json({}, { pre_tokenizer: { type: 'Whitespace' } }), /Whitespace/);
      expectBadFile('neither.json', json({}, { pre_tokenizer: null }), /neither byte-level nor SentencePiece/);
      expectBadFile('regex.json', json({}, { pre_tokenizer: { type: 'Split', pattern: { Regex: '(?<=a' }, behavior: 'Isolated' } }), /regex/);
      expectBadFile('array.json', '[1, 2, 3]', /not a tokenizer file lowbit recognises/);
      // JSON.parse takes any depth; the readers must not recurse that deep.
      const depth = 100_000;
      const deep = `${'{"type": "Sequence", "pretokenizers": ['.repeat(depth)}{"type": "ByteLevel"}${']}'.repeat(depth)}`;
      expectBadFile('deep.json', `{"pre_tokenizer": ${deep}, "model": {"vocab": {"a": 0}, "merges": []}}`, /nested too deeply/);
    });

    it('random bytes', () => {
      let state = 12345;
      for (let trial = 0; trial < 20; trial++) {
        const bytes = Uint8Array.from({ length: 64 + trial * 37 }, () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24);
        bytes[0] = [0x0a, 0x7b, 0x47, 0x00, 0x41][trial % 5]; // protobuf, '{', 'G', zero, 'A'
        expectBadFile(`random-${trial}.bin`, bytes);
      }
    });
  });

  describe('missing files and directories', () => {
    it('a path that does not exist, or is a directory', () => {
      const missing = path.join(scratch.dir, 'missing.model');
      expectFormatError({ kind: 'file', path: missing }, missing, /cannot open/);
      expectFormatError({ kind: 'file', path: scratch.dir }, scratch.dir, /not a regular file/);
    });

    it('a model directory without tokenizer files', () => {
      const dir = path.join(scratch.dir, 'empty');
      fs.mkdirSync(dir);
      expectFormatError({ kind: 'hf-dir', dir }, dir, /neither tokenizer.json nor tokenizer.model/);
    });

    it('a broken config next to a good tokenizer', () => {
      const dir = path.join(scratch.dir, 'bad-config');
      fs.mkdirSync(dir);
      fs.copyFileSync(LLAMA2_MODEL, path.join(dir, 'tokenizer.model'));
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{ nope');
      expectFormatError({ kind: 'hf-dir', dir }, path.join(dir, 'tokenizer_config.json'), /invalid JSON/);
    });
  });

  describe('bad arguments', () => {
    it('are TypeErrors and RangeErrors', () => {
      assert.throws(() => loadTokenizer(undefined as unknown as TokenizerSource), TypeError);
      assert.throws(() => loadTokenizer({ kind: 'zip' } as unknown as TokenizerSource), /source.kind/);
      assert.throws(() => loadTokenizer({ kind: 'file', path: '' }), TypeError);
      assert.throws(() => loadTokenizer({ kind: 'gguf', metadata: {} } as unknown as TokenizerSource), /Map/);
      assert.throws(() => loadTokenizer({ kind: 'file', path: LLAMA2_BIN }, { bosId: 32000 }), RangeError);
      assert.throws(() => loadTokenizer({ kind: 'file', path: LLAMA2_BIN }, { eosIds: [1.5] }), RangeError);
      assert.throws(() => loadTokenizer({ kind: 'file', path: LLAMA2_BIN }, { eosIds: 2 } as unknown as { eosIds: number[] }), TypeError);
    });
  });
});
