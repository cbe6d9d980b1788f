/**
 * Quality of post-training quantization on the bundled float models (npm run bench:quality): for
 * every bit width x method (rtn, mse) x scale granularity (per row, groups of 64), the file size,
 * perplexity on bench/data/stories-eval.txt (ParetoQ's protocol: no BOS, non-overlapping blocks)
 * and the mean KL divergence and top-1 agreement against the float model. Float activations and
 * an f32 KV cache throughout, so the numbers measure the weights. Writes
 * bench/results/quality.json and prints the markdown table docs/BENCHMARKS.md carries.
 *
 * These are PTQ numbers: ParetoQ's models are trained on their grid (QAT); rounding a float model
 * to 2 bits or less is expected to collapse, as the paper's PTQ rows do.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { evaluateText, loadModel, quantizeModel } from '../lib';

const MODELS = path.join(__dirname, '..', '..', 'shared', 'models');
const SOURCES = [
  { name: 'stories260K', file: 'stories260K/stories260K.bin', tokenizer: 'stories260K/tok512.bin' },
  { name: 'llama2xs', file: 'llama2xs/llama2xs.bin', tokenizer: 'stories260K/tok512.bin' },
  { name: 'babyllama-tok105', file: 'babyllama-tok105/babyllama-tok105.bin', tokenizer: 'babyllama-tok105/tok105.bin' },
];
const BITS = [4, 3, 2, 1.58, 1];
const METHODS = ['rtn', 'mse'] as const;
const GROUPS = [0, 64];

interface QualityRow {
  model: string;
  bits: number | 'f32';
  method: string;
  group: number;
  fileBytes: number;
  perplexity: number;
  kl: number;
  top1Agreement: number;
}

async function main() {
  const text = fs.readFileSync(path.join(__dirname, 'data', 'stories-eval.txt'), 'utf8');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-quality-'));
  const rows: QualityRow[] = [];
  try {
    for (const source of SOURCES) {
      const file = path.join(MODELS, source.file), tokenizer = path.join(MODELS, source.tokenizer);
      await using ref = await loadModel(file, { tokenizer, activations: 'f32', kvCache: 'f32' });
      const float = await evaluateText(ref, text);
      rows.push({ model: source.name, bits: 'f32', method: '-', group: 0, fileBytes: fs.statSync(file).size, perplexity: float.perplexity, kl: 0, top1Agreement: 1 });
      for (const bits of BITS) {
        for (const method of METHODS) {
          for (const group of GROUPS) {
            const out = path.join(scratch, `${source.name}-${bits}-${method}-${group}.lowbit`);
            await quantizeModel(file, out, { bits, method, group, tokenizer, embeddings: 'f32' });
            await using model = await loadModel(out, { activations: 'f32', kvCache: 'f32' });
            const e = await evaluateText(model, text, { ref });
            rows.push({ model: source.name, bits, method, group, fileBytes: fs.statSync(out).size, perplexity: e.perplexity, kl: e.ref!.kl, top1Agreement: e.ref!.top1Agreement });
            fs.rmSync(out);
          }
        }
      }
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const out = path.join(__dirname, 'results', 'quality.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(rows, null, 2)}\n`);
  console.log('| model | bits | method | group | file KiB | perplexity | KL vs f32 | top-1 agreement |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.bits} | ${r.method} | ${r.group || 'row'} | ${(r.fileBytes / 1024).toFixed(0)} | ${r.perplexity.toFixed(2)} | ${r.kl.toFixed(3)} | ${(100 * r.top1Agreement).toFixed(1)}% |`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
