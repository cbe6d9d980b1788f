// lowbit's own file format: written files read back through openModel with dtype 'lowbit'; every
// kind of embedded tokenizer; hostile files rejected with LowbitFormatError naming file and tensor
// or key; seeded mutation fuzzing through openModel (1000 cases) and loadModel (200 cases).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadModel } from '../../lib';
import { quantizeModel } from '../../lib/convert/quantize';
import { LowbitFormatError } from '../../lib/errors';
import { detectContainer, openModel } from '../../lib/io';
import { isLowbitTensor } from '../../lib/io/lowbit-format';
import { openLlama2c } from '../../lib/io/llama2c';
import type { EmbeddedTokenizer, ModelSource } from '../../lib/io/types';
import { tensorFromPacked } from '../../lib/qtensor';
import { writeHfModel } from '../helpers/convert';
import { seededRandom } from '../helpers/env';
import { type HotRange, fuzzFile, mutate } from '../helpers/fuzz';
import { formatError } from '../helpers/errors';
import { type Header, editJson, rewrite, splitFile } from '../helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const STORIES = modelPath('stories260K/stories260K.bin');
const LLAMA2_CHAT = "{% if messages[0]['role'] == 'system' %}{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}" +
  "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}";

/** Opens with openModel and reads every tensor (packed data and scales). */
function openAndReadAll(file: string): void {
  const model: ModelSource = openModel(file);
  try {
    for (const tensor of model.tensors.values()) {
      assert.equal(tensor.read().length, tensor.byteLength);
      if (isLowbitTensor(tensor)) assert.equal(tensor.readScales().length % tensor.shape[0], 0);
    }
  } finally {
    model.close();
  }
}

async function loadError(file: string, pattern: RegExp, key?: string): Promise<void> {
  await assert.rejects(loadModel(file, { contextLength: 2 }), (error: unknown) => {
    assert.ok(error instanceof LowbitFormatError, `expected LowbitFormatError, got ${String(error)}`);
    assert.match(error.message, pattern);
    if (key !== undefined) assert.equal(error.key, key);
    return true;
  });
}

const Q_PROJ = 'model.layers.0.self_attn.q_proj.weight';
const DOWN = 'model.layers.0.mlp.down_proj.weight';

