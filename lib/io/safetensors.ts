/**
 * safetensors reader: u64 header length, JSON header (`__metadata__` plus one entry per tensor with
 * dtype, shape and data_offsets relative to the data section), then the data section. Offsets are
 * validated: inside the data section, exactly product(shape) × dtype size long, no overlaps.
 */
import { LowbitFormatError } from '../errors';
import { ByteCursor } from './cursor';
import { tensorByteLength } from './dtypes';
import { type JsonObject, isJsonObject, parseJson } from './json';
import { type ByteSource, FileSource } from './source';
import { type ByteRange, type TensorFile, checkDisjoint, closeOnError, fileTensor } from './tensors';
import type { TensorDType, TensorInfo } from './types';

/** Longest JSON header accepted (the safetensors library's own limit). */
const MAX_HEADER_BYTES = 100_000_000;

/** safetensors dtype names lowbit reads, and what they are handed out as. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, TensorDType>> = {
  F64: 'f64',
  F32: 'f32',
  F16: 'f16',
  BF16: 'bf16',
  I64: 'i64',
  I32: 'i32',
  I16: 'i16',
  I8: 'i8',
  U8: 'u8',
};

/** The safetensors name of a TensorDType it can store, or undefined. */
export function safetensorsDtypeName(dtype: TensorDType): string | undefined {
  return Object.keys(SAFETENSORS_DTYPES).find((name) => SAFETENSORS_DTYPES[name] === dtype);
}

/** One tensor entry of a safetensors header. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: TensorDType;
  readonly shape: readonly number[];
  /** Absolute file offset of the tensor's bytes. */
  readonly offset: number;
  readonly byteLength: number;
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  readonly metadata: ReadonlyMap<string, string>;
  readonly tensors: readonly SafetensorsEntry[];
  readonly dataOffset: number;
}

/** Reads and validates the header of a safetensors file. */
export function readSafetensorsHeader(source: ByteSource): SafetensorsHeader {
  const cursor = new ByteCursor(source);
  const file = source.file;
  const headerLength = cursor.within('header length', () => cursor.u64Safe('header length'));
  if (headerLength > MAX_HEADER_BYTES) throw cursor.fail(`header of ${headerLength} bytes is too large`, 'header length');
  const json = cursor.within('header', () => parseJson(file, cursor.bytes(headerLength), 'header'));
  if (!isJsonObject(json)) throw new LowbitFormatError(file, 'header is not a JSON object', 'header');
  const dataOffset = cursor.offset;
  const dataSize = source.size - dataOffset;
  let metadata = new Map<string, string>();
  const tensors: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') metadata = readMetadata(file, value);
    else tensors.push(readEntry(file, name, value, dataOffset, dataSize));
  }
  checkDisjoint(file, tensors.map((t): ByteRange => ({ name: t.name, start: t.offset, end: t.offset + t.byteLength })));
  return { metadata, tensors, dataOffset };
}

function readMetadata(file: string, value: unknown): Map<string, string> {
  if (!isJsonObject(value)) throw new LowbitFormatError(file, 'must be an object of strings', '__metadata__');
  const metadata = new Map<string, string>();
  for (const [key, text] of Object.entries(value)) {
    if (typeof text !== 'string') throw new LowbitFormatError(file, `value of ${key} must be a string`, '__metadata__');
    metadata.set(key, text);
  }
  return metadata;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function readEntry(file: string, name: string, value: unknown, dataOffset: number, dataSize: number): SafetensorsEntry {
  const fail = (message: string) => new LowbitFormatError(file, message, name);
  if (!isJsonObject(value)) throw fail('entry must be an object');
  const entry: JsonObject = value;
  const dtypeName = entry.dtype;
  if (typeof dtypeName !== 'string') throw fail('dtype must be a string');
  const dtype = Object.hasOwn(SAFETENSORS_DTYPES, dtypeName) ? SAFETENSORS_DTYPES[dtypeName] : undefined;
  if (dtype === undefined) throw fail(`dtype ${dtypeName} is not supported`);
  const shape = entry.shape;
  if (!Array.isArray(shape) || !shape.every(isCount)) throw fail('shape must be a list of non-negative integers');
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw fail('data_offsets must be [begin, end] with 0 <= begin <= end');
  }
  const [begin, end] = offsets as number[];
  if (end > dataSize) throw fail(`data_offsets [${begin}, ${end}) run past the ${dataSize}-byte data section`);
  const byteLength = tensorByteLength(dtype, shape, file, name, dataSize);
  if (end - begin !== byteLength) throw fail(`data_offsets span ${end - begin} bytes, ${dtypeName} [${shape.join(', ')}] needs ${byteLength}`);
  return { name, dtype, shape, offset: dataOffset + begin, byteLength };
}

/** Opens one safetensors file; tensors keep their stored names. */
export function openSafetensors(path: string): TensorFile {
  const source = FileSource.open(path);
  return closeOnError(
    () => source.close(),
    () => {
      const header = readSafetensorsHeader(source);
      const tensors = new Map<string, TensorInfo>();
      for (const t of header.tensors) tensors.set(t.name, fileTensor(source, t.name, t.dtype, t.shape, t.offset, t.byteLength));
      return { path, container: 'safetensors', tensors, metadata: header.metadata, close: () => source.close() };
    },
  );
}
