/**
 * Test-only writer of genuine `torch.save` checkpoints: a ZIP (`<root>/data.pkl`, `<root>/byteorder`,
 * `<root>/data/<key>`, `<root>/version`) whose pickle is protocol 2 as CPython's pickler writes it
 * for a state dict: an OrderedDict of `torch._utils._rebuild_tensor_v2(storage, offset, size,
 * stride, requires_grad, OrderedDict())`, storages as persistent ids
 * `('storage', torch.FloatStorage, key, 'cpu', numel)`, memoised with BINPUT/BINGET.
 * Data records are aligned to 64 bytes with an extra field, as PyTorch's writer does.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { ByteWriter } from '../../lib/io/byte-writer';
import { dtypeLayout, tensorByteLength } from '../../lib/io/dtypes';
import type { TensorDType } from '../../lib/io/types';

/** Emits pickle opcodes, memoising globals and strings the way CPython's pickler does. */
export class PickleWriter {
  private readonly out = new ByteWriter();
  private memoSize = 0;
  private readonly memoByKey = new Map<string, number>();

  bytes(): Uint8Array {
    return this.out.bytes().slice();
  }

  /** Any raw opcode bytes (for hand-made malicious pickles). */
  raw(...bytes: number[]): this {
    this.out.raw(Uint8Array.from(bytes));
    return this;
  }

  proto(version = 2): this {
    return this.raw(0x80, version);
  }

  /** BINPUT (or LONG_BINPUT) of the top of the stack; returns the memo index. */
  put(): number {
    const index = this.memoSize++;
    if (index < 256) this.raw(0x71, index);
    else this.raw(0x72).out.u32(index);
    return index;
  }

  get(index: number): this {
    if (index < 256) return this.raw(0x68, index);
    this.raw(0x6a).out.u32(index);
    return this;
  }

  /** Pushes a memoised value, or builds it with `emit` and memoises it under `key`. */
  private memoised(key: string, emit: () => void): this {
    const known = this.memoByKey.get(key);
    if (known !== undefined) return this.get(known);
    emit();
    this.memoByKey.set(key, this.put());
    return this;
  }

  global(module: string, name: string): this {
    return this.memoised(`global:${module}.${name}`, () => {
      this.raw(0x63).out.utf8(`${module}\n${name}\n`);
    });
  }

  string(text: string): this {
    return this.memoised(`str:${text}`, () => {
      const bytes = new TextEncoder().encode(text);
      this.raw(0x58).out.u32(bytes.length).raw(bytes);
    });
  }

  /** CPython's save_long for protocol 2. */
  int(value: number | bigint): this {
    const n = BigInt(value);
    if (n >= 0n && n <= 0xffn) return this.raw(0x4b, Number(n));
    if (n >= 0n && n <= 0xffffn) {
      this.raw(0x4d).out.u16(Number(n));
      return this;
    }
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      this.raw(0x4a).out.i32(Number(n));
      return this;
    }
    const bytes: number[] = [];
    let rest = n;
    do {
      bytes.push(Number(rest & 0xffn));
      rest >>= 8n;
    } while (!(rest === 0n && (bytes.at(-1) as number) < 0x80) && !(rest === -1n && (bytes.at(-1) as number) >= 0x80));
    return this.raw(0x8a, bytes.length, ...bytes);
  }

  bool(value: boolean): this {
    return this.raw(value ? 0x88 : 0x89);
  }

  none(): this {
    return this.raw(0x4e);
  }

  mark(): this {
    return this.raw(0x28);
  }

  /** A tuple of the values `emitItems` pushes (TUPLE1-3 or MARK ... TUPLE), memoised. */
  tuple(count: number, emitItems: () => void): this {
    if (count === 0) return this.raw(0x29);
    if (count > 3) this.mark();
    emitItems();
    this.raw(count > 3 ? 0x74 : 0x84 + count);
    this.put();
    return this;
  }

  intTuple(values: readonly number[]): this {
    return this.tuple(values.length, () => values.forEach((v) => this.int(v)));
  }

  emptyDict(): this {
    this.raw(0x7d);
    this.put();
    return this;
  }

  /** REDUCE (callable and args already pushed), memoised. */
  reduce(): this {
    this.raw(0x52);
    this.put();
    return this;
  }

  build(): this {
    return this.raw(0x62);
  }

  setItems(): this {
    return this.raw(0x75);
  }

  persistentId(): this {
    return this.raw(0x51);
  }

  stop(): this {
    return this.raw(0x2e);
  }
}

