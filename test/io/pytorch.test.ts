import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ByteWriter } from '../../lib/io/byte-writer';
import { PickleTuple, type UnpicklePolicy, unpickle } from '../../lib/io/pickle';
import { openPytorchCheckpoint } from '../../lib/io/pytorch';
import { BufferSource, FileSource } from '../../lib/io/source';
import { readZipEntries } from '../../lib/io/zip';
import type { TensorDType } from '../../lib/io/types';
import { makeTempDir, removeDir } from '../helpers/models';
import { PickleWriter, type TorchTensorSpec, stateDictPickle, writePytorchCheckpoint, writeTorchZip, writeZip } from '../helpers/pytorch-writer';
import { formatError } from '../helpers/errors';

/**
 * What CPython 3.11's `pickle.Pickler(protocol=2)` writes for a torch state dict (torch's own
 * classes stood in for by same-named fakes): embed_tokens and lm_head sharing storage "0", a norm
 * in storage "1", and the `_metadata` the OrderedDict of `state_dict()` carries.
 */
const CPYTHON_STATE_DICT_PICKLE =
  '800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858190000006d6f64656c2e656d6265645f746f6b656e732e7765' +
  '69676874710263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72616765710463746f' +
  '7263680a466c6f617453746f726167650a71055801000000307106580300000063707571074b06747108514b004b034b028671094b024b0186710a89' +
  '68002952710b74710c52710d580e0000006c6d5f686561642e776569676874710e6803282868046805680668074b0674710f514b004b034b02867110' +
  '4b024b018671118968002952711274711352711458110000006d6f64656c2e6e6f726d2e77656967687471156803282868046805580100000031711' +
  '668074b02747117514b004b028571184b018571198968002952711a74711b52711c757d711d58090000005f6d65746164617461711e68002952711f' +
  '580000000071207d7121580700000076657273696f6e71224b01737373622e';

