/**
 * Tokenizer speed (npm run bench:tokenizer): loading each vocabulary and encoding 100 KB of
 * mixed text, in MB/s. Writes bench/results/tokenizer.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { loadTokenizer } from '../lib/tokenizer';

const MODELS = path.join(__dirname, '..', '..', 'shared', 'models');
const FILES = {
  'llama2 (SentencePiece .model)': 'tokenizers/llama2-tokenizer.model',
  'llama2 (llama2.c .bin)': 'tokenizers/llama2-tokenizer.bin',
  'llama3 (tiktoken)': 'tokenizers/llama3-tokenizer.model',
  'tok512 (stories260K)': 'stories260K/tok512.bin',
};

const sample = fs.readFileSync(path.join(__dirname, 'data', 'stories-eval.txt'), 'utf8') + ' 12345 naïve café 東京 🙂\n';
const text = sample.repeat(Math.ceil(100_000 / sample.length)).slice(0, 100_000);
const rows = Object.entries(FILES).map(([name, file]) => {
  let t = performance.now();
  const tokenizer = loadTokenizer({ kind: 'file', path: path.join(MODELS, file) });
  const loadSeconds = (performance.now() - t) / 1000;
  tokenizer.encode(text.slice(0, 10_000));  // warm up the JIT
  t = performance.now();
  const ids = tokenizer.encode(text);
  const encodeSeconds = (performance.now() - t) / 1000;
  const row = { tokenizer: name, loadSeconds, textBytes: Buffer.byteLength(text), tokens: ids.length, encodeMBps: Buffer.byteLength(text) / encodeSeconds / 1e6 };
  console.log(`${name.padEnd(32)} load ${(loadSeconds * 1000).toFixed(0).padStart(5)} ms  encode ${row.encodeMBps.toFixed(2)} MB/s (${ids.length} tokens)`);
  return row;
});
const out = path.join(__dirname, 'results', 'tokenizer.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, `${JSON.stringify(rows, null, 2)}\n`);
