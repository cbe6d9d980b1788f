/**
 * The one binary cursor of lib/io: sequential little-endian reads with bounds checks over a
 * ByteSource, buffered in windows so headers of any size can be parsed without loading the file.
 * Errors name the file and the metadata key or tensor being read (see `within`).
 */
import { LowbitFormatError } from '../errors';
import type { ByteSource } from './source';

/** Bytes fetched per refill when parsing a header from a file. */
const WINDOW_BYTES = 64 * 1024;
const TWO_POW_53 = 2n ** 53n;
const lenientDecoder = new TextDecoder('utf-8');
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** A read position in `[start, end)` of a ByteSource; every read is bounds-checked and advances it. */
export class ByteCursor {
  readonly source: ByteSource;
  /** Reads never go past this offset. */
  readonly end: number;
  private position: number;
  private window: Uint8Array = new Uint8Array(0);
  private windowView = new DataView(this.window.buffer);
  private windowStart = 0;
  private readonly keys: string[] = [];

  constructor(source: ByteSource, start = 0, end = source.size) {
    this.source = source;
    this.position = start;
    this.end = end;
    if (!(start >= 0 && start <= end && end <= source.size)) throw this.fail(`cursor range [${start}, ${end}) is outside the file`);
  }

  get file(): string {
    return this.source.file;
  }

  get offset(): number {
    return this.position;
  }

  get remaining(): number {
    return this.end - this.position;
  }

  /** The key being read (innermost `within`), if any. */
  get key(): string | undefined {
    return this.keys.at(-1);
  }

  /** Runs `read` with `key` named in any error it raises (nested calls name the innermost key). */
  within<T>(key: string, read: () => T): T {
    this.keys.push(key);
    try {
      return read();
    } finally {
      this.keys.pop();
    }
  }

  /** A LowbitFormatError for this file, naming `key` or else the key being read. */
  fail(message: string, key: string | undefined = this.keys.at(-1)): LowbitFormatError {
    return new LowbitFormatError(this.source.file, message, key);
  }

  seek(offset: number): void {
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset <= this.end)) {
      throw this.fail(`offset ${offset} is outside the ${this.end} bytes available`);
    }
    this.position = offset;
  }

  skip(length: number): void {
    this.require(length);
    this.position += length;
  }

  /** `length` bytes (a copy from files; possibly a view from in-memory sources). */
  bytes(length: number): Uint8Array {
    this.require(length);
    if (length > WINDOW_BYTES) {
      const bytes = this.source.read(this.position, length);
      this.position += length;
      return bytes;
    }
    const at = this.fill(length);
    this.position += length;
    return this.window.subarray(at, at + length);
  }

  /** `length` bytes decoded as UTF-8; `fatal` rejects invalid sequences instead of replacing them. */
  utf8(length: number, fatal = false): string {
    const bytes = this.bytes(length);
    try {
      return (fatal ? strictDecoder : lenientDecoder).decode(bytes);
    } catch {
      throw this.fail(`invalid UTF-8 in a ${length}-byte string at offset ${this.position - length}`);
    }
  }

  u8(): number {
    return this.number(1, (view, at) => view.getUint8(at));
  }
  i8(): number {
    return this.number(1, (view, at) => view.getInt8(at));
  }
  u16(): number {
    return this.number(2, (view, at) => view.getUint16(at, true));
  }
  i16(): number {
    return this.number(2, (view, at) => view.getInt16(at, true));
  }
  u32(): number {
    return this.number(4, (view, at) => view.getUint32(at, true));
  }
  i32(): number {
    return this.number(4, (view, at) => view.getInt32(at, true));
  }
  u64(): bigint {
    return this.number(8, (view, at) => view.getBigUint64(at, true));
  }
  i64(): bigint {
    return this.number(8, (view, at) => view.getBigInt64(at, true));
  }
  f32(): number {
    return this.number(4, (view, at) => view.getFloat32(at, true));
  }
  f64(): number {
    return this.number(8, (view, at) => view.getFloat64(at, true));
  }
  /** Big-endian float64 (pickle's BINFLOAT). */
  f64be(): number {
    return this.number(8, (view, at) => view.getFloat64(at, false));
  }

  /** A u64 that must fit a JS number exactly (a count, a length, an offset). */
  u64Safe(what: string): number {
    const value = this.u64();
    if (value >= TWO_POW_53) throw this.fail(`${what} ${value} is too large`);
    return Number(value);
  }

  /** Throws unless `length` more bytes are available. */
  require(length: number): void {
    if (!(Number.isSafeInteger(length) && length >= 0)) throw this.fail(`invalid length ${length}`);
    if (length > this.end - this.position) {
      throw this.fail(
        `truncated: ${length} bytes needed at offset ${this.position}, only ${this.end - this.position} left`,
      );
    }
  }

  /** Reads a `length`-byte number at the position and advances (the window may be refilled first). */
  private number<T>(length: number, get: (view: DataView, at: number) => T): T {
    this.require(length);
    const at = this.fill(length);
    this.position += length;
    return get(this.windowView, at);
  }

  /** Makes `[position, position + length)` resident in the window; returns its index there. */
  private fill(length: number): number {
    const at = this.position - this.windowStart;
    if (at >= 0 && at + length <= this.window.length) return at;
    const size = Math.min(this.end - this.position, Math.max(length, WINDOW_BYTES));
    this.window = this.source.read(this.position, size);
    this.windowView = new DataView(this.window.buffer, this.window.byteOffset, this.window.byteLength);
    this.windowStart = this.position;
    return 0;
  }
}
