/**
 * PyTorch checkpoints (`torch.save`, zip format): `<top>/data.pkl` is unpickled under a policy
 * that only knows how tensors and ordered dicts are rebuilt, and each tensor's persistent id
 * `('storage', StorageType, key, location, numel)` points at the entry `<top>/data/<key>`. Tensors
 * must be contiguous row-major views of their storage; they are read from disk on demand.
 */
import { LowbitFormatError } from '../errors';
import { checkedSize, dtypeLayout } from './dtypes';
import { type PickleKey, type PickleObject, PickleTuple, type PickleValue, type UnpicklePolicy, unpickle } from './pickle';
import { BufferSource, type ByteSource, FileSource } from './source';
import { type TensorFile, closeOnError } from './tensors';
import type { TensorDType, TensorInfo } from './types';
import { type ZipEntry, readZipEntries, readZipEntry, readZipEntryRange } from './zip';

/** torch storage classes and the dtype of their elements. BoolStorage holds bytes 0/1, handed out as u8. */
const STORAGE_DTYPES: Readonly<Record<string, TensorDType>> = {
  FloatStorage: 'f32',
  HalfStorage: 'f16',
  BFloat16Storage: 'bf16',
  DoubleStorage: 'f64',
  LongStorage: 'i64',
  IntStorage: 'i32',
  ShortStorage: 'i16',
  CharStorage: 'i8',
  ByteStorage: 'u8',
  BoolStorage: 'u8',
};

/** Callables REDUCE may invoke; each only assembles data (see `reduceTorch`). */
const ALLOWED_CALLABLES = new Set([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'collections.OrderedDict',
]);

interface TorchGlobal extends PickleObject {
  readonly pickleKind: 'global';
  readonly qualifiedName: string;
  /** Set for storage classes. */
  readonly storageDType?: TensorDType;
}

interface TorchStorage extends PickleObject {
  readonly pickleKind: 'storage';
  readonly key: string;
  readonly dtype: TensorDType;
  readonly numel: number;
}

interface TorchTensor extends PickleObject {
  readonly pickleKind: 'tensor';
  readonly storage: TorchStorage;
  readonly storageOffset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

function isObject<K extends string>(value: PickleValue, kind: K): value is PickleObject & { pickleKind: K } {
  return typeof value === 'object' && value !== null && 'pickleKind' in value && value.pickleKind === kind;
}

function isInteger(value: PickleValue): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function integerTuple(value: PickleValue, what: string, fail: (message: string) => LowbitFormatError): number[] {
  if (!(value instanceof PickleTuple) || !value.items.every(isInteger)) throw fail(`${what} must be a tuple of integers`);
  return value.items as number[];
}

/** The unpickling policy for torch checkpoints: allowed globals only; storages are remembered by key. */
function torchPolicy(): UnpicklePolicy {
  const storages = new Map<string, TorchStorage>();
  return {
    global(module, name, fail): TorchGlobal {
      const qualifiedName = `${module}.${name}`;
      if (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name)) {
        return { pickleKind: 'global', qualifiedName, storageDType: STORAGE_DTYPES[name] };
      }
      if (ALLOWED_CALLABLES.has(qualifiedName)) return { pickleKind: 'global', qualifiedName };
      throw fail(`GLOBAL ${qualifiedName} is not allowed`);
    },
    reduce: reduceTorch,
    build(object, state, fail) {
      // torch pickles a state dict's `_metadata` (module versions) as OrderedDict state; ignore it.
      if (object instanceof Map && (state === null || state instanceof Map)) return object;
      throw fail('BUILD is only allowed on an OrderedDict');
    },
    persistentLoad(pid, fail): TorchStorage {
      const items = pid instanceof PickleTuple ? pid.items : [];
      const [tag, storageType, key, , numel] = items;
      if (items.length !== 5 || tag !== 'storage') throw fail("persistent id must be ('storage', type, key, location, numel)");
      if (!isObject(storageType, 'global') || (storageType as TorchGlobal).storageDType === undefined) {
        throw fail('persistent id names no storage type');
      }
      if (typeof key !== 'string' || !isInteger(numel) || numel < 0) throw fail('persistent id has a bad key or size');
      const dtype = (storageType as TorchGlobal).storageDType as TensorDType;
      const known = storages.get(key);
      if (known !== undefined) {
        if (known.dtype !== dtype || known.numel !== numel) throw fail(`storage ${key} is described twice differently`);
        return known;
      }
      const storage: TorchStorage = { pickleKind: 'storage', key, dtype, numel };
      storages.set(key, storage);
      return storage;
    },
  };
}

