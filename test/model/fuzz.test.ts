// Mutated model files through the whole loader (reader, assembly, native validation) and a short
// generation: each case is rejected with a typed error or loads and runs — never a crash, a hang
// or another kind of error. (The readers alone get >= 1000 cases each in test/io/fuzz.test.ts.)
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LowbitError, loadModel } from '../../lib';
import { seededRandom } from '../helpers/env';
import { type HotRange, mutate } from '../helpers/fuzz';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const CASES = Number(process.env.LOWBIT_FUZZ_CASES ?? 1000);

async function fuzzLoad(file: string, seed: number, hot: HotRange[], options: Parameters<typeof loadModel>[1]) {
  const original = new Uint8Array(fs.readFileSync(file));
  const dir = makeTempDir('fuzz-model');
  const target = path.join(dir, path.basename(file));
  const random = seededRandom(seed).uniform;
  let rejected = 0, loaded = 0;
  try {
    for (let i = 0; i < CASES; i++) {
      const { bytes, description } = mutate(original, random, hot);
      fs.writeFileSync(target, bytes);
      const started = performance.now();
      try {
        const model = await loadModel(target, { ...options, contextLength: 16 });
        try {
          await model.complete([1, 2, 3], { temperature: 0, maxTokens: 3 });
        } finally {
          model.dispose();
        }
        loaded++;
      } catch (error) {
        const typed = error instanceof LowbitError && (error.code === 'LOWBIT_BAD_FILE' || error.code === 'LOWBIT_BAD_INPUT');
        if (!typed) throw new Error(`case ${i} (seed ${seed}, ${description}): ${String(error)}`, { cause: error });
        rejected++;
      }
      assert.ok(performance.now() - started < 5000, `case ${i} (${description}) was slow`);
    }
  } finally {
    removeDir(dir);
  }
  assert.ok(rejected > 0 && loaded > 0, `rejected ${rejected}, loaded ${loaded}: the mutations should do both`);
}

describe('model: fuzzed files through loadModel', () => {
  it(`llama2.c checkpoint (${CASES} cases)`, async () => {
    await fuzzLoad(modelPath('stories260K/stories260K.bin'), 0x260, [{ start: 0, end: 28 }], { tokenizer: modelPath('stories260K/tok512.bin') });
  });

  it(`GGUF with a Q4_0 body (${CASES} cases)`, async () => {
    const file = modelPath('llama2xs/llama2xs-Q4_0.gguf');
    await fuzzLoad(file, 0x940, [{ start: 0, end: 16384 }], {});
  });
});
