import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ByteWriter } from '../../lib/io/byte-writer';
import { openSafetensors } from '../../lib/io/safetensors';
import { type SafetensorsTensorInput, writeSafetensors } from '../../lib/io/safetensors-writer';
import { openShardedIndex } from '../../lib/io/shards';
import type { TensorDType } from '../../lib/io/types';
import { makeTempDir, removeDir } from '../helpers/models';
import { formatError } from '../helpers/errors';

/** A safetensors file with a hand-written header (and `dataBytes` zero bytes of data). */
function rawSafetensors(file: string, header: unknown, dataBytes: number): string {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  const bytes = new ByteWriter().u64(Buffer.byteLength(json)).utf8(json).raw(new Uint8Array(dataBytes)).bytes();
  fs.writeFileSync(file, bytes);
  return file;
}

describe('io/safetensors', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('safetensors');
  });
  after(() => removeDir(dir));

  const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
  const dtypes: [TensorDType, string, number][] = [
    ['f64', 'F64', 8],
    ['f32', 'F32', 4],
    ['f16', 'F16', 2],
    ['bf16', 'BF16', 2],
    ['i64', 'I64', 8],
    ['i32', 'I32', 4],
    ['i16', 'I16', 2],
    ['i8', 'I8', 1],
    ['u8', 'U8', 1],
  ];

  it('writes and reads every dtype, scalars and empty tensors, with __metadata__', () => {
    const tensors: SafetensorsTensorInput[] = dtypes.map(([dtype, , size], i) => ({ name: `t.${dtype}`, dtype, shape: [3, i + 1], data: bytes(3 * (i + 1) * size, i) }));
    tensors.push({ name: 'scalar', dtype: 'f32', shape: [], data: bytes(4, 9) });
    tensors.push({ name: 'empty', dtype: 'f32', shape: [0, 4], data: new Uint8Array(0) });
    tensors.push({ name: '__proto__', dtype: 'u8', shape: [1], data: bytes(1, 1) });
    const file = path.join(dir, 'all.safetensors');
    writeSafetensors(file, tensors, { format: 'pt', note: 'héllo' });
    const raw = fs.readFileSync(file);
    const headerLength = Number(raw.readBigUInt64LE(0));
    assert.equal((8 + headerLength) % 8, 0, 'data section is 8-byte aligned');
    const header = JSON.parse(raw.subarray(8, 8 + headerLength).toString());
    assert.deepEqual(header.__metadata__, { format: 'pt', note: 'héllo' });
    assert.deepEqual(header['t.f32'].dtype, 'F32');
    const opened = openSafetensors(file);
    try {
      assert.deepEqual([...opened.metadata], [['format', 'pt'], ['note', 'héllo']]);
      assert.equal(opened.container, 'safetensors');
      for (const tensor of tensors) {
        const info = opened.tensors.get(tensor.name)!;
        assert.equal(info.dtype, tensor.dtype);
        assert.deepEqual(info.shape, tensor.shape);
        assert.deepEqual(info.read(), tensor.data);
      }
      // tensors lie back to back, in order, exactly filling the data section (the format allows no gaps)
      const spans = tensors.map((t) => header[t.name].data_offsets as number[]);
      spans.forEach((span, i) => assert.equal(span[0], i === 0 ? 0 : spans[i - 1][1]));
      assert.equal(8 + headerLength + spans.at(-1)![1], raw.length);
    } finally {
      opened.close();
    }
  });

  it('streams tensors: each lazy tensor is produced when it is written, in order', () => {
    const order: string[] = [];
    const sizesOnDisk: number[] = [];
    const tensors: SafetensorsTensorInput[] = ['a', 'b', 'c'].map((name) => ({
      name,
      dtype: 'f32',
      shape: [4],
      data: () => {
        order.push(name);
        sizesOnDisk.push(fs.statSync(path.join(dir, 'lazy.safetensors')).size);
        return bytes(16, name.charCodeAt(0));
      },
    }));
    writeSafetensors(path.join(dir, 'lazy.safetensors'), tensors);
    assert.deepEqual(order, ['a', 'b', 'c']);
    // header first, then each tensor reaches the disk before the next is produced
    assert.deepEqual(sizesOnDisk, [sizesOnDisk[0], sizesOnDisk[0] + 16, sizesOnDisk[0] + 32]);
  });

  it('writer argument errors', () => {
    const file = path.join(dir, 'bad-write.safetensors');
    assert.throws(() => writeSafetensors(file, [{ name: 'x', dtype: 'q8_0', shape: [32], data: new Uint8Array(34) }]), /cannot store dtype q8_0/);
    assert.throws(() => writeSafetensors(file, [{ name: 'x', dtype: 'f32', shape: [2], data: new Uint8Array(4) }]), RangeError);
    assert.throws(() => writeSafetensors(file, [{ name: '__metadata__', dtype: 'f32', shape: [1], data: new Uint8Array(4) }]), RangeError);
    assert.equal(fs.existsSync(file), false);
  });

  it('sharded checkpoints through an index.json', () => {
    const shardDir = path.join(dir, 'sharded');
    fs.mkdirSync(shardDir);
    writeSafetensors(path.join(shardDir, 'a.safetensors'), [{ name: 'x', dtype: 'f32', shape: [2], data: bytes(8, 1) }]);
    writeSafetensors(path.join(shardDir, 'b.safetensors'), [{ name: 'y', dtype: 'u8', shape: [3], data: bytes(3, 2) }]);
    const index = (weightMap: Record<string, string>, name = 'model.safetensors.index.json') => {
      const file = path.join(shardDir, name);
      fs.writeFileSync(file, JSON.stringify({ metadata: { total_size: 11 }, weight_map: weightMap }));
      return file;
    };
    const sharded = openShardedIndex(index({ x: 'a.safetensors', y: 'b.safetensors' }), openSafetensors);
    try {
      assert.deepEqual([...sharded.tensors.keys()], ['x', 'y']);
      assert.deepEqual(sharded.tensors.get('y')!.read(), bytes(3, 2));
      assert.equal(sharded.metadata.get('total_size'), 11);
    } finally {
      sharded.close();
    }
    formatError(() => openShardedIndex(index({ x: 'b.safetensors' }), openSafetensors), /not found in shard b.safetensors/, 'x');
    formatError(() => openShardedIndex(index({ x: '../a.safetensors' }), openSafetensors), /file name in the same folder/, 'x');
    formatError(() => openShardedIndex(index({ x: 'missing.safetensors' }), openSafetensors), /cannot open/);
    formatError(() => openShardedIndex(index({ x: 'model.safetensors.index.json' }), openSafetensors), /itself an index/, 'x');
    writeSafetensors(path.join(shardDir, 'c.safetensors'), [{ name: 'x', dtype: 'f32', shape: [2], data: bytes(8, 1) }]);
    formatError(() => openShardedIndex(index({ x: 'a.safetensors', y: 'c.safetensors' }), openSafetensors), /another shard/, 'x');
    fs.writeFileSync(path.join(shardDir, 'broken.index.json'), '{"weight_map": ');
    formatError(() => openShardedIndex(path.join(shardDir, 'broken.index.json'), openSafetensors), /invalid JSON/);
    fs.writeFileSync(path.join(shardDir, 'nomap.index.json'), '{}');
    formatError(() => openShardedIndex(path.join(shardDir, 'nomap.index.json'), openSafetensors), /missing/, 'weight_map');
  });

  describe('bad input', () => {
    const file = () => path.join(dir, 'bad.safetensors');
    const entry = (over: Record<string, unknown> = {}) => ({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16], ...over });

    it('header length past the end, truncation at many offsets', () => {
      fs.writeFileSync(file(), new ByteWriter().u64(1000).utf8('{}').bytes());
      formatError(() => openSafetensors(file()), /truncated/, 'header');
      fs.writeFileSync(file(), new ByteWriter().u64(2n ** 64n - 1n).bytes());
      formatError(() => openSafetensors(file()), /too large/, 'header length');
      fs.writeFileSync(file(), new ByteWriter().u64(200_000_000).bytes());
      formatError(() => openSafetensors(file()), /header of 200000000 bytes is too large/, 'header length');
      writeSafetensors(file(), [{ name: 'w', dtype: 'f32', shape: [16, 16], data: bytes(1024, 3) }, { name: 'v', dtype: 'f32', shape: [8], data: bytes(32, 4) }]);
      const whole = fs.readFileSync(file());
      for (let length = 0; length < whole.length; length += length < 160 ? 1 : 37) {
        fs.writeFileSync(file(), whole.subarray(0, length));
        formatError(() => openSafetensors(file()));
      }
    });

    it('JSON that is invalid, not UTF-8 or not an object', () => {
      formatError(() => openSafetensors(rawSafetensors(file(), '{"a": ', 0)), /invalid JSON/, 'header');
      formatError(() => openSafetensors(rawSafetensors(file(), '[1, 2]', 0)), /not a JSON object/, 'header');
      const bad = new ByteWriter().u64(4).raw(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])).bytes();
      fs.writeFileSync(file(), bad);
      formatError(() => openSafetensors(file()), /UTF-8/, 'header');
    });

    it('entries: unsupported dtypes, bad shapes, offsets past the end, sizes that do not match, overlaps', () => {
      for (const dtype of ['BOOL', 'U16', 'U32', 'U64', 'F8_E4M3', 'f32', 7]) {
        formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ dtype }) }, 16)), /dtype/, 'w');
      }
      for (const shape of [[-1, 2], [1.5], ['2'], 3, [2 ** 53, 2]]) {
        formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ shape }) }, 16)), /shape|safe integer/, 'w');
      }
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }) }, 16)), /overflows 2\^53/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ shape: [2 ** 20, 2 ** 20] }) }, 16)), /exceeds/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry() }, 15)), /run past/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ data_offsets: [2 ** 60, 2 ** 60 + 16] }) }, 16)), /data_offsets|run past/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ data_offsets: [8, 4] }) }, 16)), /begin <= end/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ data_offsets: [0] }) }, 16)), /data_offsets/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry({ data_offsets: [0, 12] }) }, 16)), /needs 16/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { w: entry(), v: entry({ shape: [2], data_offsets: [8, 16] }) }, 16)), /overlap/);
      formatError(() => openSafetensors(rawSafetensors(file(), { w: 'F32' }, 16)), /must be an object/, 'w');
      formatError(() => openSafetensors(rawSafetensors(file(), { __metadata__: { a: 1 } }, 0)), /must be a string/, '__metadata__');
      formatError(() => openSafetensors(rawSafetensors(file(), { __metadata__: [] }, 0)), /object of strings/, '__metadata__');
    });
  });
});