describe('io/lowbit-format', function () {
  this.timeout(120_000);
  let dir: string;
  let file: string;  // stories260K: attention t158, down b3, the rest b2, groups of 64 columns
  before(async () => {
    dir = makeTempDir('lowbit-format');
    file = path.join(dir, 'mixed.lowbit');
    await quantizeModel(STORIES, file, { bits: 2, method: 'rtn', group: 64, tensorBits: 'attn.*=1.58,mlp.down=3' });
  });
  after(() => removeDir(dir));

  it('is recognised by content and read back with dtype lowbit, packed rows and per-group scales', () => {
    assert.equal(detectContainer(file), 'lowbit');
    const model = openModel(file);
    try {
      assert.equal(model.container, 'lowbit');
      const q = model.tensors.get(Q_PROJ)!;
      assert.ok(isLowbitTensor(q));
      assert.deepEqual([q.dtype, q.format, q.group, [...q.shape]], ['lowbit', 't158', 64, [64, 64]]);
      assert.equal(q.byteLength, 64 * 16);  // 2 bits per weight
      const down = model.tensors.get('model.layers.0.mlp.down_proj.weight')!;
      assert.ok(isLowbitTensor(down));
      assert.equal(down.byteLength, 64 * (Math.ceil(172 * 2 / 8) + Math.ceil(172 / 8)));  // b3: a 2-bit and a 1-bit plane
      assert.equal(down.readScales().length, 64 * 3);  // ceil(172 / 64) groups per row
      assert.equal(model.tensors.get('model.embed_tokens.weight')!.dtype, 'f16');
      assert.equal(model.tensors.get('model.norm.weight')!.dtype, 'f32');
      assert.equal(model.config.ropeStyle, 'interleaved');
      const tokenizer = model.tokenizer as EmbeddedTokenizer;
      assert.equal(tokenizer.kind, 'embedded');
      assert.equal(tokenizer.format, 'llama2c');
      assert.deepEqual(tokenizer.bytes, new Uint8Array(fs.readFileSync(modelPath('stories260K/tok512.bin'))));
      assert.deepEqual([tokenizer.bosId, tokenizer.eosIds], [1, [2, 1]]);
    } finally {
      model.close();
    }
  });

  it("packs rows as docs/FORMAT.md says: planes, 64-column chunks, a narrower last chunk", () => {
    // The documented rule, written out: column col of plane width w sits in byte start*w/8 + (i mod B), bits w*floor(i/B).
    const unpack = (row: Uint8Array, cols: number, planes: number[]): number[] => {
      const codes = new Array<number>(cols).fill(0);
      let planeStart = 0, low = 0;
      for (const w of planes) {
        for (let col = 0; col < cols; col++) {
          const start = 64 * Math.floor(col / 64), T = Math.min(64, cols - start), B = Math.ceil((T * w) / 8), i = col - start;
          const byte = row[planeStart + (start * w) / 8 + (i % B)];
          codes[col] |= ((byte >> (w * Math.floor(i / B))) & ((1 << w) - 1)) << low;
        }
        planeStart += Math.ceil((cols * w) / 8);
        low += w;
      }
      return codes;
    };
    const model = openModel(file);
    try {
      for (const [name, planes] of [[DOWN, [2, 1]], [Q_PROJ, [2]], ['model.layers.0.mlp.up_proj.weight', [2]]] as const) {
        const info = model.tensors.get(name)!;
        assert.ok(isLowbitTensor(info));
        const [rows, cols] = info.shape;
        const t = tensorFromPacked(info.format, rows, cols, info.group, info.read(), info.readScales());
        const codes = t.codes(), packed = info.read(), rowBytes = info.byteLength / rows;
        for (let r = 0; r < rows; r++) {
          assert.deepEqual(unpack(packed.subarray(r * rowBytes, (r + 1) * rowBytes), cols, [...planes]), [...codes.subarray(r * cols, (r + 1) * cols)], `${name} row ${r}`);
        }
        t.dispose();
      }
    } finally {
      model.close();
    }
  });

  it('carries every tokenizer kind: GGUF metadata, SentencePiece, and a chat template from a HF folder', async () => {
    const fromGguf = path.join(dir, 'gguf.lowbit');
    await quantizeModel(modelPath('stories260K/stories260K-f32.gguf'), fromGguf, { bits: 4, method: 'rtn' });
    const hfDir = path.join(dir, 'hf');
    const float = openLlama2c(STORIES);
    try {
      writeHfModel(float, hfDir, { format: 'safetensors' });
    } finally {
      float.close();
    }
    fs.copyFileSync(modelPath('stories260K/tok512.model'), path.join(hfDir, 'tokenizer.model'));
    fs.writeFileSync(path.join(hfDir, 'tokenizer_config.json'), JSON.stringify({ chat_template: LLAMA2_CHAT }));
    const fromHf = path.join(dir, 'hf.lowbit');
    await quantizeModel(hfDir, fromHf, { bits: 4, method: 'rtn' });

    const text = 'Once upon a time, Lily saw a big red ball.';
    const original = await loadModel(modelPath('stories260K/stories260K-f32.gguf'), { contextLength: 2 });
    for (const [converted, format] of [[fromGguf, 'gguf'], [fromHf, 'sentencepiece']] as const) {
      const source = openModel(converted);
      assert.equal((source.tokenizer as EmbeddedTokenizer).format, format);
      source.close();
      const model = await loadModel(converted, { contextLength: 2 });
      try {
        assert.deepEqual(model.tokenize(text, { bos: true }), original.tokenize(text, { bos: true }), format);
        assert.equal(model.detokenize(model.tokenize(text)), original.detokenize(original.tokenize(text)));
        assert.equal(model.info.chatFormat, format === 'sentencepiece' ? 'llama2' : undefined);
      } finally {
        model.dispose();
      }
    }
    original.dispose();
    // --tokenizer replaces the embedded one
    const model = await loadModel(fromHf, { contextLength: 2, tokenizer: modelPath('babyllama-tok105/tok105.model') });
    assert.equal(model.tokenizer.vocabSize, 105);
    model.dispose();
  });

  describe('hostile files: LowbitFormatError naming the file and the tensor or key', () => {
    let n = 0;
    const variant = (edit: Parameters<typeof rewrite>[2]) => rewrite(file, path.join(dir, `bad-${n++}.lowbit`), edit);

    it('metadata: version, config, tensor table, tokenizer, recipe', () => {
      const cases: [Parameters<typeof rewrite>[2], RegExp, string][] = [
        [(_h, m) => { m['lowbit.version'] = '3'; }, /format version "3" is not supported \(this lowbit reads 1 and 2\)/, 'lowbit.version'],
        [(_h, m) => { delete m['lowbit.config']; }, /missing from __metadata__/, 'lowbit.config'],
        [(_h, m) => { m['lowbit.config'] = '{"dim": 64'; }, /invalid JSON/, 'lowbit.config'],
        [(_h, m) => editJson(m, 'lowbit.config', (c) => { c.ropeStyle = 'sideways'; }), /ropeStyle: must be 'interleaved' or 'half'/, 'lowbit.config'],
        [(_h, m) => editJson(m, 'lowbit.config', (c) => { c.nKvHeads = 3; }), /8 heads cannot share 3 kv heads/, 'nKvHeads'],
        [(_h, m) => editJson(m, 'lowbit.config', (c) => { c.hiddenDim = 173; }), /shape \[172, 64\] should be \[173, 64\]/, 'model.layers.0.mlp.gate_proj.weight'],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[Q_PROJ] as { format: string }).format = 'b5'; }), /format "b5" is not one lowbit stores/, Q_PROJ],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[Q_PROJ] as { group: number }).group = 48; }), /group 48 must be 0 or a multiple of 32/, Q_PROJ],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[DOWN] as { group: number }).group = 0; }), /is f32 \[64, 3\], expected f32 \[64, 1\]/, `${DOWN}.scales`],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[Q_PROJ] as { format: string }).format = 'b4'; }), /expected u8 \[64, 32\]/, Q_PROJ],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { delete t['model.norm.weight']; }), /missing from lowbit.tensors/, 'model.norm.weight'],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { t['model.layers.9.mlp.up_proj.weight'] = {}; }), /not a tensor of this Llama config/, 'model.layers.9.mlp.up_proj.weight'],
        [(_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t['model.norm.weight'] as { format: string }).format = 'b2'; }), /a vector cannot be b2/, 'model.norm.weight'],
        [(_h, m) => editJson(m, 'lowbit.tokenizer', (t) => { t.bosId = 512; }), /bosId: 512 is not below the vocabulary size 512/, 'lowbit.tokenizer'],
        [(_h, m) => editJson(m, 'lowbit.tokenizer', (t) => { t.format = 'word2vec'; }), /format: "word2vec" is not a tokenizer kind lowbit embeds/, 'lowbit.tokenizer'],
        [(_h, m) => { m['lowbit.recipe'] = '[]'; }, /must be a JSON object/, 'lowbit.recipe'],
      ];
      for (const [edit, pattern, key] of cases) formatError(() => openModel(variant(edit)), pattern, key);
    });

    it('stored tensors: missing, stray, wrong dtype or size', () => {
      formatError(() => openModel(variant((h) => { h.extra = { dtype: 'U8', shape: [0], data_offsets: [0, 0] }; })), /is not described by lowbit.tensors/, 'extra');
      formatError(() => openModel(variant((h) => { delete h['lowbit.tokenizer']; })), /tensor is missing/, 'lowbit.tokenizer');
      formatError(() => openModel(variant((h) => { delete h[`${Q_PROJ}.scales`]; })), /tensor is missing/, `${Q_PROJ}.scales`);
      formatError(() => openModel(variant((h) => {
        const entry = h['model.norm.weight'] as { dtype: string; shape: number[] };
        [entry.dtype, entry.shape] = ['F16', [128]];
      })), /is f16 \[128\], expected f32 \[64\]/, 'model.norm.weight');
    });

    it('data the native side rejects: a ternary code 3, a NaN scale', async () => {
      const offsets = (h: Header, name: string) => (h[name] as { data_offsets: [number, number] }).data_offsets;
      await loadError(variant((h, _m, data) => { data[offsets(h, Q_PROJ)[0] + 5] = 0xff; }), /invalid t158 data: row 0 column \d+ holds code 3, invalid for t158/, Q_PROJ);
      await loadError(variant((h, _m, data) => { data.writeFloatLE(NaN, offsets(h, `${Q_PROJ}.scales`)[0] + 8); }), /invalid t158 data: scale 2 is not finite/, Q_PROJ);
      await loadError(variant((_h, m) => editJson(m, 'lowbit.tokenizer', (t) => { t.format = 'tiktoken'; })), /tensor lowbit.tokenizer/);
    });
  });

  describe('fuzz: seeded mutations', () => {
    /** Byte ranges worth mutating: the length, the metadata JSON, scales and packed codes of q_proj, the tokenizer. */
    function hotRanges(): HotRange[] {
      const bytes = fs.readFileSync(file);
      const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
      const text = bytes.subarray(0, headerEnd).toString('latin1');
      const { header } = splitFile(file);
      const data = (name: string): HotRange => {
        const [start, end] = (header[name] as { data_offsets: [number, number] }).data_offsets;
        return { start: headerEnd + start, end: headerEnd + Math.min(end, start + 256) };
      };
      return [
        { start: 0, end: 8 },
        { start: 8, end: text.indexOf('"lowbit.recipe"') },  // version, config, tensor table, tokenizer
        { start: 8, end: headerEnd },
        data(Q_PROJ), data(`${Q_PROJ}.scales`), data('lowbit.tokenizer'),
      ];
    }

    it('1000 cases through openModel, reading every tensor', () => {
      const original = new Uint8Array(fs.readFileSync(file));
      const stats = fuzzFile({ original, target: path.join(dir, 'fuzz.lowbit'), seed: 0x10b17, cases: 1000, hot: hotRanges(), check: openAndReadAll });
      assert.equal(stats.rejected + stats.opened, 1000);
      assert.ok(stats.rejected > 100 && stats.opened > 50, JSON.stringify(stats));
    });

    it('200 cases through loadModel, tokenizing and evaluating a prompt', async () => {
      const original = new Uint8Array(fs.readFileSync(file));
      const random = seededRandom(0x10ad).uniform;
      const target = path.join(dir, 'fuzz-load.lowbit');
      let loaded = 0, rejected = 0;
      for (let i = 0; i < 200; i++) {
        const { bytes, description } = mutate(original, random, hotRanges());
        fs.writeFileSync(target, bytes);
        try {
          const model = await loadModel(target, { contextLength: 2 });
          try {
            const ids = model.tokenize('Once upon a time', { bos: true });
            assert.equal((await model.logits(ids)).length, ids.length * 512);
          } finally {
            model.dispose();
          }
          loaded++;
        } catch (error) {
          if (!(error instanceof LowbitFormatError)) throw new Error(`case ${i} (${description}): ${String(error)}`, { cause: error });
          rejected++;
        }
      }
      assert.ok(rejected > 20 && loaded > 20, JSON.stringify({ loaded, rejected }));
    });
  });
});