/** torch storage class of each dtype. */
const STORAGE_CLASSES: Partial<Record<TensorDType, string>> = {
  f32: 'FloatStorage',
  f16: 'HalfStorage',
  bf16: 'BFloat16Storage',
  f64: 'DoubleStorage',
  i64: 'LongStorage',
  i32: 'IntStorage',
  i16: 'ShortStorage',
  i8: 'CharStorage',
  u8: 'ByteStorage',
};

/** One tensor of a state dict. */
export interface TorchTensorSpec {
  readonly name: string;
  readonly dtype: TensorDType;
  readonly shape: readonly number[];
  /** The tensor's bytes; with `storageKey` shared by several tensors, the first one's bytes make the storage. */
  readonly data: Uint8Array;
  /** Storage key; defaults to the tensor's index. Tensors naming the same key share one storage. */
  readonly storageKey?: string;
  /** Element offset into the storage. Defaults to 0. */
  readonly storageOffset?: number;
  /** Strides in elements. Defaults to row-major contiguous. */
  readonly stride?: readonly number[];
  /** Elements of the storage. Defaults to the data's. */
  readonly storageNumel?: number;
}

/** Options of `writePytorchCheckpoint`. */
export interface TorchSaveOptions {
  /** Top folder of the archive (torch uses the file's stem, e.g. `archive`). Defaults to `archive`. */
  readonly root?: string;
  /** Write ZIP64 records and extra fields for every entry. Defaults to false. */
  readonly zip64?: boolean;
  /** Deflate every entry (torch never does; zip tools may). Defaults to false. */
  readonly deflate?: boolean;
  /** Nest the state dict under this key of an outer dict (training checkpoints). */
  readonly wrapIn?: string;
  /** Pickle tensors as nn.Parameters (`_rebuild_parameter`). Defaults to false. */
  readonly asParameters?: boolean;
}

