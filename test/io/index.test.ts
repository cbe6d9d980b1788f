import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { detectContainer, openModel } from '../../lib/io';
import { openLlama2c } from '../../lib/io/llama2c';
import { writeHfModel } from '../helpers/convert';
import { writeLlama2c } from '../helpers/llama2c-writer';
import { BUNDLED_MODELS, makeTempDir, modelPath, removeDir } from '../helpers/models';
import { formatError } from '../helpers/errors';

describe('io/index: openModel', () => {
  let dir: string;
  let hfSafetensors: string;
  let hfPytorch: string;
  let hfSharded: string;
  before(() => {
    dir = makeTempDir('open');
    hfSafetensors = path.join(dir, 'hf-st');
    hfPytorch = path.join(dir, 'hf-pt');
    hfSharded = path.join(dir, 'hf-sharded');
    const bin = openLlama2c(modelPath('stories260K/stories260K.bin'));
    try {
      writeHfModel(bin, hfSafetensors, { format: 'safetensors' });
      writeHfModel(bin, hfPytorch, { format: 'pytorch' });
      writeHfModel(bin, hfSharded, { format: 'safetensors', shards: 2 });
      writeLlama2c(path.join(dir, 'v1.bin'), bin, 1);
    } finally {
      bin.close();
    }
  });
  after(() => removeDir(dir));

  it('opens every bundled model file by content', () => {
    const files = BUNDLED_MODELS.flatMap((m) => [m.bin, m.ggufF32, m.ggufQ8, m.ggufQ4]).filter((f): f is string => f !== undefined);
    for (const file of files) {
      const model = openModel(modelPath(file));
      try {
        assert.equal(model.container, file.endsWith('.gguf') ? 'gguf' : 'llama2c', file);
        assert.equal(model.path, modelPath(file));
        for (const tensor of model.tensors.values()) assert.equal(tensor.read().length, tensor.byteLength);
      } finally {
        model.close();
        model.close(); // idempotent
      }
    }
  });

  it('tells containers apart', () => {
    assert.equal(detectContainer(modelPath('stories260K/stories260K.bin')), 'llama2c');
    assert.equal(detectContainer(path.join(dir, 'v1.bin')), 'llama2c');
    assert.equal(detectContainer(modelPath('llama2xs/llama2xs-Q4_0.gguf')), 'gguf');
    assert.equal(detectContainer(hfSafetensors), 'hf-dir');
    assert.equal(detectContainer(path.join(hfSafetensors, 'model.safetensors')), 'safetensors');
    assert.equal(detectContainer(path.join(hfPytorch, 'pytorch_model.bin')), 'pytorch');
    assert.equal(detectContainer(path.join(hfSharded, 'model.safetensors.index.json')), 'shard-index');
    assert.equal(detectContainer(modelPath('stories260K/tok512.bin')), undefined);
  });

  it('a weights file or shard index opens the HF folder it sits in', () => {
    for (const [file, container] of [
      [hfSafetensors, 'safetensors'],
      [path.join(hfSafetensors, 'model.safetensors'), 'safetensors'],
      [path.join(hfPytorch, 'pytorch_model.bin'), 'pytorch'],
      [path.join(hfSharded, 'model.safetensors.index.json'), 'safetensors'],
    ] as const) {
      const model = openModel(file, { tokenizer: '/x/tok.model' });
      try {
        assert.equal(model.container, container);
        assert.equal(model.config.ropeStyle, 'half');
        assert.deepEqual(model.tokenizer, { kind: 'file', path: '/x/tok.model' });
      } finally {
        model.close();
      }
    }
  });

  it('passes the tokenizer option to llama2.c and GGUF models', () => {
    for (const file of ['stories260K/stories260K.bin', 'stories260K/stories260K-f32.gguf']) {
      const model = openModel(modelPath(file), { tokenizer: '/x/tok.bin' });
      model.close();
      assert.deepEqual(model.tokenizer, { kind: 'file', path: '/x/tok.bin' });
    }
  });

  it('rejects what it cannot read with LowbitFormatError naming the file', () => {
    const bare = path.join(dir, 'bare');
    fs.mkdirSync(bare);
    fs.copyFileSync(path.join(hfSafetensors, 'model.safetensors'), path.join(bare, 'model.safetensors'));
    assert.equal(formatError(() => openModel(path.join(bare, 'model.safetensors')), /config\.json must sit next to it/).file, path.join(bare, 'model.safetensors'));
    formatError(() => openModel(path.join(dir, 'missing.gguf')), /cannot open/);
    formatError(() => openModel(modelPath('stories260K/tok512.bin')), /not a model container/);
    formatError(() => openModel(modelPath('bitnet/bit_model_3M.bin')), /BitNet/);
    const legacyTorch = path.join(dir, 'legacy.pt');
    fs.writeFileSync(legacyTorch, Buffer.from('80028a0a6cfc9c46f9206aa85019002e', 'hex'));
    formatError(() => openModel(legacyTorch), /legacy \(pre-1\.6/);
    const empty = path.join(dir, 'empty.bin');
    fs.writeFileSync(empty, '');
    formatError(() => openModel(empty), /not a model container/);
  });
});
