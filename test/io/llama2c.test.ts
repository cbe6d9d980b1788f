import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../../lib/errors';
import { ByteWriter } from '../../lib/io/byte-writer';
import { openGguf } from '../../lib/io/gguf';
import { EMBED_TOKENS, LM_HEAD, canonicalShapes, layerTensorName } from '../../lib/io/llama';
import { openLlama2c } from '../../lib/io/llama2c';
import { writeLlama2c } from '../helpers/llama2c-writer';
import { BUNDLED_MODELS, makeTempDir, modelPath, removeDir } from '../helpers/models';

function assertFormatError(run: () => unknown, pattern?: RegExp, key?: string): LowbitFormatError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof LowbitFormatError, `expected LowbitFormatError, got ${String(caught)}`);
  if (pattern) assert.match(caught.message, pattern);
  if (key !== undefined) assert.equal(caught.key, key);
  return caught;
}

describe('io/llama2c', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('llama2c');
  });
  after(() => removeDir(dir));

  for (const bundled of BUNDLED_MODELS) {
    it(`${bundled.name}: config equals the README table, every tensor present with its shape`, () => {
      const model = openLlama2c(modelPath(bundled.bin));
      try {
        const c = model.config;
        assert.deepEqual(
          { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize, maxSeqLen: c.maxSeqLen },
          bundled.config,
        );
        assert.equal(c.headDim, c.dim / c.nHeads);
        assert.equal(c.tiedEmbeddings, bundled.tiedEmbeddings);
        assert.equal(c.ropeStyle, 'interleaved');
        assert.equal(c.normEps, 1e-5);
        assert.equal(c.ropeTheta, 10000);
        assert.equal(model.container, 'llama2c');
        const expected = canonicalShapes(c);
        assert.deepEqual([...model.tensors.keys()].sort(), [...expected.keys()].sort());
        for (const [name, tensor] of model.tensors) {
          assert.deepEqual(tensor.shape, expected.get(name), name);
          assert.equal(tensor.dtype, 'f32');
          assert.equal(tensor.read().length, tensor.byteLength);
        }
        assert.deepEqual(model.tokenizer, bundled.tokenizer === undefined ? undefined : { kind: 'file', path: modelPath(bundled.tokenizer) });
      } finally {
        model.close();
      }
    });
  }

  it('hands out each layer of a per-layer array at its own offset (run.c order)', () => {
    const file = modelPath('stories260K/stories260K.bin');
    const raw = fs.readFileSync(file);
    const model = openLlama2c(file);
    try {
      const { dim, vocabSize, nLayers } = model.config;
      // header, embedding, rms_att (all layers), then wq of layer 0, 1, ...
      const wqStart = 28 + 4 * (vocabSize * dim + nLayers * dim);
      const layer1 = model.tensors.get(layerTensorName(1, 'self_attn.q_proj'));
      assert.deepEqual(Buffer.from(layer1!.read()), raw.subarray(wqStart + 4 * dim * dim, wqStart + 8 * dim * dim));
      const norm3 = model.tensors.get(layerTensorName(3, 'input_layernorm'))!;
      assert.deepEqual(Buffer.from(norm3.read()), raw.subarray(28 + 4 * (vocabSize * dim + 3 * dim), 28 + 4 * (vocabSize * dim + 4 * dim)));
    } finally {
      model.close();
    }
  });

  it('reads the version-1 export and a separate classifier (negative vocab / shared_classifier 0)', () => {
    const tied = openLlama2c(modelPath('stories260K/stories260K.bin'));
    const untied = openGguf(modelPath('stories260K/stories260K-f32.gguf')); // has output.weight
    try {
      const cases = [
        { source: tied, version: 1 as const },
        { source: untied, version: 0 as const },
        { source: untied, version: 1 as const },
      ];
      for (const { source, version } of cases) {
        const file = path.join(dir, `v${version}-${source.config.tiedEmbeddings ? 'tied' : 'untied'}.bin`);
        writeLlama2c(file, source, version);
        const model = openLlama2c(file);
        try {
          assert.equal(model.metadata.get('version'), version);
          assert.equal(model.config.tiedEmbeddings, source.config.tiedEmbeddings);
          assert.equal(model.tensors.has(LM_HEAD), !source.config.tiedEmbeddings);
          for (const [name, tensor] of model.tensors) assert.deepEqual(tensor.read(), source.tensors.get(name)!.read(), name);
        } finally {
          model.close();
        }
      }
    } finally {
      tied.close();
      untied.close();
    }
  });

  it('finds the tokenizer: option, tokenizer.bin, a single tok*.bin, tokenizer.model', () => {
    const model = path.join(dir, 'tok-test', 'model.bin');
    fs.mkdirSync(path.dirname(model));
    fs.copyFileSync(modelPath('stories260K/stories260K.bin'), model);
    const found = () => {
      const m = openLlama2c(model);
      m.close();
      return m.tokenizer;
    };
    assert.equal(found(), undefined);
    fs.writeFileSync(path.join(path.dirname(model), 'tokenizer.model'), '');
    assert.deepEqual(found(), { kind: 'file', path: path.join(path.dirname(model), 'tokenizer.model') });
    fs.writeFileSync(path.join(path.dirname(model), 'tok1.bin'), '');
    assert.deepEqual(found(), { kind: 'file', path: path.join(path.dirname(model), 'tok1.bin') });
    fs.writeFileSync(path.join(path.dirname(model), 'tok2.bin'), '');
    assert.deepEqual(found(), { kind: 'file', path: path.join(path.dirname(model), 'tokenizer.model') }); // two tok*.bin: ambiguous
    fs.writeFileSync(path.join(path.dirname(model), 'tokenizer.bin'), '');
    assert.deepEqual(found(), { kind: 'file', path: path.join(path.dirname(model), 'tokenizer.bin') });
    const m = openLlama2c(model, { tokenizer: '/elsewhere/tok.model' });
    m.close();
    assert.deepEqual(m.tokenizer, { kind: 'file', path: '/elsewhere/tok.model' });
  });

  describe('bad input', () => {
    const original = fs.readFileSync(modelPath('stories260K/stories260K.bin'));
    const write = (name: string, bytes: Uint8Array) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      return file;
    };
    const withHeader = (values: number[]) => {
      const bytes = Uint8Array.from(original);
      const view = new DataView(bytes.buffer);
      values.forEach((v, i) => view.setInt32(4 * i, v, true));
      return bytes;
    };

    it('rejects truncation at many offsets and trailing bytes', () => {
      for (let length = 0; length < original.length; length += length < 64 ? 1 : 9973) {
        assertFormatError(() => openLlama2c(write('cut.bin', original.subarray(0, length))));
      }
      assertFormatError(() => openLlama2c(write('cut.bin', original.subarray(0, original.length - 1))), /header implies/);
      assertFormatError(() => openLlama2c(write('long.bin', Buffer.concat([original, Buffer.alloc(4)]))), /header implies 1056540 bytes .* file has 1056544/);
    });

    it('rejects negative, zero, huge and inconsistent header values, naming the field', () => {
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([-64]))), /must be positive/, 'dim');
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([64, 0]))), /must be positive/, 'hidden_dim');
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([64, 172, 5, 8, 4, 512, -1]))), /must be positive/, 'seq_len');
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([64, 172, 5, 7]))), /not a multiple of n_heads/, 'n_heads');
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([64, 172, 5, 8, 3]))), /not a multiple of n_kv_heads/, 'n_kv_heads');
      // products far past the file (and past 2^53 when multiplied out)
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([2 ** 30, 2 ** 30, 2 ** 30, 2 ** 10, 2 ** 10, 2 ** 30, 2 ** 30]))));
      assertFormatError(() => openLlama2c(write('h.bin', withHeader([64, 2 ** 31 - 1, 2 ** 31 - 1]))), /exceeds|overflows|implies/);
    });

    it('rejects unsupported versions of the versioned export, and BitNet files that share its header', () => {
      const v2 = new ByteWriter().u32(0x616b3432).i32(2).padTo(256).bytes();
      assertFormatError(() => openLlama2c(write('v2.bin', v2)), /version 2 is not supported/, 'version');
      assertFormatError(() => openLlama2c(modelPath('bitnet/bit_model_1M.bin')), /BitNet/);
      assertFormatError(() => openLlama2c(modelPath('bitnet/bit_model_3M.bin')), /BitNet/);
    });

    it('never leaves the file open after a rejection', () => {
      const before = fs.readdirSync('/proc/self/fd').length;
      for (let i = 0; i < 20; i++) assertFormatError(() => openLlama2c(write('cut.bin', original.subarray(0, 1000))));
      assert.equal(fs.readdirSync('/proc/self/fd').length, before);
    });
  });

  it('reads tensors only on demand (no tensor bytes read at open)', () => {
    const model = openLlama2c(modelPath('babyllama-tok105/babyllama-tok105.bin'));
    try {
      const embedding = model.tensors.get(EMBED_TOKENS)!;
      assert.equal(embedding.byteLength, 105 * 128 * 4);
      assert.notEqual(embedding.read(), embedding.read()); // a fresh copy per call
    } finally {
      model.close();
    }
  });
});
