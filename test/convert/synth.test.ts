// `lowbit synth`: a tiny random model loads and generates, its weights are on the grid with trained
// magnitudes, the seed makes it reproducible, tensors are produced in chunks, and for the real shapes
// the planned file size is the one the public configs give (nothing is written for those).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadModel } from '../../lib';
import { SYNTH_SHAPE_NAMES, synthContent, synthModel } from '../../lib/convert/synth';
import { openModel } from '../../lib/io';
import { EMBED_TOKENS, LM_HEAD } from '../../lib/io/llama';
import { planLowbitFile } from '../../lib/io/lowbit-format';
import { dequantizedWeights, expectedRowBytes, headerBytes, runCli } from '../helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

/** Public configs (Meta's config.json files; MobileLLM from research notes A4): dim, hidden, layers, heads, kv heads, vocab, tied. */
const PUBLIC: Record<string, [number, number, number, number, number, number, boolean]> = {
  'mobilellm-125m': [576, 1536, 30, 9, 3, 32000, true],
  'mobilellm-350m': [960, 2560, 32, 15, 5, 32000, true],
  'tiny-256': [256, 512, 2, 4, 2, 512, false],
  'mobilellm-600m': [1152, 3072, 40, 18, 6, 32000, true],
  'mobilellm-1b': [1280, 3584, 54, 20, 5, 32000, true],
  'mobilellm-1.5b': [1600, 4352, 54, 25, 5, 32000, true],
  'llama-1b': [2048, 8192, 16, 32, 8, 32000, true],
  'llama-2-7b': [4096, 11008, 32, 32, 32, 32000, false],
  'llama-3-8b': [4096, 14336, 32, 32, 8, 128256, false],
};
/** Parameters as the model cards give them (MobileLLM: research notes A4, counting the tied embedding once). */
const PARAMETERS: Record<string, number> = {
  'mobilellm-125m': 124.6e6, 'mobilellm-350m': 345.4e6, 'mobilellm-600m': 603.2e6, 'mobilellm-1b': 1005.5e6, 'mobilellm-1.5b': 1511.2e6,
  'llama-2-7b': 6_738_415_616, 'llama-3-8b': 8_030_261_248,
};
const FORMAT_OF: Record<string, string> = { 1: 'b1', 1.58: 't158', 2: 'b2', 3: 'b3', 4: 'b4' };

/** Data bytes of a synthetic file by the packing rule: linear rows + f32 scales, f16 embedding/head, f32 norms, the tokenizer. */
function expectedDataBytes(shape: string, bits: number, tokenizerBytes: number): { bytes: number; parameters: number } {
  const [dim, hidden, layers, heads, kvHeads, vocab, tied] = PUBLIC[shape];
  const headDim = dim / heads, kvDim = kvHeads * headDim, format = FORMAT_OF[bits];
  const linears: [number, number][] = [[dim, dim], [kvDim, dim], [kvDim, dim], [dim, dim], [hidden, dim], [hidden, dim], [dim, hidden]];
  const perLayer = linears.reduce((sum, [rows, cols]) => sum + rows * (expectedRowBytes(format, cols) + 4), 0) + 2 * dim * 4;
  const embeddings = vocab * dim * 2 * (tied ? 1 : 2);
  const parameters = layers * (linears.reduce((s, [r, c]) => s + r * c, 0) + 2 * dim) + dim + vocab * dim * (tied ? 1 : 2);
  return { bytes: layers * perLayer + dim * 4 + embeddings + tokenizerBytes, parameters };
}

