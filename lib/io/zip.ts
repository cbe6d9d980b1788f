/**
 * A ZIP reader for PyTorch checkpoints: end-of-central-directory (with ZIP64 locator and record),
 * central directory entries (with ZIP64 extra fields), local headers, stored and deflated entries.
 * Entries are located at open time and read on demand; stored entries can be read by byte range.
 */
import * as zlib from 'node:zlib';
import { LowbitFormatError } from '../errors';
import { ByteCursor } from './cursor';
import { checkedSize } from './dtypes';
import { type ByteSource, BufferSource } from './source';

const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const END_SIGNATURE = 0x06054b50;
const ZIP64_END_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const END_RECORD_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const CENTRAL_HEADER_BYTES = 46;
const LOCAL_HEADER_BYTES = 30;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;
/** Deflate cannot expand data more than about 1032:1; larger claims are corrupt. */
const MAX_DEFLATE_RATIO = 1032;

/** ZIP compression methods lowbit reads. */
export const ZIP_STORED = 0;
export const ZIP_DEFLATED = 8;

/** A located ZIP entry. */
export interface ZipEntry {
  readonly name: string;
  readonly method: typeof ZIP_STORED | typeof ZIP_DEFLATED;
  readonly compressedSize: number;
  readonly size: number;
  /** Absolute offset of the entry's (possibly compressed) bytes. */
  readonly dataOffset: number;
}

/** Where the central directory is, from the end record (or its ZIP64 version). */
interface CentralDirectory {
  readonly offset: number;
  readonly size: number;
  readonly entryCount: number;
}

/** Whether the source starts like a ZIP archive (a local file header). */
export function looksLikeZip(source: ByteSource): boolean {
  return source.size >= 4 && new ByteCursor(source).u32() === LOCAL_HEADER_SIGNATURE;
}

function findCentralDirectory(source: ByteSource): CentralDirectory {
  const tailLength = Math.min(source.size, END_RECORD_BYTES + MAX_COMMENT_BYTES);
  const tailStart = source.size - tailLength;
  const tailBytes = source.read(tailStart, tailLength);
  const tailView = new DataView(tailBytes.buffer, tailBytes.byteOffset, tailBytes.byteLength);
  const tail = new ByteCursor(new BufferSource(source.file, tailBytes));
  // The end record is the last signature whose comment runs exactly to the end of the file.
  for (let at = tailLength - END_RECORD_BYTES; at >= 0; at--) {
    if (tailView.getUint32(at, true) !== END_SIGNATURE) continue;
    tail.seek(at + 20);
    if (at + END_RECORD_BYTES + tail.u16() !== tailLength) continue;
    return readEndRecord(source, tail, at, tailStart + at);
  }
  throw new LowbitFormatError(source.file, 'not a ZIP archive (no end of central directory record)');
}

function readEndRecord(source: ByteSource, tail: ByteCursor, at: number, endOffset: number): CentralDirectory {
  tail.seek(at + 4);
  const disk = tail.u16();
  const directoryDisk = tail.u16();
  tail.skip(2);
  const entryCount = tail.u16();
  const size = tail.u32();
  const offset = tail.u32();
  if (endOffset >= ZIP64_LOCATOR_BYTES) {
    const locator = new ByteCursor(source, endOffset - ZIP64_LOCATOR_BYTES, endOffset);
    if (locator.u32() === ZIP64_LOCATOR_SIGNATURE) {
      locator.skip(4);
      return readZip64EndRecord(source, locator.u64Safe('ZIP64 end record offset'), endOffset);
    }
  }
  if (disk !== 0 || directoryDisk !== 0) throw new LowbitFormatError(source.file, 'multi-disk ZIP archives are not supported');
  return { offset, size, entryCount };
}

function readZip64EndRecord(source: ByteSource, recordOffset: number, endOffset: number): CentralDirectory {
  const cursor = new ByteCursor(source, 0, endOffset);
  return cursor.within('ZIP64 end of central directory', () => {
    cursor.seek(recordOffset);
    if (cursor.u32() !== ZIP64_END_SIGNATURE) throw cursor.fail('bad signature');
    cursor.skip(8 + 2 + 2);
    if (cursor.u32() !== 0 || cursor.u32() !== 0) throw cursor.fail('multi-disk ZIP archives are not supported');
    cursor.skip(8);
    const entryCount = cursor.u64Safe('entry count');
    const size = cursor.u64Safe('central directory size');
    const offset = cursor.u64Safe('central directory offset');
    return { offset, size, entryCount };
  });
}

/** Sizes and offset from a central header, replaced by its ZIP64 extra field where they overflowed. */
interface EntrySizes {
  size: number;
  compressedSize: number;
  localHeaderOffset: number;
}

function applyZip64Extra(cursor: ByteCursor, extra: Uint8Array, sizes: EntrySizes): void {
  const fields = new ByteCursor(new BufferSource(cursor.file, extra));
  while (fields.remaining >= 4) {
    const id = fields.u16();
    const length = fields.u16();
    const body = fields.bytes(length);
    if (id !== ZIP64_EXTRA_ID) continue;
    const values = new ByteCursor(new BufferSource(cursor.file, body));
    cursor.within(cursor.key ?? 'ZIP64 extra field', () => {
      // Only the fields saturated in the fixed header are present, in this order.
      for (const field of ['size', 'compressedSize', 'localHeaderOffset'] as const) {
        if (sizes[field] !== 0xffffffff) continue;
        if (values.remaining < 8) throw cursor.fail(`ZIP64 extra field lacks ${field}`);
        sizes[field] = values.u64Safe(field);
      }
    });
  }
}

