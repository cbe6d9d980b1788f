import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DisposedError, LowbitFormatError } from '../../lib/errors';
import { ByteWriter } from '../../lib/io/byte-writer';
import { ByteCursor } from '../../lib/io/cursor';
import { BufferSource, FileSource } from '../../lib/io/source';
import { makeTempDir, removeDir } from '../helpers/models';

describe('io/cursor and io/source', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('cursor');
  });
  after(() => removeDir(dir));

  it('reads little-endian values of every width', () => {
    const bytes = new ByteWriter().u8(0xfe).i8(-2).u16(0xbeef).i16(-3).u32(0xdeadbeef).i32(-4).u64(2n ** 63n).i64(-5n).f32(1.5).f64(-0.25).f64be(3).bytes();
    const c = new ByteCursor(new BufferSource('mem', bytes));
    assert.deepEqual(
      [c.u8(), c.i8(), c.u16(), c.i16(), c.u32(), c.i32(), c.u64(), c.i64(), c.f32(), c.f64(), c.f64be()],
      [0xfe, -2, 0xbeef, -3, 0xdeadbeef, -4, 2n ** 63n, -5n, 1.5, -0.25, 3],
    );
    assert.equal(c.remaining, 0);
  });

  it('refills its window across chunk boundaries when reading a file', () => {
    const file = path.join(dir, 'big.bin');
    const out = new ByteWriter();
    for (let i = 0; i < 70_000; i++) out.u32(i);
    fs.writeFileSync(file, out.bytes());
    const source = FileSource.open(file);
    try {
      const c = new ByteCursor(source, 1);
      c.seek(3); // unaligned: some values straddle window edges
      c.skip(1);
      for (let i = 1; i < 70_000; i++) assert.equal(c.u32(), i);
      assert.equal(c.remaining, 0);
      c.seek(0);
      assert.equal(c.bytes(200_000).length, 200_000); // larger than a window: read directly
    } finally {
      source.close();
    }
  });

  it('rejects reads past the end with LowbitFormatError naming the file and the key being read', () => {
    const c = new ByteCursor(new BufferSource('tiny.bin', Uint8Array.from([1, 2, 3])));
    c.u16();
    assert.throws(
      () => c.within('general.name', () => c.u32()),
      (error: unknown) => error instanceof LowbitFormatError && error.file === 'tiny.bin' && error.key === 'general.name' && /truncated/.test(error.message),
    );
    assert.equal(c.offset, 2); // nothing consumed by the failed read
    assert.throws(() => c.seek(4), LowbitFormatError);
    assert.throws(() => c.bytes(-1), LowbitFormatError);
    assert.throws(() => c.skip(2 ** 60), LowbitFormatError);
  });

  it('u64Safe rejects values above 2^53', () => {
    const c = new ByteCursor(new BufferSource('m', new ByteWriter().u64(2n ** 53n - 1n).u64(2n ** 53n).bytes()));
    assert.equal(c.u64Safe('count'), 2 ** 53 - 1);
    assert.throws(() => c.u64Safe('count'), /count 9007199254740992 is too large/);
  });

  it('FileSource: missing files are format errors; reads after close are DisposedError', () => {
    assert.throws(() => FileSource.open(path.join(dir, 'nope.bin')), LowbitFormatError);
    assert.throws(() => FileSource.open(dir), LowbitFormatError);
    const file = path.join(dir, 'f.bin');
    fs.writeFileSync(file, Uint8Array.from([1, 2, 3, 4]));
    const source = FileSource.open(file);
    assert.deepEqual([...source.read(1, 2)], [2, 3]);
    assert.throws(() => source.read(3, 2), LowbitFormatError);
    source.close();
    source.close();
    assert.throws(() => source.read(0, 1), DisposedError);
  });
});
