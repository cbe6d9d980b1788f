/**
 * Seeded mutation fuzzing of every reader on (conversions of) bundled files: each mutated file must
 * be rejected with LowbitFormatError or open and read completely — never another error, never a
 * hang, never a read larger than the file (see test/helpers/fuzz.ts).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openModel } from '../../lib/io';
import { ByteWriter } from '../../lib/io/byte-writer';
import { openLlama2c } from '../../lib/io/llama2c';
import { FileSource } from '../../lib/io/source';
import type { ModelSource } from '../../lib/io/types';
import { readZipEntries } from '../../lib/io/zip';
import { writeHfModel } from '../helpers/convert';
import { type HotRange, fuzzFile } from '../helpers/fuzz';
import { writeLlama2c } from '../helpers/llama2c-writer';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const CASES = 1000;

/** Opens with openModel and reads every tensor. */
function openAndReadAll(target: string): void {
  const model: ModelSource = openModel(target);
  try {
    for (const tensor of model.tensors.values()) assert.equal(tensor.read().length, tensor.byteLength);
  } finally {
    model.close();
  }
}

describe('io fuzz: seeded mutations of bundled files', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = makeTempDir('fuzz');
  });
  after(() => removeDir(dir));

  const report = (name: string, stats: { rejected: number; opened: number; slowestMs: number }) => {
    assert.equal(stats.rejected + stats.opened, CASES);
    if (process.env.LOWBIT_FUZZ_STATS) console.log(name, stats);
    // Both outcomes must occur, or the mutations are not reaching the parser (or nothing parses).
    assert.ok(stats.rejected > CASES / 10 && stats.opened > 0, `${name}: ${JSON.stringify(stats)}`);
  };

  it(`llama2.c (legacy and version 1): ${CASES} + ${CASES / 4} cases`, () => {
    const original = new Uint8Array(fs.readFileSync(modelPath('stories260K/stories260K.bin')));
    report('llama2c', fuzzFile({ original, target: path.join(dir, 'model.bin'), seed: 0x11a3a2c, cases: CASES, hot: [{ start: 0, end: 28 }], check: openAndReadAll }));
    const model = openLlama2c(modelPath('stories260K/stories260K.bin'));
    try {
      writeLlama2c(path.join(dir, 'v1-source.bin'), model, 1);
    } finally {
      model.close();
    }
    const v1 = new Uint8Array(fs.readFileSync(path.join(dir, 'v1-source.bin')));
    const stats = fuzzFile({ original: v1, target: path.join(dir, 'v1.bin'), seed: 0x1a3a2c1, cases: CASES / 4, hot: [{ start: 0, end: 40 }], check: openAndReadAll });
    assert.equal(stats.rejected + stats.opened, CASES / 4);
  });

  it(`GGUF: ${CASES} cases`, () => {
    const file = modelPath('llama2xs/llama2xs-Q4_0.gguf');
    const original = new Uint8Array(fs.readFileSync(file));
    const firstTensor = Buffer.concat([new ByteWriter().u64('output.weight'.length).bytes(), Buffer.from('output.weight')]);
    const tensorInfos = Buffer.from(original).indexOf(firstTensor);
    const tokensEnd = Buffer.from(original).indexOf(Buffer.from('tokenizer.ggml.scores')) - 8;
    assert.ok(tensorInfos > 0 && tokensEnd > 0);
    const hot: HotRange[] = [
      { start: 0, end: 24 + 64 }, // header, first key, the token array's type and count
      { start: tokensEnd, end: tensorInfos }, // the other metadata
      { start: tensorInfos, end: 14240 }, // tensor infos and padding
    ];
    report('gguf', fuzzFile({ original, target: path.join(dir, 'model.gguf'), seed: 0x66, cases: CASES, hot, check: openAndReadAll }));
  });

  describe('Hugging Face folders made from stories260K', () => {
    let safetensorsDir: string;
    let pytorchDir: string;
    before(() => {
      safetensorsDir = path.join(dir, 'hf-st');
      pytorchDir = path.join(dir, 'hf-pt');
      const model = openLlama2c(modelPath('stories260K/stories260K.bin'));
      try {
        writeHfModel(model, safetensorsDir, { format: 'safetensors' });
        writeHfModel(model, pytorchDir, { format: 'pytorch' });
      } finally {
        model.close();
      }
    });

    it(`safetensors: ${CASES} cases`, () => {
      const target = path.join(safetensorsDir, 'model.safetensors');
      const original = new Uint8Array(fs.readFileSync(target));
      const headerEnd = 8 + Number(Buffer.from(original).readBigUInt64LE(0));
      const hot = [{ start: 0, end: 8 }, { start: 8, end: headerEnd }];
      report('safetensors', fuzzFile({ original, target, seed: 0x5afe, cases: CASES, hot, check: () => openAndReadAll(safetensorsDir) }));
    });

    it(`pytorch_model.bin: ${CASES} cases`, () => {
      const target = path.join(pytorchDir, 'pytorch_model.bin');
      const original = new Uint8Array(fs.readFileSync(target));
      const source = FileSource.open(target);
      const hot: HotRange[] = [];
      try {
        const entries = [...readZipEntries(source).values()];
        for (const entry of entries) hot.push({ start: Math.max(0, entry.dataOffset - 128), end: entry.dataOffset }); // local headers
        const pickle = entries.find((e) => e.name.endsWith('data.pkl'))!;
        hot.push({ start: pickle.dataOffset, end: pickle.dataOffset + pickle.size });
        const central = original.length - (46 + 40) * entries.length - 22;
        hot.push({ start: Math.max(0, central - 200), end: original.length });
      } finally {
        source.close();
      }
      report('pytorch', fuzzFile({ original, target, seed: 0x7e4c, cases: CASES, hot, check: () => openAndReadAll(pytorchDir) }));
    });

    it(`pytorch_model.bin with ZIP64 records and deflated entries: ${CASES / 4} cases`, () => {
      const folder = path.join(dir, 'hf-pt-deflated');
      const model = openLlama2c(modelPath('stories260K/stories260K.bin'));
      try {
        writeHfModel(model, folder, { format: 'pytorch', torch: { zip64: true, deflate: true } });
      } finally {
        model.close();
      }
      const target = path.join(folder, 'pytorch_model.bin');
      const original = new Uint8Array(fs.readFileSync(target));
      const hot = [{ start: 0, end: 4096 }, { start: Math.max(0, original.length - 8192), end: original.length }];
      const stats = fuzzFile({ original, target, seed: 0xdef1, cases: CASES / 4, hot, check: () => openAndReadAll(folder) });
      if (process.env.LOWBIT_FUZZ_STATS) console.log('pytorch deflated', stats);
      assert.ok(stats.rejected > 0 && stats.opened > 0);
    });
  });
});
