// Perplexity with ParetoQ's protocol against an independent float64 forward pass, KL and top-1
// agreement against a reference model, the tokenizer check, and the `lowbit eval` command.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LowbitError, loadModel, type LowbitModel } from '../lib';
import { quantizeModel } from '../lib/convert/quantize';
import { evaluateText } from '../lib/eval';
import { openModel } from '../lib/io';
import { runCli } from './helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from './helpers/models';
import { referenceLogits } from './helpers/reference-forward';

const STORIES = modelPath('stories260K/stories260K.bin');
const TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'One day, she saw a big red ball under a tree. She ran to get it, but a dog took the ball first. ' +
  'Lily was sad, so her mom gave her a hug and they went home to eat a warm cake together.';
const CTX = 16;

/** PPL of the text by hand: no BOS, blocks of CTX tokens, remainder dropped, float64 throughout. */
function referencePerplexity(ids: readonly number[]): { ppl: number; positions: number } {
  const source = openModel(STORIES);
  try {
    let nll = 0, positions = 0;
    for (let b = 0; b + CTX <= ids.length; b += CTX) {
      const block = ids.slice(b, b + CTX);
      const logits = referenceLogits(source, block);
      for (let i = 0; i + 1 < CTX; i++) {
        const row = logits[i];
        const max = Math.max(...row);
        const logSum = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        nll += logSum - row[block[i + 1]];
        positions++;
      }
    }
    return { ppl: Math.exp(nll / positions), positions };
  } finally {
    source.close();
  }
}

describe('eval: perplexity (ParetoQ protocol), KL and agreement', function () {
  this.timeout(120_000);
  let dir: string;
  let model: LowbitModel;
  before(async () => {
    dir = makeTempDir('eval');
    model = await loadModel(STORIES, { activations: 'f32', contextLength: 2 });
  });
  after(() => {
    model.dispose();
    removeDir(dir);
  });

  it('matches a perplexity computed with a float64 forward pass', async () => {
    const ids = model.tokenize(TEXT);
    assert.notEqual(ids[0], 1, 'no BOS');
    assert.ok(ids.length % CTX !== 0, 'the text leaves a remainder to drop');
    const expected = referencePerplexity(ids);
    const result = await evaluateText(model, TEXT, { ctx: CTX });
    assert.equal(result.tokens, ids.length);
    assert.equal(result.blocks, Math.floor(ids.length / CTX));
    assert.equal(result.positions, expected.positions);
    assert.equal(result.positions, result.blocks * (CTX - 1));
    assert.ok(Math.abs(result.perplexity - expected.ppl) <= 1e-5 * expected.ppl, `${result.perplexity} vs ${expected.ppl}`);
    assert.ok(result.perplexity > 1 && result.perplexity < 100, String(result.perplexity));
    assert.equal(result.ref, undefined);
  });

  it('KL(model || model) is 0 and top-1 agreement 1', async () => {
    const same = await loadModel(STORIES, { activations: 'f32', contextLength: 2 });
    try {
      const result = await evaluateText(model, TEXT, { ctx: CTX, ref: same });
      assert.equal(result.ref!.kl, 0);
      assert.equal(result.ref!.top1Agreement, 1);
      assert.equal(result.ref!.perplexity, result.perplexity);
    } finally {
      same.dispose();
    }
  });

  it('a 2-bit RTN model diverges from the float model: KL > 0, agreement < 1, the reference PPL is the float PPL', async () => {
    const file = path.join(dir, 'rtn2.lowbit');
    await quantizeModel(STORIES, file, { bits: 2, method: 'rtn' });
    const quantized = await loadModel(file, { activations: 'f32', contextLength: 2 });
    try {
      const alone = await evaluateText(model, TEXT, { ctx: CTX });
      const result = await evaluateText(quantized, TEXT, { ctx: CTX, ref: model });
      assert.equal(result.ref!.perplexity, alone.perplexity);
      assert.ok(result.ref!.kl > 0.01, String(result.ref!.kl));
      assert.ok(result.ref!.top1Agreement > 0 && result.ref!.top1Agreement < 1, String(result.ref!.top1Agreement));
      assert.ok(result.perplexity > alone.perplexity);
    } finally {
      quantized.dispose();
    }
  });

  it('refuses a reference with another tokenizer, and a text shorter than one block', async () => {
    const other = await loadModel(modelPath('babyllama-tok105/babyllama-tok105.bin'), { contextLength: 2 });
    try {
      await assert.rejects(evaluateText(model, TEXT, { ctx: CTX, ref: other }),
        (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_BAD_INPUT' && /does not share the tokenizer .*sentencepiece|vocabulary 105 vs 512/.test(e.message));
    } finally {
      other.dispose();
    }
    await assert.rejects(evaluateText(model, 'Once upon', { ctx: CTX }), /Expected a text of at least ctx = 16 tokens but received one of \d tokens/);
    await assert.rejects(evaluateText(model, TEXT, { ctx: 1 }), /Expected an integer from 2 to 512 for ctx but received 1/);
  });

  it('lowbit eval prints the same numbers as JSON; bad input is one line and exit code 1', async () => {
    const textFile = path.join(dir, 'text.txt');
    fs.writeFileSync(textFile, TEXT);
    const { code, stdout, stderr } = await runCli(['eval', STORIES, '--text', textFile, '--ctx', String(CTX), '--ref', STORIES]);
    assert.equal(code, 0, stderr);
    const printed = JSON.parse(stdout);
    const expected = await evaluateText(model, TEXT, { ctx: CTX });
    assert.equal(printed.perplexity, expected.perplexity);
    assert.equal(printed.ref.kl, 0);
    assert.equal(printed.ref.top1Agreement, 1);
    assert.equal(printed.activations, 'f32');
    assert.equal(printed.blocks, expected.blocks);

    for (const [args, pattern] of [
      [['eval', STORIES], /^lowbit: eval needs --text FILE\n$/],
      [['eval', STORIES, '--text', path.join(dir, 'missing.txt')], /^lowbit: cannot read --text .*missing\.txt: ENOENT.*\n$/],
      [['eval', STORIES, '--text', textFile, '--ctx', '4096'], /^lowbit: Expected an integer from 2 to 512 for ctx but received 4096 of type number\n$/],
      [['eval', STORIES, '--text', textFile, '--ref', modelPath('babyllama-tok105/babyllama-tok105.bin')], /^lowbit: the reference .* does not share the tokenizer/],
    ] as const) {
      const bad = await runCli([...args]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, pattern);
      assert.equal(bad.stderr.split('\n').length, 2, bad.stderr);
    }
  });
});
