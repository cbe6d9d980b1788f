// The CLI contract scripts rely on, run in-process (no child node: the arm64 run of this suite
// executes under qemu, where a child node cannot start): `run` writes only the generated text to
// stdout and one summary line to stderr; `tokenize` prints a JSON array; `info` describes a model.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';

import { main } from '../../lib/cli';
import { modelPath } from '../helpers/models';

/** Runs the CLI with argv, capturing what it writes. */
export async function runCli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [], err: string[] = [];
  const write = (into: string[]) => (chunk: string | Uint8Array) => {
    into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  };
  const original = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = write(out) as typeof process.stdout.write;
  process.stderr.write = write(err) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = original.out;
    process.stderr.write = original.err;
  }
}

const REFERENCES = JSON.parse(fs.readFileSync(modelPath('references.json'), 'utf8'));

describe('cli', () => {
  it('run with no model generates from the demo model; stdout is only the generated text', async () => {
    const ref = REFERENCES[0];
    const r = await runCli(['run', '--prompt', ref.prompt, '--temperature', '0', '--max-tokens', '40']);
    assert.equal(r.code, 0, r.stderr);
    // greedy from the demo model follows run.c's reference continuation
    assert.ok(ref.continuation.startsWith(r.stdout), `stdout: ${JSON.stringify(r.stdout)}`);
    assert.ok(r.stdout.length > 40);
    assert.match(r.stderr, /^\n\[lowbit\] stories260K\.bin: 5 prompt tokens at [\d.]+ tok\/s, 40 generated at [\d.]+ tok\/s .*finished: length\n$/);
  });

  it('run with a GGUF model and a seed is reproducible', async () => {
    const args = ['run', modelPath('stories260K/stories260K-f32.gguf'), '--prompt', 'The cat', '--seed', '7', '--max-tokens', '30'];
    const a = await runCli(args), b = await runCli(args);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
  });

  it('tokenize prints token ids as JSON, from a model or a bare tokenizer file', async () => {
    const bare = await runCli(['tokenize', modelPath('stories260K/tok512.bin'), '--text', 'Once upon a time']);
    assert.equal(bare.code, 0, bare.stderr);
    assert.deepEqual(JSON.parse(bare.stdout), [403, 407, 261, 378]);
    const withBos = await runCli(['tokenize', modelPath('stories260K/stories260K-f32.gguf'), '--text', 'Once upon a time', '--bos']);
    assert.deepEqual(JSON.parse(withBos.stdout), [1, 403, 407, 261, 378]);
    const spm = await runCli(['tokenize', modelPath('tokenizers/ggml-vocab-llama-spm.gguf'), '--text', 'Hello world']);
    assert.deepEqual(JSON.parse(spm.stdout), [15043, 3186]);
    const llama3 = await runCli(['tokenize', modelPath('tokenizers/llama3-tokenizer.model'), '--text', 'Hello world']);
    assert.deepEqual(JSON.parse(llama3.stdout), [9906, 1917]);
  });

  it('info describes a model, as text and as JSON', async () => {
    const text = await runCli(['info', modelPath('llama2xs/llama2xs-Q4_0.gguf')]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /dim 64, hidden 192, layers 5, heads 8 \(kv 4\)/);
    assert.match(text.stdout, /model\.layers\.0\.mlp\.down_proj\.weight: b4/);
    const json = await runCli(['info', modelPath('stories260K/stories260K.bin'), '--json']);
    const info = JSON.parse(json.stdout);
    assert.equal(info.config.vocabSize, 512);
    assert.equal(info.tensorFormats['model.embed_tokens.weight'], 'f32');
  });

  it('reports bad input in one line with exit code 1', async () => {
    const cases: [string[], RegExp][] = [
      [['run', modelPath('stories260K/nope.bin')], /^lowbit: .*nope\.bin: cannot open/],
      [['run', '--prompt', 'x', '--max-tokens', 'ten'], /^lowbit: --max-tokens needs a number, got 'ten'/],
      [['run', '--prompt', 'x', '--temperature=-1'], /^lowbit: Expected a number from 0 to 100 for temperature but received -1/],
      [['run', '--bogus'], /^lowbit: Unknown option '--bogus'/],
      [['tokenize', modelPath('stories260K/tok512.bin')], /^lowbit: tokenize needs --text TEXT/],
      [['info'], /^lowbit: info needs one model/],
      [['frobnicate'], /^lowbit: unknown command 'frobnicate'/],
    ];
    for (const [argv, message] of cases) {
      const r = await runCli(argv);
      assert.equal(r.code, 1, argv.join(' '));
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
  });
});
