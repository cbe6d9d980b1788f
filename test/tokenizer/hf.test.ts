/**
 * Hugging Face tokenizer.json and model directories. The files are written by the tests from the
 * reference vocabularies, the way Hugging Face's converters build them: Llama 3's from the
 * tiktoken ranks (GPT-2 byte spelling, merges derived from ranks), Llama 2's from the
 * SentencePiece pieces (merges derived from scores, Prepend + Replace normalizer, byte fallback).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGgufMetadata } from '../../lib/io/gguf';
import { loadTokenizer, type Tokenizer } from '../../lib/tokenizer';
import {
  LLAMA2_MODEL,
  LLAMA3_TIKTOKEN,
  LLAMA_SPM_GGUF,
  VARIED_TEXTS,
  llama3Vocabulary,
  readVocabVectors,
  temporaryDirectory, sharedTokenizer } from './helpers';

const vectors = readVocabVectors(LLAMA_SPM_GGUF);
const texts = [...VARIED_TEXTS, ...vectors.map((vector) => vector.text)];

/** Llama 3's tokenizer.json as transformers' TikTokenConverter writes it. */
function llama3TokenizerJson(): object {
  const { tokens, merges, specials } = llama3Vocabulary();
  return {
    version: '1.0',
    added_tokens: specials.map((content, i) => ({
      id: tokens.length + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT_SOURCE }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab: Object.fromEntries(tokens.map((token, id) => [token, id])),
      merges: merges.map(([left, right]) => `${left} ${right}`),
    },
  };
}

/** The pattern as the README and tokenizer.json spell it (with `(?i:...)`). */
const LLAMA3_SPLIT_SOURCE =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Llama 2's tokenizer.json as transformers' LlamaConverter writes it (legacy normalizer), merges in array form. */
function llama2TokenizerJson(): Record<string, unknown> {
  const metadata = readGgufMetadata(LLAMA_SPM_GGUF).metadata;
  const pieces = metadata.get('tokenizer.ggml.tokens') as string[];
  const scores = metadata.get('tokenizer.ggml.scores') as number[];
  const idOf = new Map(pieces.map((piece, id) => [piece, id]));
  // SentencePieceExtractor: every split of a piece into two pieces, ordered by the piece's score.
  const merges: [string, string, number][] = [];
  pieces.forEach((piece, id) => {
    const chars = Array.from(piece);
    const local: [string, string, number][] = [];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (idOf.has(left) && idOf.has(right)) local.push([left, right, scores[id]]);
    }
    local.sort((a, b) => (idOf.get(a[0]) as number) - (idOf.get(b[0]) as number) || (idOf.get(a[1]) as number) - (idOf.get(b[1]) as number));
    merges.push(...local);
  });
  merges.sort((a, b) => b[2] - a[2]); // stable: ties keep their order
  const special = (id: number, content: string): object => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      fuse_unk: true,
      byte_fallback: true,
      vocab: Object.fromEntries(pieces.map((piece, id) => [piece, id])),
      merges: merges.map(([left, right]) => [left, right]),
    },
  };
}

function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, JSON.stringify(value));
}

