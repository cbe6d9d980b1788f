// Format version 2 (docs/FORMAT.md): a SHARP file stores no shared projection of a target, only its
// recovery factors, and describes the sharing in lowbit.sharp; files without sharing stay version 1.
// Hostile variants fail with a LowbitFormatError naming the file and the key or tensor.
import assert from 'node:assert/strict';
import * as path from 'node:path';

import { sharpModel } from '../../lib/convert/sharp';
import { quantizeModel } from '../../lib/convert/quantize';
import { openModel } from '../../lib/io';
import { describeLowbitFile, planLowbitFile } from '../../lib/io/lowbit-format';
import { loraTensorName, sharpShapes } from '../../lib/io/sharp';
import { formatError } from '../helpers/errors';
import { type Header, editJson, rewrite, splitFile } from '../helpers/lowbit-files';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const STORIES = modelPath('stories260K/stories260K.bin');
const TOKENIZER = modelPath('stories260K/tok512.model');
const GATE_A = loraTensorName(3, 'gate', 'a');

describe('io/sharp: lowbit format version 2', function () {
  this.timeout(60_000);
  let dir: string, file: string, plain: string;
  before(async () => {
    dir = makeTempDir('sharp-format');
    file = path.join(dir, 'shared.lowbit');
    await sharpModel(STORIES, file, { tokenizer: TOKENIZER, schedule: '3<2,4<2', rank: 'gate=4,up=4,down=0', init: 'svd' });
    plain = path.join(dir, 'plain.lowbit');
    await quantizeModel(STORIES, plain, { bits: 4, method: 'rtn' });
  });
  after(() => removeDir(dir));

  it('stores the sharing, the factors and no shared weight of a target', () => {
    const { header } = splitFile(file);
    const metadata = header.__metadata__ as Record<string, string>;
    assert.equal(metadata['lowbit.version'], '2');
    assert.deepEqual(JSON.parse(metadata['lowbit.sharp']), {
      schedule: [{ target: 3, reference: 2 }, { target: 4, reference: 2 }], mats: ['gate', 'up', 'down'],
      ranks: { gate: 4, up: 4, down: 0 }, init: 'svd', refine: 0,
    });
    const tensors = JSON.parse(metadata['lowbit.tensors']);
    assert.deepEqual(tensors[GATE_A], { format: 'f32', shape: [4, 64] });
    assert.deepEqual(tensors[loraTensorName(3, 'gate', 'b')], { format: 'f32', shape: [172, 4] });
    for (const layer of [3, 4]) {
      for (const mat of ['gate', 'up', 'down']) assert.equal(header[`model.layers.${layer}.mlp.${mat}_proj.weight`], undefined);
      assert.equal(header[loraTensorName(layer, 'down', 'a')], undefined);  // rank 0: no factors
    }
    const source = openModel(file);
    try {
      assert.deepEqual([...source.tensors.keys()].sort(), [...sharpShapes(source.config, source.sharp).keys()].sort());
      assert.equal(source.sharp?.schedule.length, 2);
    } finally {
      source.close();
    }
  });

  it('files without sharing stay version 1', () => {
    assert.equal(describeLowbitFile(plain).version, 1);
    assert.equal(describeLowbitFile(plain).sharp, undefined);
    assert.equal((splitFile(plain).header.__metadata__ as Record<string, string>)['lowbit.sharp'], undefined);
  });

  it('the writer refuses a layout the tensors do not follow', () => {
    const source = openModel(file);
    try {
      const content = { config: source.config, tokenizer: { format: 'sentencepiece' as const, bytes: new Uint8Array(1) }, recipe: {} as never, tensors: [] };
      assert.throws(() => planLowbitFile('x', { ...content, sharp: { ...source.sharp!, schedule: [{ target: 2, reference: 2 }] } }), /sharp.schedule: layer 2 cannot share with itself/);
      assert.throws(() => planLowbitFile('x', { ...content, sharp: source.sharp }), /missing \[/);
    } finally {
      source.close();
    }
  });

  it('hostile files: LowbitFormatError naming the key or tensor', () => {
    let n = 0;
    const variant = (from: string, edit: (h: Header, m: Record<string, string>) => void) => rewrite(from, path.join(dir, `bad-${n++}.lowbit`), edit);
    const sharp = (edit: (s: Record<string, unknown>) => void) => (_h: Header, m: Record<string, string>) => editJson(m, 'lowbit.sharp', edit);
    const cases: [string, (h: Header, m: Record<string, string>) => void, RegExp, string][] = [
      [file, sharp((s) => { s.schedule = [{ target: 3, reference: 2 }, { target: 2, reference: 1 }]; }), /schedule: layer 2 is the reference of 3 and a target itself/, 'lowbit.sharp'],
      [file, sharp((s) => { s.schedule = [{ target: 7, reference: 2 }]; }), /schedule: layer 7 is not one of the model's layers 0 to 4/, 'lowbit.sharp'],
      [file, sharp((s) => { s.schedule = [{ target: 3 }]; }), /schedule: expected an array of \{"target", "reference"\}/, 'lowbit.sharp'],
      [file, sharp((s) => { s.mats = ['gate', 'q']; }), /mats: expected an array of gate, up, down/, 'lowbit.sharp'],
      [file, sharp((s) => { s.ranks = { gate: 65, up: 4, down: 0 }; }), /ranks: the rank of gate must be an integer from 0 to 64/, 'lowbit.sharp'],
      [file, sharp((s) => { s.init = 'pca'; }), /init: must be one of none, svd, cov/, 'lowbit.sharp'],
      [file, sharp((s) => { s.ranks = { gate: 4, up: 4, down: 2 }; }), /missing from lowbit.tensors/, loraTensorName(3, 'down', 'a')],
      [file, (_h, m) => { m['lowbit.version'] = '1'; }, /needs format version 2/, 'lowbit.sharp'],
      [file, (_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[GATE_A] as { format: string }).format = 'b4'; }), /a recovery factor must be f32, f16 or bf16, not b4/, GATE_A],
      [file, (_h, m) => editJson(m, 'lowbit.tensors', (t) => { (t[GATE_A] as { shape: number[] }).shape = [5, 64]; }), /shape \[5, 64\] should be \[4, 64\]/, GATE_A],
      [file, (h) => { delete h[GATE_A]; }, /tensor is missing/, GATE_A],
      [file, (_h, m) => editJson(m, 'lowbit.tensors', (t) => { t['model.layers.3.mlp.up_proj.weight'] = t['model.layers.2.mlp.up_proj.weight']; }), /not a tensor of this Llama config/, 'model.layers.3.mlp.up_proj.weight'],
      [plain, (_h, m) => { m['lowbit.version'] = '2'; m['lowbit.sharp'] = '{"schedule": []}'; }, /mats: expected an array/, 'lowbit.sharp'],
    ];
    for (const [from, edit, pattern, key] of cases) formatError(() => openModel(variant(from, edit)).close(), pattern, key);
  });
});