function reduceTorch(callable: PickleValue, args: PickleTuple, fail: (message: string) => LowbitFormatError): PickleValue {
  const name = isObject(callable, 'global') ? (callable as TorchGlobal).qualifiedName : undefined;
  const items = args.items;
  switch (name) {
    case 'torch._utils._rebuild_tensor_v2': {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const [storage, storageOffset, size, stride] = items;
      if (items.length < 6 || !isObject(storage, 'storage') || !isInteger(storageOffset) || storageOffset < 0) {
        throw fail('_rebuild_tensor_v2 needs (storage, offset, size, stride, requires_grad, hooks)');
      }
      const tensor: TorchTensor = {
        pickleKind: 'tensor',
        storage: storage as TorchStorage,
        storageOffset,
        shape: integerTuple(size, 'size', fail),
        stride: integerTuple(stride, 'stride', fail),
      };
      return tensor;
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      // (data, requires_grad, backward_hooks[, state]): the parameter is its data tensor.
      if (items.length < 3 || !isObject(items[0], 'tensor')) throw fail(`${name} needs a tensor`);
      return items[0];
    case 'collections.OrderedDict': {
      const dict = new Map<PickleKey, PickleValue>();
      const pairs = items.length === 0 ? [] : items[0];
      if (items.length > 1 || !Array.isArray(pairs)) throw fail('OrderedDict takes an optional list of pairs');
      for (const pair of pairs) {
        if (!(pair instanceof PickleTuple) || pair.items.length !== 2 || typeof pair.items[0] !== 'string') {
          throw fail('OrderedDict pairs must be (str, value)');
        }
        dict.set(pair.items[0], pair.items[1]);
      }
      return dict;
    }
    default:
      throw fail(`REDUCE on ${name ?? 'a non-callable'} is not allowed`);
  }
}

/** The folder every entry of a torch zip sits in (its name varies: `archive`, the file's stem ...). */
function archiveRoot(file: string, entries: ReadonlyMap<string, ZipEntry>): string {
  const roots = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name)).map((name) => name.slice(0, -'/data.pkl'.length));
  if (roots.length !== 1) throw new LowbitFormatError(file, `expected one <folder>/data.pkl entry, found ${roots.length}`);
  return roots[0];
}

/** The state dict inside an unpickled checkpoint: the top level, or its `state_dict` / `model` entry. */
function findStateDict(file: string, root: PickleValue): Map<PickleKey, PickleValue> {
  if (!(root instanceof Map)) throw new LowbitFormatError(file, 'checkpoint is not a dict', 'data.pkl');
  const hasTensors = [...root.values()].some((value) => isObject(value, 'tensor'));
  for (const key of ['state_dict', 'model']) {
    const nested = root.get(key);
    if (!hasTensors && nested instanceof Map) return nested;
  }
  return root;
}

/** Row-major strides of `shape`. */
function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

/** Validates one tensor against its storage and makes it readable. */
function storedTensor(
  source: ByteSource,
  name: string,
  tensor: TorchTensor,
  storageEntry: ZipEntry | undefined,
): TensorInfo {
  const fail = (message: string) => new LowbitFormatError(source.file, message, name);
  const { storage, shape, stride, storageOffset } = tensor;
  if (storageEntry === undefined) throw fail(`storage ${storage.key} is missing from the archive`);
  if (shape.length !== stride.length) throw fail('size and stride differ in length');
  const elementBytes = dtypeLayout(storage.dtype).blockBytes;
  const numel = checkedSize(shape, storage.numel, source.file, name);
  const expected = contiguousStrides(shape);
  // Strides of size-1 dims do not matter, as in torch's is_contiguous.
  if (numel > 0 && shape.some((n, i) => n !== 1 && stride[i] !== expected[i])) {
    throw fail(`not contiguous row-major: size (${shape.join(', ')}) stride (${stride.join(', ')}); save a .contiguous() copy`);
  }
  if (storageOffset + numel > storage.numel) throw fail(`offset ${storageOffset} + ${numel} elements overrun storage ${storage.key} of ${storage.numel}`);
  const storageBytes = checkedSize([storage.numel, elementBytes], Number.MAX_SAFE_INTEGER, source.file, name);
  if (storageEntry.size < storageBytes) throw fail(`storage ${storage.key} holds ${storageEntry.size} bytes, needs ${storageBytes}`);
  const offset = storageOffset * elementBytes;
  const byteLength = numel * elementBytes;
  return Object.freeze({
    name,
    dtype: storage.dtype,
    shape: Object.freeze([...shape]),
    byteLength,
    read: () => readZipEntryRange(source, storageEntry, offset, byteLength),
  });
}

/** Opens a `torch.save` zip checkpoint holding a state dict; tensors keep their state-dict names. */
export function openPytorchCheckpoint(path: string): TensorFile {
  const source = FileSource.open(path);
  return closeOnError(
    () => source.close(),
    () => {
      const entries = readZipEntries(source);
      const root = archiveRoot(path, entries);
      const byteorder = entries.get(`${root}/byteorder`);
      if (byteorder !== undefined && new TextDecoder().decode(readZipEntry(source, byteorder)).trim() !== 'little') {
        throw new LowbitFormatError(path, 'big-endian checkpoints are not supported', `${root}/byteorder`);
      }
      const pickleEntry = entries.get(`${root}/data.pkl`) as ZipEntry;
      const pickle = new BufferSource(path, readZipEntry(source, pickleEntry));
      const stateDict = findStateDict(path, unpickle(pickle, torchPolicy(), pickleEntry.name));
      const tensors = new Map<string, TensorInfo>();
      for (const [key, value] of stateDict) {
        const name = String(key);
        if (!isObject(value, 'tensor')) throw new LowbitFormatError(path, 'state dict entry is not a tensor', name);
        const tensor = value as TorchTensor;
        tensors.set(name, storedTensor(source, name, tensor, entries.get(`${root}/data/${tensor.storage.key}`)));
      }
      return { path, container: 'pytorch', tensors, metadata: new Map(), close: () => source.close() };
    },
  );
}
