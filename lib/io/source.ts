/**
 * Random access to the bytes of a model file (or of bytes already in memory), bounds-checked.
 * Every read lib/io does goes through a ByteSource, so "never past the end, never more than the
 * file holds" is enforced in one place.
 */
import * as fs from 'node:fs';
import { DisposedError, LowbitFormatError } from '../errors';

/** Bytes that can be read at any offset; `file` names them in errors. */
export interface ByteSource {
  readonly file: string;
  readonly size: number;
  /**
   * Bytes `[offset, offset + length)`. Throws LowbitFormatError when the range is not inside the
   * source. FileSource returns a fresh copy; BufferSource may return a view.
   */
  read(offset: number, length: number): Uint8Array;
}

/** Throws unless `[offset, offset + length)` lies inside `[0, size)`. */
export function checkRange(file: string, size: number, offset: number, length: number, key?: string): void {
  const valid =
    Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= size;
  if (!valid) {
    throw new LowbitFormatError(
      file,
      `range [${offset}, ${offset + length}) is outside the ${size} bytes available (truncated or corrupt)`,
      key,
    );
  }
}

/** An open file read with `fs.readSync` at explicit offsets; the descriptor stays open until close(). */
export class FileSource implements ByteSource {
  readonly file: string;
  readonly size: number;
  private fd: number | undefined;

  private constructor(file: string, fd: number, size: number) {
    this.file = file;
    this.fd = fd;
    this.size = size;
  }

  /** Opens `path` for reading; a missing or unreadable file is a LowbitFormatError. */
  static open(path: string): FileSource {
    let fd: number | undefined;
    try {
      fd = fs.openSync(path, 'r');
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new LowbitFormatError(path, 'not a regular file');
      return new FileSource(path, fd, stat.size);
    } catch (error) {
      if (fd !== undefined) fs.closeSync(fd);
      if (error instanceof LowbitFormatError) throw error;
      throw new LowbitFormatError(path, `cannot open: ${(error as Error).message}`, undefined, { cause: error });
    }
  }

  get closed(): boolean {
    return this.fd === undefined;
  }

  read(offset: number, length: number): Uint8Array {
    if (this.fd === undefined) throw new DisposedError(`model file ${this.file}`);
    checkRange(this.file, this.size, offset, length);
    const bytes = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, bytes, done, length - done, offset + done);
      // A short read at a validated offset means the file shrank after it was opened.
      if (n <= 0) throw new LowbitFormatError(this.file, `file ended at ${offset + done} while reading (changed on disk?)`);
      done += n;
    }
    return bytes;
  }

  /** Idempotent. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }
}

/** Side files (config.json, index.json, chat templates) larger than this are rejected: real ones are kilobytes. */
const MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024;

/** The whole content of a small side file such as config.json. */
export function readSideFile(path: string): Uint8Array {
  const source = FileSource.open(path);
  try {
    if (source.size > MAX_SIDE_FILE_BYTES) throw new LowbitFormatError(path, `${source.size} bytes is too large for this kind of file`);
    return source.read(0, source.size);
  } finally {
    source.close();
  }
}

/** Bytes already in memory (an inflated ZIP entry, a pickle) seen through the ByteSource interface. */
export class BufferSource implements ByteSource {
  readonly file: string;
  readonly size: number;
  private readonly bytes: Uint8Array;

  constructor(file: string, bytes: Uint8Array) {
    this.file = file;
    this.bytes = bytes;
    this.size = bytes.length;
  }

  /** Returns a view, not a copy. */
  read(offset: number, length: number): Uint8Array {
    checkRange(this.file, this.size, offset, length);
    return this.bytes.subarray(offset, offset + length);
  }
}
