// `lowbit sharp`: one summary line on stderr, a file `lowbit info` describes (sharing, stored vs
// logical MLP parameters), `run` generates from it; bad options are one line and exit code 1.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';

import { runCli } from '../helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const STORIES = modelPath('stories260K/stories260K.bin');
const TOKENIZER = modelPath('stories260K/tok512.model');
const CALIB = path.join(__dirname, '../data/sharp-calibration.txt');

describe('cli sharp', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => (dir = makeTempDir('cli-sharp')));
  after(() => removeDir(dir));

  it('writes a shared model, info describes it, run generates from it', async () => {
    const out = path.join(dir, 'shared.lowbit');
    const r = await runCli(['sharp', STORIES, out, '--tokenizer', TOKENIZER, '--schedule', 'every-other', '--rank', 'gate=8,up=8,down=16',
      '--init', 'cov', '--calib', CALIB, '--calib-tokens', '512', '--refine', '10', '--bits', '4', '--method', 'rtn', '--recovery', 'f16']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^\[lowbit\] wrote .*shared\.lowbit: [\d.]+ MiB; layers 1<0, 3<2 share gate, up, down \(ranks 8\/8\/16, init cov, 10 refine steps\); 4-bit rtn; MLP parameters stored 114,176 of 165,120 \(30.9% saved\); [\d.]+ s\n$/);
    const info = await runCli(['info', out]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /MLP: 114,176 of 165,120 parameters stored \([\d.]+ MiB of [\d.]+ MiB\), 30.9% saved by sharing/);
    assert.match(info.stdout, /lowbit file v2: sharp 4-bit, method rtn, group 0, embeddings f16/);
    assert.match(info.stdout, /sharp: layers 1<0, 3<2 share gate, up, down \(ranks 8\/8\/16, init cov, 10 refine steps\)/);
    const run = await runCli(['run', out, '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '10']);
    assert.equal(run.code, 0, run.stderr);
    assert.ok(run.stdout.length > 0);
  });

  it('reports bad options in one line with exit code 1', async () => {
    const out = path.join(dir, 'bad.lowbit');
    for (const [args, message] of [
      [['--schedule', '3<2,2<1'], /^lowbit: Expected a schedule this model allows \(layer 2 is the reference of 3 and a target itself\)/],
      [['--rank', 'gate=100'], /rank of gate must be an integer from 0 to 64/],
      [['--init', 'cov'], /calibration text file/],
      [['--calib', path.join(dir, 'missing.txt'), '--init', 'cov'], /cannot read the calibration text/],
      [['--refine', 'many'], /--refine needs a number/],
    ] as const) {
      const r = await runCli(['sharp', STORIES, out, '--tokenizer', TOKENIZER, ...args]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.equal((await runCli(['sharp', STORIES])).code, 1);
  });
});
