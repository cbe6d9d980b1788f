/**
 * GGUF v3 writer: metadata of every value type and tensors given as dtype, row-major shape and raw
 * bytes (already in the ggml block layout for quantized types). Tensor data is streamed to disk
 * one tensor at a time, each aligned to `general.alignment`.
 */
import { ByteWriter, type TensorBytes, resolveBytes, tensorBytesToWrite, writeFile } from './byte-writer';
import {
  GGML_TYPE_IDS,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_SCALARS,
  type GgufTensorDType,
  type GgufTypeInfo,
  GgufValueType,
  writeGgufString,
} from './gguf';
import type { GgufValue } from './types';

/** A metadata value with its stored type spelled out (`elementType` for arrays). */
export interface GgufTypedValue {
  readonly type: GgufValueType;
  readonly value: GgufValue;
  readonly elementType?: GgufTypeInfo;
}

/**
 * A metadata value to write. Untyped values are typed as gguf-py does: string → STRING, boolean →
 * BOOL, integer → INT32 (INT64 beyond int32), other number → FLOAT32, bigint → INT64, array → ARRAY
 * of the type of its first element (INT32 when empty).
 */
export type GgufMetadataValue = GgufValue | GgufTypedValue;

/** `{ type, value }` for a scalar, e.g. `ggufTyped(GgufValueType.UINT32, 5)`. */
export function ggufTyped(type: GgufValueType | GgufTypeInfo, value: GgufValue): GgufTypedValue {
  const info = typeof type === 'number' ? { type } : type;
  return { type: info.type, value, elementType: info.elementType };
}

/** One tensor to write. */
export interface GgufTensorInput {
  /** The name as stored (use `ggufTensorName` for llama.cpp names). */
  readonly name: string;
  readonly dtype: GgufTensorDType;
  /** Row-major shape, outermost first (written reversed, as ggml's ne). */
  readonly shape: readonly number[];
  readonly data: TensorBytes;
}

/** Options of `writeGguf`. */
export interface GgufWriteOptions {
  /**
   * Alignment of the data section and every tensor; written as `general.alignment` when it is not
   * the default. Defaults to `general.alignment` from the metadata, else 32.
   */
  readonly alignment?: number;
}

function isTyped(value: GgufMetadataValue): value is GgufTypedValue {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The type untyped `value` is written as. */
function inferType(value: GgufValue): GgufTypeInfo {
  if (typeof value === 'string') return { type: GgufValueType.STRING };
  if (typeof value === 'boolean') return { type: GgufValueType.BOOL };
  if (typeof value === 'bigint') return { type: value > 2n ** 63n - 1n ? GgufValueType.UINT64 : GgufValueType.INT64 };
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return { type: GgufValueType.FLOAT32 };
    return { type: value >= -(2 ** 31) && value < 2 ** 31 ? GgufValueType.INT32 : GgufValueType.INT64 };
  }
  if (value.length === 0) return { type: GgufValueType.ARRAY, elementType: { type: GgufValueType.INT32 } };
  const elementType = value.every((v) => typeof v === 'number') && value.some((v) => !Number.isInteger(v))
    ? { type: GgufValueType.FLOAT32 }
    : inferType(value[0]);
  return { type: GgufValueType.ARRAY, elementType };
}

/** Writes `value` (without its type tag) as `info` says. */
function writeValue(out: ByteWriter, key: string, info: GgufTypeInfo, value: GgufValue): void {
  if (info.type === GgufValueType.ARRAY) {
    if (!Array.isArray(value)) throw new TypeError(`GGUF metadata ${key}: ${String(value)} is not an array`);
    const elementType = info.elementType ?? (value.length > 0 ? inferType(value[0]) : { type: GgufValueType.INT32 });
    out.u32(elementType.type).u64(value.length);
    // Inner arrays of a nested array carry their own element type: inferred unless declared.
    const declaredInner = elementType.type !== GgufValueType.ARRAY || elementType.elementType !== undefined;
    for (const element of value) writeValue(out, key, declaredInner ? elementType : inferType(element), element);
    return;
  }
  const codec = GGUF_SCALARS[info.type];
  if (codec === undefined) throw new TypeError(`GGUF metadata ${key}: unknown type ${info.type}`);
  if (!codec.accepts(value)) {
    // A number that a numeric type cannot hold is out of range; anything else is the wrong kind.
    const outOfRange = codec.accepts(0) && (typeof value === 'number' || typeof value === 'bigint');
    const ErrorType = outOfRange ? RangeError : TypeError;
    throw new ErrorType(`GGUF metadata ${key}: ${String(value)} cannot be stored as type ${info.type}`);
  }
  codec.write(out, value);
}