/** Reads the central directory and locates every entry's data. */
export function readZipEntries(source: ByteSource): Map<string, ZipEntry> {
  const directory = findCentralDirectory(source);
  if (directory.offset + directory.size > source.size) {
    throw new LowbitFormatError(source.file, 'central directory runs past the end of the file');
  }
  checkedSize([directory.entryCount, CENTRAL_HEADER_BYTES], directory.size, source.file, 'central directory');
  const cursor = new ByteCursor(source, directory.offset, directory.offset + directory.size);
  const entries = new Map<string, ZipEntry>();
  for (let i = 0; i < directory.entryCount; i++) {
    cursor.within(`central directory entry #${i}`, () => {
      if (cursor.u32() !== CENTRAL_HEADER_SIGNATURE) throw cursor.fail('bad signature');
      cursor.skip(4);
      const flags = cursor.u16();
      const method = cursor.u16();
      cursor.skip(8);
      const sizes: EntrySizes = { compressedSize: cursor.u32(), size: cursor.u32(), localHeaderOffset: 0 };
      const nameLength = cursor.u16();
      const extraLength = cursor.u16();
      const commentLength = cursor.u16();
      cursor.skip(8);
      sizes.localHeaderOffset = cursor.u32();
      const name = cursor.utf8(nameLength);
      cursor.within(name, () => {
        applyZip64Extra(cursor, cursor.bytes(extraLength), sizes);
        cursor.skip(commentLength);
        if (entries.has(name)) throw cursor.fail('duplicate entry');
        if (flags & 1) throw cursor.fail('encrypted entries are not supported');
        entries.set(name, locateEntry(source, name, method, sizes, directory.offset));
      });
    });
  }
  return entries;
}

function locateEntry(source: ByteSource, name: string, method: number, sizes: EntrySizes, dataEnd: number): ZipEntry {
  const fail = (message: string) => new LowbitFormatError(source.file, message, name);
  if (method !== ZIP_STORED && method !== ZIP_DEFLATED) throw fail(`compression method ${method} is not supported`);
  if (method === ZIP_STORED && sizes.size !== sizes.compressedSize) throw fail('stored entry with differing sizes');
  if (method === ZIP_DEFLATED && sizes.size > Math.max(1, sizes.compressedSize) * MAX_DEFLATE_RATIO) {
    throw fail(`claims ${sizes.size} bytes from ${sizes.compressedSize} compressed`);
  }
  const start = sizes.localHeaderOffset;
  if (start + LOCAL_HEADER_BYTES > dataEnd) throw fail(`local header at ${start} is outside the ${dataEnd} bytes before the central directory`);
  // Only the fixed part of the header is read: the name and extra field are skipped by length.
  const local = new ByteCursor(source, start, start + LOCAL_HEADER_BYTES);
  if (local.u32() !== LOCAL_HEADER_SIGNATURE) throw fail('bad local header signature');
  local.skip(22);
  const dataOffset = start + LOCAL_HEADER_BYTES + local.u16() + local.u16();
  if (dataOffset + sizes.compressedSize > dataEnd) {
    throw fail(`data [${dataOffset}, ${dataOffset + sizes.compressedSize}) runs into the central directory at ${dataEnd}`);
  }
  return { name, method: method as ZipEntry['method'], compressedSize: sizes.compressedSize, size: sizes.size, dataOffset };
}

/** The uncompressed bytes of an entry. */
export function readZipEntry(source: ByteSource, entry: ZipEntry): Uint8Array {
  const stored = source.read(entry.dataOffset, entry.compressedSize);
  if (entry.method === ZIP_STORED) return stored;
  let inflated: Uint8Array;
  try {
    const buffer = zlib.inflateRawSync(stored, { maxOutputLength: Math.max(1, entry.size) });
    inflated = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
  } catch (error) {
    throw new LowbitFormatError(source.file, `cannot inflate: ${(error as Error).message}`, entry.name, { cause: error });
  }
  if (inflated.length !== entry.size) {
    throw new LowbitFormatError(source.file, `inflates to ${inflated.length} bytes, the directory says ${entry.size}`, entry.name);
  }
  return inflated;
}

/** Bytes `[offset, offset + length)` of an entry's uncompressed content (reads only those for stored entries). */
export function readZipEntryRange(source: ByteSource, entry: ZipEntry, offset: number, length: number): Uint8Array {
  if (!(offset >= 0 && length >= 0 && offset + length <= entry.size)) {
    throw new LowbitFormatError(source.file, `range [${offset}, ${offset + length}) is outside the ${entry.size}-byte entry`, entry.name);
  }
  if (entry.method === ZIP_STORED) return source.read(entry.dataOffset + offset, length);
  return readZipEntry(source, entry).slice(offset, offset + length);
}