describe('tokenizer/hf', () => {
  let scratch: ReturnType<typeof temporaryDirectory>;
  let llama2Json: ReturnType<typeof llama2TokenizerJson>;
  before(() => {
    scratch = temporaryDirectory();
    llama2Json = llama2TokenizerJson();
  });
  after(() => scratch.remove());

  describe('byte-level (Llama 3 tokenizer.json built from the tiktoken ranks)', () => {
    let dir: string;
    let fromJson: Tokenizer;
    let tiktoken: Tokenizer;
    before(function () {
      this.timeout(60_000);
      dir = path.join(scratch.dir, 'llama3');
      fs.mkdirSync(dir);
      writeJson(path.join(dir, 'tokenizer.json'), llama3TokenizerJson());
      writeJson(path.join(dir, 'tokenizer_config.json'), { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' });
      fromJson = loadTokenizer({ kind: 'hf-dir', dir });
      tiktoken = sharedTokenizer(LLAMA3_TIKTOKEN);
    });

    it('encodes and decodes exactly like the tiktoken file', () => {
      assert.equal(fromJson.kind, 'bpe');
      assert.equal(fromJson.vocabSize, tiktoken.vocabSize);
      for (const text of texts) {
        const ids = fromJson.encode(text);
        assert.deepEqual(ids, tiktoken.encode(text), JSON.stringify(text));
        assert.equal(fromJson.decode(ids), text);
      }
      const chat = '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>';
      assert.deepEqual(fromJson.encode(chat, { parseSpecial: true }), tiktoken.encode(chat, { parseSpecial: true }));
      assert.equal(fromJson.tokenText(1917), 'Ġworld');
      assert.ok(fromJson.isSpecial(128009) && !fromJson.isSpecial(1917));
    });

    it('takes BOS/EOS from tokenizer_config.json, plus the known end-of-text/turn tokens', () => {
      assert.equal(fromJson.bosId, 128000);
      assert.deepEqual(fromJson.eosIds, [128009, 128001, 128008]);
    });
  });

  describe('SentencePiece-style (Llama 2 tokenizer.json built from the pieces)', () => {
    it('encodes every llama.cpp vector like SentencePiece (file recognised by content, not name)', () => {
      const file = path.join(scratch.dir, 'llama2.model');
      writeJson(file, llama2Json);
      const t = loadTokenizer({ kind: 'file', path: file });
      assert.equal(t.kind, 'sentencepiece');
      assert.equal(t.bosId, 1);
      assert.deepEqual(t.eosIds, [2]);
      for (const { text, ids } of vectors) {
        assert.deepEqual(t.encode(text), ids, JSON.stringify(text));
        assert.equal(t.decode([1, ...ids], { skipSpecial: true }), text);
      }
      // "<s>" as text reaches BPE, whose merges must not produce the control token.
      assert.ok(!t.encode('<s>').includes(1));
      assert.deepEqual(t.encode('<s>Hello', { parseSpecial: true }), [1, 15043]);
    });

    it('a Metaspace pre-tokenizer with prepend_scheme "first" adds the dummy prefix only at the start', () => {
      const dir = path.join(scratch.dir, 'metaspace');
      fs.mkdirSync(dir);
      const json = {
        ...llama2Json,
        normalizer: null,
        pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
      };
      writeJson(path.join(dir, 'tokenizer.json'), json);
      writeJson(path.join(dir, 'special_tokens_map.json'), { bos_token: { content: '<s>' }, eos_token: '</s>' });
      const first = loadTokenizer({ kind: 'hf-dir', dir });
      const always = sharedTokenizer(LLAMA2_MODEL);
      assert.deepEqual(first.encode('Hello world'), always.encode('Hello world'));
      const ids = first.encode('Hello<s>world', { parseSpecial: true });
      assert.deepEqual(ids.slice(0, 2), [15043, 1]);
      assert.equal(first.decode(ids.slice(2)), 'world');
      assert.deepEqual(always.encode('Hello<s>world', { parseSpecial: true }), [15043, 1, 3186]);
      assert.equal(first.bosId, 1);
      assert.deepEqual(first.eosIds, [2]);
    });
  });

  describe('model directories', () => {
    it('hints override what the files say', () => {
      const dir = path.join(scratch.dir, 'hinted');
      fs.mkdirSync(dir);
      writeJson(path.join(dir, 'tokenizer.json'), llama2Json);
      writeJson(path.join(dir, 'tokenizer_config.json'), { bos_token: '<s>', eos_token: '</s>' });
      assert.equal(loadTokenizer({ kind: 'hf-dir', dir }).bosId, 1);
      const t = loadTokenizer({ kind: 'hf-dir', dir }, { bosId: 5, eosIds: [7, 8] });
      assert.equal(t.bosId, 5);
      assert.deepEqual(t.eosIds, [7, 8]);
      assert.deepEqual(t.encode('Hello', { bos: true, eos: true }), [5, 15043, 7]);
    });

    it('prefer tokenizer.json over tokenizer.model', () => {
      const dir = path.join(scratch.dir, 'both');
      fs.mkdirSync(dir);
      writeJson(path.join(dir, 'tokenizer.json'), llama2Json);
      fs.copyFileSync(LLAMA3_TIKTOKEN, path.join(dir, 'tokenizer.model'));
      assert.equal(loadTokenizer({ kind: 'hf-dir', dir }).kind, 'sentencepiece');
    });

    it('fall back to tokenizer.model (here Llama 3 tiktoken) with ids from tokenizer_config.json', () => {
      const dir = path.join(scratch.dir, 'model-only');
      fs.mkdirSync(dir);
      fs.copyFileSync(LLAMA3_TIKTOKEN, path.join(dir, 'tokenizer.model'));
      writeJson(path.join(dir, 'tokenizer_config.json'), { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' });
      const t = loadTokenizer({ kind: 'hf-dir', dir });
      assert.equal(t.kind, 'bpe');
      assert.equal(t.bosId, 128000);
      assert.deepEqual(t.eosIds, [128001, 128008, 128009]);
    });

    it('a SentencePiece tokenizer.model works too', () => {
      const dir = path.join(scratch.dir, 'spm-only');
      fs.mkdirSync(dir);
      fs.copyFileSync(LLAMA2_MODEL, path.join(dir, 'tokenizer.model'));
      const t = loadTokenizer({ kind: 'hf-dir', dir });
      assert.deepEqual(t.encode('Hello world'), [15043, 3186]);
    });
  });
});