function resolveAlignment(metadata: Map<string, GgufMetadataValue>, requested: number | undefined): number {
  const stored = metadata.get('general.alignment');
  const storedValue = stored === undefined ? undefined : Number(isTyped(stored) ? stored.value : stored);
  const alignment = requested ?? storedValue ?? GGUF_DEFAULT_ALIGNMENT;
  if (!(Number.isSafeInteger(alignment) && alignment > 0 && (alignment & (alignment - 1)) === 0)) {
    throw new RangeError(`GGUF alignment must be a power of two, got ${alignment}`);
  }
  if (storedValue !== undefined && storedValue !== alignment) {
    throw new RangeError(`alignment ${alignment} contradicts general.alignment ${storedValue}`);
  }
  if (stored === undefined && alignment !== GGUF_DEFAULT_ALIGNMENT) {
    metadata.set('general.alignment', ggufTyped(GgufValueType.UINT32, alignment));
  }
  return alignment;
}

/** Writes a GGUF v3 file at `path` (replacing it). Metadata is written in iteration order. */
export function writeGguf(
  path: string,
  metadataEntries: Iterable<readonly [string, GgufMetadataValue]>,
  tensors: readonly GgufTensorInput[],
  options: GgufWriteOptions = {},
): void {
  const metadata = new Map<string, GgufMetadataValue>(metadataEntries);
  const alignment = resolveAlignment(metadata, options.alignment);
  const header = new ByteWriter();
  header.u32(GGUF_MAGIC).u32(3).u64(tensors.length).u64(metadata.size);
  for (const [key, entry] of metadata) {
    const info = isTyped(entry) ? { type: entry.type, elementType: entry.elementType } : inferType(entry);
    writeGgufString(header, key);
    header.u32(info.type);
    writeValue(header, key, info, isTyped(entry) ? entry.value : entry);
  }
  const names = new Set<string>();
  let dataOffset = 0;
  const byteLengths = tensors.map((tensor) => {
    if (names.has(tensor.name)) throw new RangeError(`duplicate tensor name ${tensor.name}`);
    names.add(tensor.name);
    if (!(tensor.dtype in GGML_TYPE_IDS)) throw new RangeError(`${tensor.name}: GGUF cannot store dtype ${tensor.dtype}`);
    if (tensor.shape.length < 1 || tensor.shape.length > 4) throw new RangeError(`${tensor.name}: GGUF tensors have 1 to 4 dims`);
    const byteLength = tensorBytesToWrite(path, tensor);
    writeGgufString(header, tensor.name);
    header.u32(tensor.shape.length);
    for (const n of [...tensor.shape].reverse()) header.u64(n);
    header.u32(GGML_TYPE_IDS[tensor.dtype]).u64(dataOffset);
    dataOffset += Math.ceil(byteLength / alignment) * alignment;
    return byteLength;
  });
  header.padTo(alignment);

  writeFile(path, (out) => {
    out.write(header.bytes());
    tensors.forEach((tensor, i) => {
      const bytes = resolveBytes(tensor.data);
      if (bytes.length !== byteLengths[i]) {
        throw new RangeError(`${tensor.name}: ${bytes.length} bytes given, ${tensor.dtype} [${tensor.shape.join(', ')}] needs ${byteLengths[i]}`);
      }
      out.write(bytes);
      out.padTo(alignment);
    });
  });
}