describe('convert/synth', function () {
  this.timeout(120_000);
  let dir: string;
  let epoch: string | undefined;
  before(() => {
    dir = makeTempDir('synth');
    epoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1700000000';  // the recipe's date, so equal seeds give equal files
  });
  after(() => {
    if (epoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = epoch;
    removeDir(dir);
  });

  it('a tiny model loads and generates; its weights lie on the grid with trained magnitudes', async () => {
    const file = path.join(dir, 'tiny.lowbit');
    const bytes = await synthModel(file, { shape: 'tiny', bits: 2, seed: 7 });
    assert.equal(fs.statSync(file).size, bytes);
    const model = await loadModel(file);
    try {
      assert.deepEqual(model.info.formats, { f16: 2, b2: 14 });
      assert.equal(model.info.tokenizer.vocabSize, 512);
      const generation = model.generate('Once upon a time', { temperature: 0, maxTokens: 20 });
      for await (const chunk of generation) void chunk;
      assert.ok(generation.stats!.generatedTokens >= 1);
    } finally {
      model.dispose();
    }
    const source = openModel(file);
    try {
      for (const [name, { values }] of dequantizedWeights(file)) {
        const info = source.tensors.get(name) as unknown as { readScales(): Float32Array; shape: number[] };
        const scales = info.readScales(), cols = info.shape[1];
        // on the b2 grid: every weight is d * (c - 1.5) for its row's d, and all four levels occur
        const levels = new Set<number>();
        values.forEach((v, i) => {
          const level = v / scales[Math.floor(i / cols)] + 1.5;
          const code = Math.round(level);
          assert.ok(Math.abs(level - code) < 1e-6 && code >= 0 && code <= 3, `${name}[${i}]: level ${level}`);
          levels.add(code);
        });
        assert.equal(levels.size, 4, name);
        const std = Math.sqrt(values.reduce((s, v) => s + v * v, 0) / values.length);
        assert.ok(std > 0.015 && std < 0.027, `${name}: std ${std}`);
      }
      const embedding = source.tensors.get(EMBED_TOKENS)!, head = source.tensors.get(LM_HEAD)!;
      assert.equal(embedding.dtype, 'f16');
      assert.notDeepEqual(embedding.read(), head.read(), 'untied: head and embedding are drawn separately');
    } finally {
      source.close();
    }
  });

  it('the same seed gives the same file; another seed other weights', async () => {
    const write = async (name: string, seed: number) => {
      await synthModel(path.join(dir, name), { shape: 'tiny', bits: 1.58, seed });
      return fs.readFileSync(path.join(dir, name));
    };
    const a = await write('a.lowbit', 5), b = await write('b.lowbit', 5), c = await write('c.lowbit', 6);
    assert.ok(a.equals(b));
    assert.equal(c.length, a.length);
    assert.ok(!c.equals(a));
    const header = headerBytes(path.join(dir, 'a.lowbit'));
    // The recipe is a JSON string inside the JSON header, hence the escaped quotes.
    assert.equal(a.subarray(0, header).toString().replace('\\"seed\\":5', '\\"seed\\":6'), c.subarray(0, header).toString());
  });

  it('the tiny file is as large as planned and as the packing rule says', async () => {
    const file = path.join(dir, 'tiny3.lowbit');
    const content = synthContent({ shape: 'tiny', bits: 3 });
    const planned = planLowbitFile(file, content).layout.fileBytes;
    await synthModel(file, { shape: 'tiny', bits: 3 });
    const size = fs.statSync(file).size;
    assert.equal(size, planned);
    // tiny: 64 / 160 / 2 layers / 4 heads / 2 kv heads / 512 vocab, untied
    const rows = (cols: number) => expectedRowBytes('b3', cols) + 4;
    const perLayer = 64 * rows(64) * 2 + 32 * rows(64) * 2 + 160 * rows(64) * 2 + 64 * rows(160) + 2 * 64 * 4;
    const data = 2 * perLayer + 64 * 4 + 2 * 512 * 64 * 2 + fs.statSync(modelPath('stories260K/tok512.model')).size;
    assert.equal(size, headerBytes(file) + data);
  });

  for (const shape of SYNTH_SHAPE_NAMES.filter((name) => name !== 'tiny')) {
    it(`${shape}: the planned file holds the public config's tensors at the packed sizes (nothing written)`, () => {
      for (const bits of [1.58, 2] as const) {
        const content = synthContent({ shape, bits });
        const { layout } = planLowbitFile(path.join(dir, `${shape}.lowbit`), content);
        const expected = expectedDataBytes(shape, bits, content.tokenizer.bytes.length);
        assert.equal(layout.fileBytes - layout.header.length, expected.bytes);
        assert.equal(layout.header.length % 8, 0);
        const c = content.config;
        assert.deepEqual([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.tiedEmbeddings], PUBLIC[shape]);
        if (PARAMETERS[shape] !== undefined) {
          assert.ok(Math.abs(expected.parameters - PARAMETERS[shape]) <= 0.05e6 + 1e-9 * PARAMETERS[shape], `${shape}: ${expected.parameters}`);
        }
      }
    });
  }

  it('tensors are generated in chunks, never whole (llama-3-8b head, llama-2-7b down projection)', async () => {
    const firstChunk = async (shape: string, name: string) => {
      const tensor = synthContent({ shape, bits: 2 }).tensors.find((t) => t.name === name)!;
      for await (const chunk of tensor.data()) return { chunk, total: tensor.shape[0] * tensor.shape[1] };
      throw new Error('no data');
    };
    const head = await firstChunk('llama-3-8b', LM_HEAD);
    assert.ok(head.chunk.length <= 8 << 20 && head.chunk.length * 100 < head.total * 2, String(head.chunk.length));
    const down = await firstChunk('llama-2-7b', 'model.layers.31.mlp.down_proj.weight');
    assert.equal(down.chunk.length % expectedRowBytes('b2', 11008), 0);
    assert.ok(down.chunk.length * 4 < (down.total * 2) / 8, String(down.chunk.length));
  });

  it('lowbit synth writes the file with one summary line; bad input is one line and exit code 1', async () => {
    const out = path.join(dir, 'cli.lowbit');
    const { code, stderr } = await runCli(['synth', '--shape', 'tiny', '--bits', '4', '--out', out, '--seed', '3']);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /^\[lowbit\] wrote .*cli\.lowbit: tiny at 4 bits, [\d.]+ MiB, [\d.]+ s\n$/);
    const info = await runCli(['info', out]);
    assert.match(info.stdout, /lowbit file v1: synth 4-bit, method random, group 0, embeddings f16/);
    assert.match(info.stdout, /made from tiny by lowbit .*, seed 3/);
    for (const [args, pattern] of [
      [['synth', '--shape', 'huge', '--bits', '2', '--out', out], /^lowbit: Expected one of 'tiny', 'tiny-256', 'mobilellm-125m', .* for shape but received 'huge'/],
      [['synth', '--shape', 'tiny', '--bits', '2'], /^lowbit: synth needs --out FILE\n$/],
      [['synth', '--shape', 'tiny', '--bits', '2.5', '--out', out], /^lowbit: Expected one of 1, 1\.58, 2, 3, 4 for bits/],
      [['synth', '--shape', 'tiny', '--bits', '2', '--out', out, '--seed=-1'], /^lowbit: Expected an integer from 0 to 4294967295 for seed/],
    ] as const) {
      const bad = await runCli([...args]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, pattern);
      assert.equal(bad.stderr.split('\n').length, 2, bad.stderr);
    }
  });
});