function contiguousStrides(shape: readonly number[]): number[] {
  const strides: number[] = [];
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

/** CPython's pickler writes dict items in batches of this many. */
const PICKLE_BATCH = 1000;

/** The data.pkl of a state dict, and the storages it refers to (key → bytes). */
export function stateDictPickle(
  tensors: readonly TorchTensorSpec[],
  options: TorchSaveOptions = {},
): { pickle: Uint8Array; storages: Map<string, Uint8Array> } {
  const p = new PickleWriter().proto(2);
  const storages = new Map<string, Uint8Array>();
  const orderedDict = () => p.global('collections', 'OrderedDict').tuple(0, () => {}).reduce();
  /** Items pushed by `emitItem` for each of `count` entries, as CPython batches them. */
  const setItems = (count: number, emitItem: (i: number) => void) => {
    for (let start = 0; start < count; start += PICKLE_BATCH) {
      const end = Math.min(count, start + PICKLE_BATCH);
      if (end - start > 1) p.mark();
      for (let i = start; i < end; i++) emitItem(i);
      p.raw(end - start > 1 ? 0x75 : 0x73);
    }
  };
  const emitTensor = (tensor: TorchTensorSpec, key: string, storageClass: string, numel: number) => {
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.tuple(6, () => {
      p.tuple(5, () => p.string('storage').global('torch', storageClass).string(key).string('cpu').int(numel));
      p.persistentId();
      p.int(tensor.storageOffset ?? 0);
      p.intTuple(tensor.shape);
      p.intTuple(tensor.stride ?? contiguousStrides(tensor.shape));
      p.bool(false);
      orderedDict();
    });
    p.reduce();
  };

  if (options.wrapIn !== undefined) p.emptyDict().string(options.wrapIn);
  orderedDict();
  setItems(tensors.length, (i) => {
    const tensor = tensors[i];
    const key = tensor.storageKey ?? String(i);
    const storageClass = STORAGE_CLASSES[tensor.dtype];
    if (storageClass === undefined) throw new RangeError(`torch has no storage for ${tensor.dtype}`);
    if (!storages.has(key)) storages.set(key, tensor.data);
    const numel = tensor.storageNumel ?? (storages.get(key) as Uint8Array).length / dtypeLayout(tensor.dtype).blockBytes;
    p.string(tensor.name);
    if (options.asParameters) {
      // _rebuild_parameter(data, requires_grad, backward_hooks)
      p.global('torch._utils', '_rebuild_parameter');
      p.tuple(3, () => {
        emitTensor(tensor, key, storageClass, numel);
        p.bool(false);
        orderedDict();
      });
      p.reduce();
    } else {
      emitTensor(tensor, key, storageClass, numel);
    }
  });
  // state_dict() carries module versions as the OrderedDict's `_metadata` attribute: BUILD state.
  p.emptyDict().string('_metadata');
  orderedDict();
  p.string('').emptyDict().string('version').int(1).raw(0x73).raw(0x73);
  p.raw(0x73).build();
  if (options.wrapIn !== undefined) p.raw(0x73); // the state dict into the outer dict
  p.stop();
  return { pickle: p.bytes(), storages };
}

/** One ZIP entry to write. */
interface ZipInput {
  readonly name: string;
  readonly data: Uint8Array;
}

/** Writes a ZIP as PyTorch's writer does (stored, 64-byte aligned data), optionally ZIP64 or deflated. */
export function writeZip(path: string, entries: readonly ZipInput[], options: { zip64?: boolean; deflate?: boolean } = {}): void {
  const out = new ByteWriter();
  const central = new ByteWriter();
  const zip64 = options.zip64 ?? false;
  const saturated = 0xffffffff;
  for (const entry of entries) {
    const name = new TextEncoder().encode(entry.name);
    const stored = options.deflate ? new Uint8Array(zlib.deflateRawSync(entry.data)) : entry.data;
    const method = options.deflate ? 8 : 0;
    const crc = zlib.crc32(entry.data);
    const localOffset = out.size;
    const zip64Local = new ByteWriter();
    if (zip64) zip64Local.u16(1).u16(16).u64(entry.data.length).u64(stored.length);
    // Pad with an extra field ('FB') so the data starts on a 64-byte boundary.
    const unpadded = localOffset + 30 + name.length + zip64Local.size;
    const padding = (64 - ((unpadded + 4) % 64)) % 64;
    const extra = new ByteWriter().raw(zip64Local.bytes()).u16(0x4246).u16(padding).raw(new Uint8Array(padding));
    out.u32(0x04034b50).u16(zip64 ? 45 : 20).u16(0).u16(method).u16(0).u16(0).u32(crc);
    out.u32(zip64 ? saturated : stored.length).u32(zip64 ? saturated : entry.data.length);
    out.u16(name.length).u16(extra.size).raw(name).raw(extra.bytes()).raw(stored);

    const centralExtra = new ByteWriter();
    if (zip64) centralExtra.u16(1).u16(24).u64(entry.data.length).u64(stored.length).u64(localOffset);
    central.u32(0x02014b50).u16(zip64 ? 45 : 20).u16(zip64 ? 45 : 20).u16(0).u16(method).u16(0).u16(0).u32(crc);
    central.u32(zip64 ? saturated : stored.length).u32(zip64 ? saturated : entry.data.length);
    central.u16(name.length).u16(centralExtra.size).u16(0).u16(0).u16(0).u32(0);
    central.u32(zip64 ? saturated : localOffset).raw(name).raw(centralExtra.bytes());
  }
  const centralOffset = out.size;
  out.raw(central.bytes());
  if (zip64) {
    const recordOffset = out.size;
    out.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0);
    out.u64(entries.length).u64(entries.length).u64(central.size).u64(centralOffset);
    out.u32(0x07064b50).u32(0).u64(recordOffset).u32(1);
  }
  out.u32(0x06054b50).u16(0).u16(0);
  out.u16(zip64 ? 0xffff : entries.length).u16(zip64 ? 0xffff : entries.length);
  out.u32(zip64 ? saturated : central.size).u32(zip64 ? saturated : centralOffset).u16(0);
  fs.writeFileSync(path, out.bytes());
}

/** Writes the archive entries of a checkpoint with the given pickle and storages. */
export function writeTorchZip(
  path: string,
  pickle: Uint8Array,
  storages: ReadonlyMap<string, Uint8Array>,
  options: TorchSaveOptions = {},
): void {
  const root = options.root ?? 'archive';
  const text = (value: string) => new TextEncoder().encode(value);
  writeZip(
    path,
    [
      { name: `${root}/data.pkl`, data: pickle },
      { name: `${root}/byteorder`, data: text('little') },
      ...[...storages].map(([key, data]) => ({ name: `${root}/data/${key}`, data })),
      { name: `${root}/version`, data: text('3\n') },
      { name: `${root}/.data/serialization_id`, data: text('1234567890123456789012345678901234567890') },
    ],
    options,
  );
}

/** Writes `tensors` as a `torch.save(state_dict)` checkpoint. */
export function writePytorchCheckpoint(path: string, tensors: readonly TorchTensorSpec[], options: TorchSaveOptions = {}): void {
  for (const tensor of tensors) {
    if (tensor.storageKey === undefined && tensor.data.length !== tensorByteLength(tensor.dtype, tensor.shape, path, tensor.name)) {
      throw new RangeError(`${tensor.name}: data length does not match its shape`);
    }
  }
  const { pickle, storages } = stateDictPickle(tensors, options);
  writeTorchZip(path, pickle, storages, options);
}