describe('io/pytorch', () => {
  let dir: string;
  before(() => {
    dir = makeTempDir('pytorch');
  });
  after(() => removeDir(dir));

  const file = (name = 'pytorch_model.bin') => path.join(dir, name);
  const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
  const storages = new Map([
    ['0', bytes(24, 1)],
    ['1', bytes(8, 2)],
  ]);

  describe('genuine torch.save layout', () => {
    it('the test writer emits exactly what CPython pickles, and the reader rebuilds it', () => {
      const { pickle } = stateDictPickle([
        { name: 'model.embed_tokens.weight', dtype: 'f32', shape: [3, 2], data: storages.get('0')!, storageKey: '0' },
        { name: 'lm_head.weight', dtype: 'f32', shape: [3, 2], data: storages.get('0')!, storageKey: '0' },
        { name: 'model.norm.weight', dtype: 'f32', shape: [2], data: storages.get('1')!, storageKey: '1' },
      ]);
      assert.equal(Buffer.from(pickle).toString('hex'), CPYTHON_STATE_DICT_PICKLE);
      writeTorchZip(file(), Buffer.from(CPYTHON_STATE_DICT_PICKLE, 'hex'), storages);
      const checkpoint = openPytorchCheckpoint(file());
      try {
        assert.equal(checkpoint.container, 'pytorch');
        assert.deepEqual([...checkpoint.tensors.keys()], ['model.embed_tokens.weight', 'lm_head.weight', 'model.norm.weight']);
        const embed = checkpoint.tensors.get('model.embed_tokens.weight')!;
        assert.deepEqual(embed.shape, [3, 2]);
        assert.equal(embed.dtype, 'f32');
        assert.deepEqual(embed.read(), storages.get('0'));
        assert.deepEqual(checkpoint.tensors.get('lm_head.weight')!.read(), storages.get('0'));
        assert.deepEqual(checkpoint.tensors.get('model.norm.weight')!.read(), storages.get('1'));
      } finally {
        checkpoint.close();
      }
    });

    const dtypes: [TensorDType, number][] = [['f32', 4], ['f16', 2], ['bf16', 2], ['f64', 8], ['i64', 8], ['i32', 4], ['i16', 2], ['i8', 1], ['u8', 1]];
    const specs: TorchTensorSpec[] = dtypes.map(([dtype, size], i) => ({ name: `t.${dtype}`, dtype, shape: [2, 3], data: bytes(6 * size, i) }));

    for (const variant of [
      { label: 'stored', options: {} },
      { label: 'ZIP64 records', options: { zip64: true } },
      { label: 'deflated entries', options: { deflate: true } },
      { label: 'another top folder', options: { root: 'my_model' } },
      { label: 'nn.Parameters', options: { asParameters: true } },
      { label: 'state dict under "state_dict"', options: { wrapIn: 'state_dict' } },
      { label: 'state dict under "model"', options: { wrapIn: 'model', zip64: true, deflate: true } },
    ]) {
      it(`round-trips every dtype: ${variant.label}`, () => {
        writePytorchCheckpoint(file(), specs, variant.options);
        const checkpoint = openPytorchCheckpoint(file());
        try {
          assert.deepEqual([...checkpoint.tensors.keys()], specs.map((s) => s.name));
          for (const spec of specs) {
            const tensor = checkpoint.tensors.get(spec.name)!;
            assert.equal(tensor.dtype, spec.dtype);
            assert.deepEqual(tensor.shape, spec.shape);
            assert.equal(tensor.byteLength, spec.data.length);
            assert.deepEqual(tensor.read(), spec.data);
          }
        } finally {
          checkpoint.close();
        }
      });
    }

    it('data records are 64-byte aligned, as torch writes them', () => {
      writePytorchCheckpoint(file(), specs);
      const source = FileSource.open(file());
      try {
        const entries = readZipEntries(source);
        specs.forEach((spec, i) => assert.equal(entries.get(`archive/data/${i}`)!.dataOffset % 64, 0, spec.name));
        assert.equal(entries.get('archive/data.pkl')!.dataOffset % 64, 0);
      } finally {
        source.close();
      }
    });

    it('views: storage offsets, size-1 dims with any stride; non-contiguous tensors are refused by name', () => {
      const storage = bytes(40, 5); // 10 floats
      const view = (over: Partial<TorchTensorSpec>): TorchTensorSpec => ({ name: 'w', dtype: 'f32', shape: [2, 2], data: storage, storageKey: '0', ...over });
      writePytorchCheckpoint(file(), [view({ name: 'tail', storageOffset: 6 }), view({ name: 'col', shape: [4, 1], stride: [1, 7] })]);
      const checkpoint = openPytorchCheckpoint(file());
      try {
        assert.deepEqual(checkpoint.tensors.get('tail')!.read(), storage.subarray(24, 40));
        assert.deepEqual(checkpoint.tensors.get('col')!.read(), storage.subarray(0, 16));
      } finally {
        checkpoint.close();
      }
      writePytorchCheckpoint(file(), [view({ name: 'transposed', stride: [1, 2] })]);
      formatError(() => openPytorchCheckpoint(file()), /not contiguous row-major/, 'transposed');
      writePytorchCheckpoint(file(), [view({ name: 'overrun', storageOffset: 7 })]);
      formatError(() => openPytorchCheckpoint(file()), /overrun storage/, 'overrun');
      writePytorchCheckpoint(file(), [view({ name: 'short', storageNumel: 20 })]);
      formatError(() => openPytorchCheckpoint(file()), /holds 40 bytes, needs 80/, 'short');
      writePytorchCheckpoint(file(), [view({ name: 'big', shape: [2 ** 30, 2 ** 30, 2 ** 30], stride: [1, 1, 1] })]);
      formatError(() => openPytorchCheckpoint(file()), /overflows|exceeds/, 'big');
    });
  });

  describe('the unpickler on plain data', () => {
    const refuseAll: UnpicklePolicy = {
      global: (module, name, fail) => {
        throw fail(`GLOBAL ${module}.${name}`);
      },
      reduce: (_callable, _args, fail) => {
        throw fail('REDUCE');
      },
      build: (_object, _state, fail) => {
        throw fail('BUILD');
      },
      persistentLoad: (_pid, fail) => {
        throw fail('PERSID');
      },
    };
    const load = (bytes: Uint8Array) => unpickle(new BufferSource('mem.pkl', bytes), refuseAll, 'mem.pkl');

    it('integers of every encoding, as CPython writes them', () => {
      const values = [0, 255, 256, 65535, 65536, -1, -(2 ** 31), 2 ** 31 - 1, 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1, 2n ** 53n + 1n, -(2n ** 63n), 2n ** 64n - 1n];
      const w = new PickleWriter().proto(2).raw(0x5d).mark();
      values.forEach((v) => w.int(v));
      assert.deepEqual(load(w.raw(0x65).stop().bytes()), values);
    });

    it('floats, strings, bytes, None, bools, tuples, lists and dicts, memo references', () => {
      const float = new ByteWriter().u8(0x47).f64be(-1.5).bytes();
      const w = new PickleWriter().proto(3).emptyDict().mark();
      w.string('f').raw(...float);
      w.string('s').raw(0x8c, 2, 0xc3, 0xa9); // SHORT_BINUNICODE "é"
      w.string('b').raw(0x43, 2, 1, 2); // SHORT_BINBYTES
      w.string('py2').raw(0x55, 1, 0xe9); // SHORT_BINSTRING, latin-1
      w.string('t').tuple(3, () => w.none().bool(true).bool(false));
      w.string('l').raw(0x5d).int(1).raw(0x61).mark().int(2).int(3).raw(0x65);
      w.string('again').get(0); // the dict itself, by memo
      const value = load(w.raw(0x75).stop().bytes());
      assert.ok(value instanceof Map);
      assert.equal(value.get('f'), -1.5);
      assert.equal(value.get('s'), 'é');
      assert.deepEqual(value.get('b'), Uint8Array.from([1, 2]));
      assert.equal(value.get('py2'), 'é');
      assert.deepEqual((value.get('t') as PickleTuple).items, [null, true, false]);
      assert.deepEqual(value.get('l'), [1, 2, 3]);
      assert.equal(value.get('again'), value);
    });
  });

  describe('malicious and malformed pickles: refused by name, nothing executed', () => {
    const canary = () => path.join(dir, 'pwned');
    const open = (pickle: Uint8Array) => {
      writeTorchZip(file(), pickle, storages);
      return () => openPytorchCheckpoint(file());
    };
    const p = () => new PickleWriter().proto(2);

    afterEach(() => assert.equal(fs.existsSync(canary()), false, 'a pickle ran code'));

    it('GLOBAL os.system / posix.system / builtins.eval / subprocess, with or without REDUCE', () => {
      const command = `touch ${canary()}`;
      for (const [module, name] of [['os', 'system'], ['posix', 'system'], ['builtins', 'eval'], ['__builtin__', 'eval'], ['subprocess', 'check_output'], ['torch', 'load']]) {
        const pickle = p().global(module, name).string(command).tuple(1, () => {}).raw(0x52).stop().bytes();
        formatError(open(pickle), new RegExp(`GLOBAL ${module}\\.${name} is not allowed`), 'archive/data.pkl');
      }
      // protocol 4's STACK_GLOBAL takes module and name from the stack
      const stackGlobal = p().string('os').string('system').raw(0x93).string(command).raw(0x85, 0x52, 0x2e).bytes();
      formatError(open(stackGlobal), /GLOBAL os\.system is not allowed/);
    });

    it('REDUCE on allowed non-callables or with bad arguments', () => {
      const reduceOnStorage = p().global('torch', 'FloatStorage').tuple(0, () => {}).raw(0x52).stop().bytes();
      formatError(open(reduceOnStorage), /REDUCE on torch\.FloatStorage is not allowed/);
      const reduceOnInt = p().int(5).tuple(0, () => {}).raw(0x52).stop().bytes();
      formatError(open(reduceOnInt), /REDUCE on a non-callable is not allowed/);
      const w = p().global('torch._utils', '_rebuild_tensor_v2');
      const badArgs = w.tuple(1, () => w.int(1)).raw(0x52).stop().bytes();
      formatError(open(badArgs), /_rebuild_tensor_v2 needs/);
      const argsNotTuple = p().global('collections', 'OrderedDict').int(1).raw(0x52).stop().bytes();
      formatError(open(argsNotTuple), /not a tuple/);
    });

    it('opcodes that instantiate classes or are not binary protocols', () => {
      for (const [opcode, name] of [[0x81, 'NEWOBJ'], [0x92, 'NEWOBJ_EX'], [0x69, 'INST'], [0x6f, 'OBJ'], [0x82, 'EXT1'], [0x50, 'PERSID'], [0x49, 'INT'], [0x70, 'PUT'], [0x8f, 'EMPTY_SET'], [0x97, 'NEXT_BUFFER'], [0xff, '0xff']] as const) {
        formatError(open(p().raw(opcode).stop().bytes()), new RegExp(`opcode ${name} at offset 2 is not allowed`));
      }
      formatError(open(new PickleWriter().raw(0x4e, 0x2e).bytes()), /no PROTO/);
      formatError(open(new PickleWriter().proto(1).none().stop().bytes()), /protocol 1 is not supported/);
    });

    it('persistent ids, BUILD targets, memo and stack errors', () => {
      formatError(open(p().string('storage').raw(0x51).stop().bytes()), /persistent id must be/);
      const w = p();
      const notAStorageType = w.tuple(5, () => w.string('storage').global('collections', 'OrderedDict').string('0').string('cpu').int(6)).raw(0x51).stop().bytes();
      formatError(open(notAStorageType), /names no storage type/);
      const buildOnList = p().raw(0x5d).none().build().stop().bytes();
      formatError(open(buildOnList), /BUILD is only allowed on an OrderedDict/);
      formatError(open(p().get(7).stop().bytes()), /memo entry 7 was never stored/);
      formatError(open(p().raw(0x30).stop().bytes()), /stack underflow/);
      formatError(open(p().raw(0x74).stop().bytes()), /no MARK/);
      formatError(open(p().raw(0x5d).mark().raw(0x65, 0x65).stop().bytes()), /no MARK/);
      formatError(open(p().none().none().raw(0x73).stop().bytes()), /stack underflow|not a dict/);
      formatError(open(p().emptyDict().raw(0x5d).none().raw(0x73).stop().bytes()), /dict keys/);
      formatError(open(p().raw(0x58, 0xff, 0xff, 0xff, 0x7f).bytes()), /truncated/);
      formatError(open(p().raw(0x8b, 0xff, 0xff, 0xff, 0xff).bytes()), /negative LONG4/);
      const hugeLong = new ByteWriter().u8(0x80).u8(2).u8(0x8b).u32(1 << 20).raw(new Uint8Array(1 << 20).fill(0x7f)).u8(0x2e).bytes();
      formatError(open(hugeLong), /integer of 1048576 bytes is too large/);
      // LONG1 values, positive and negative, beyond 2^53 become bigints (and are rejected as sizes)
      const huge = p().emptyDict().string('x').raw(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x80).raw(0x73).stop().bytes();
      formatError(open(huge), /not a tensor/, 'x');
      formatError(open(p().none().bytes()), /truncated/); // no STOP
    });

    it('a checkpoint that is not a state dict, or names a missing storage', () => {
      formatError(open(p().raw(0x5d).stop().bytes()), /not a dict/);
      formatError(open(p().emptyDict().string('w').int(3).raw(0x73).stop().bytes()), /not a tensor/, 'w');
      const { pickle } = stateDictPickle([{ name: 'w', dtype: 'f32', shape: [2], data: bytes(8, 1), storageKey: '9' }]);
      formatError(open(pickle), /storage 9 is missing/, 'w');
    });
  });

  describe('ZIP problems', () => {
    const zip = (entries: { name: string; data: Uint8Array }[], options = {}) => {
      writeZip(file(), entries, options);
      return () => openPytorchCheckpoint(file());
    };
    const pickle = stateDictPickle([{ name: 'w', dtype: 'u8', shape: [4], data: bytes(4, 1) }]).pickle;

    it('no end record, truncation at many offsets', () => {
      writePytorchCheckpoint(file(), [{ name: 'w', dtype: 'f32', shape: [64], data: bytes(256, 1) }]);
      const whole = fs.readFileSync(file());
      for (let length = 0; length < whole.length; length += 7) {
        fs.writeFileSync(file(), whole.subarray(0, length));
        formatError(() => openPytorchCheckpoint(file()));
      }
      fs.writeFileSync(file(), Buffer.concat([whole, Buffer.from('trailing')]));
      formatError(() => openPytorchCheckpoint(file()), /no end of central directory/);
    });

    it('entry layout: missing data.pkl, two roots, unsupported compression, encryption, big-endian', () => {
      formatError(zip([{ name: 'archive/data/0', data: bytes(4, 1) }]), /found 0/);
      formatError(zip([{ name: 'a/data.pkl', data: pickle }, { name: 'b/data.pkl', data: pickle }]), /found 2/);
      formatError(zip([{ name: 'archive/data.pkl', data: pickle }, { name: 'archive/byteorder', data: Buffer.from('big') }]), /big-endian/, 'archive/byteorder');
      writeZip(file(), [{ name: 'archive/data.pkl', data: pickle }, { name: 'archive/data/0', data: bytes(4, 1) }]);
      const raw = fs.readFileSync(file());
      const central = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      const patched = (at: number, value: number) => {
        const copy = Buffer.from(raw);
        copy.writeUInt16LE(value, central + at);
        fs.writeFileSync(file(), copy);
        return () => openPytorchCheckpoint(file());
      };
      formatError(patched(10, 12), /compression method 12 is not supported/, 'archive/data/0');
      formatError(patched(8, 1), /encrypted/, 'archive/data/0');
    });

    it('sizes and offsets that point outside the file or contradict the data', () => {
      writeZip(file(), [{ name: 'archive/data.pkl', data: pickle }, { name: 'archive/data/0', data: bytes(4, 1) }]);
      const raw = fs.readFileSync(file());
      const central = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      const end = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
      const patched = (at: number, value: number) => {
        const copy = Buffer.from(raw);
        copy.writeUInt32LE(value, at);
        fs.writeFileSync(file(), copy);
        return () => openPytorchCheckpoint(file());
      };
      formatError(patched(central + 20, 1 << 30), /differing sizes|runs into/);
      formatError(patched(central + 42, raw.length - 10), /outside|runs into/, 'archive/data/0');
      formatError(patched(central + 42, 3), /bad local header signature/, 'archive/data/0');
      formatError(patched(end + 16, raw.length), /runs past the end|bad signature|truncated/);
      formatError(patched(end + 12, 0x7fffffff), /runs past the end/);
      const entryCount = Buffer.from(raw);
      entryCount.writeUInt16LE(0xfff0, end + 10);
      fs.writeFileSync(file(), entryCount);
      formatError(() => openPytorchCheckpoint(file()), /exceeds/, 'central directory');
    });

    it('deflated entries that do not inflate to their stated size', () => {
      writeZip(file(), [{ name: 'archive/data.pkl', data: pickle }], { deflate: true });
      const raw = fs.readFileSync(file());
      const central = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      const copy = Buffer.from(raw);
      copy.writeUInt32LE(pickle.length + 1, central + 24);
      fs.writeFileSync(file(), copy);
      formatError(() => openPytorchCheckpoint(file()), /inflates to|cannot inflate/, 'archive/data.pkl');
      const bomb = Buffer.from(raw);
      bomb.writeUInt32LE(0xfffffff0, central + 24);
      fs.writeFileSync(file(), bomb);
      formatError(() => openPytorchCheckpoint(file()), /claims/, 'archive/data.pkl');
      const garbage = Buffer.from(raw);
      garbage.fill(0xff, 64 + 4, 64 + 12); // inside the deflate stream of data.pkl
      fs.writeFileSync(file(), garbage);
      formatError(() => openPytorchCheckpoint(file()));
    });

    it('a ZIP64 extra field missing a saturated value', () => {
      writeZip(file(), [{ name: 'archive/data.pkl', data: pickle }], { zip64: true });
      const raw = fs.readFileSync(file());
      const central = raw.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      const copy = Buffer.from(raw);
      copy.writeUInt16LE(8, central + 46 + 'archive/data.pkl'.length + 2); // extra field length 24 → 8
      fs.writeFileSync(file(), copy);
      formatError(() => openPytorchCheckpoint(file()), /lacks compressedSize/);
    });
  });

  it('ByteWriter-made raw pickles still need the torch layout around them', () => {
    const raw = new ByteWriter().u8(0x80).u8(2).u8(0x7d).u8(0x2e).bytes();
    writeTorchZip(file(), raw, new Map());
    const checkpoint = openPytorchCheckpoint(file());
    assert.equal(checkpoint.tensors.size, 0);
    checkpoint.close();
  });
});
