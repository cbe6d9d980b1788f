/**
 * A growable little-endian byte buffer for building headers (GGUF header, ZIP records, pickles),
 * and the streaming file output the writers use for tensor data.
 */
import * as fs from 'node:fs';
import { tensorByteLength } from './dtypes';
import type { TensorDType } from './types';

/** Appends little-endian values to a buffer that grows as needed. */
export class ByteWriter {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  get size(): number {
    return this.length;
  }

  /** The bytes written so far (a view). */
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  u8(value: number): this {
    this.reserve(1).setUint8(this.length - 1, value);
    return this;
  }
  i8(value: number): this {
    this.reserve(1).setInt8(this.length - 1, value);
    return this;
  }
  u16(value: number): this {
    this.reserve(2).setUint16(this.length - 2, value, true);
    return this;
  }
  i16(value: number): this {
    this.reserve(2).setInt16(this.length - 2, value, true);
    return this;
  }
  u32(value: number): this {
    this.reserve(4).setUint32(this.length - 4, value, true);
    return this;
  }
  i32(value: number): this {
    this.reserve(4).setInt32(this.length - 4, value, true);
    return this;
  }
  u64(value: number | bigint): this {
    this.reserve(8).setBigUint64(this.length - 8, BigInt(value), true);
    return this;
  }
  i64(value: number | bigint): this {
    this.reserve(8).setBigInt64(this.length - 8, BigInt(value), true);
    return this;
  }
  f32(value: number): this {
    this.reserve(4).setFloat32(this.length - 4, value, true);
    return this;
  }
  f64(value: number): this {
    this.reserve(8).setFloat64(this.length - 8, value, true);
    return this;
  }
  /** Big-endian float64 (pickle's BINFLOAT). */
  f64be(value: number): this {
    this.reserve(8).setFloat64(this.length - 8, value, false);
    return this;
  }
  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length - bytes.length);
    return this;
  }
  /** UTF-8 bytes of `text`, without a length. */
  utf8(text: string): this {
    return this.raw(new TextEncoder().encode(text));
  }
  /** Zero bytes up to the next multiple of `alignment`. */
  padTo(alignment: number): this {
    const padding = (alignment - (this.length % alignment)) % alignment;
    this.reserve(padding);
    return this;
  }

  /** Grows by `count` zeroed bytes and returns the view to write them through. */
  private reserve(count: number): DataView {
    if (this.length + count > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + count));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length += count;
    return this.view;
  }
}

/** Tensor bytes given directly or produced on demand (e.g. `TensorInfo.read`), so writers can stream. */
export type TensorBytes = Uint8Array | (() => Uint8Array);

/** Sequential output to a file through one descriptor; bytes go to disk as they are written. */
export class FileOutput {
  private fd: number | undefined;
  private written = 0;

  constructor(readonly path: string) {
    this.fd = fs.openSync(path, 'w');
  }

  get offset(): number {
    return this.written;
  }

  write(bytes: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(this.fd, bytes, done, bytes.length - done);
    this.written += bytes.length;
  }

  /** Zero bytes up to the next multiple of `alignment`. */
  padTo(alignment: number): void {
    const padding = (alignment - (this.written % alignment)) % alignment;
    if (padding > 0) this.write(new Uint8Array(padding));
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Runs `write` on a FileOutput for `path`, closing it whatever happens (and removing a half-written file). */
export function writeFile(path: string, write: (out: FileOutput) => void): void {
  const out = new FileOutput(path);
  try {
    write(out);
    out.close();
  } catch (error) {
    out.close();
    fs.rmSync(path, { force: true });
    throw error;
  }
}

/** Materialises lazily given tensor bytes. */
export function resolveBytes(data: TensorBytes): Uint8Array {
  return typeof data === 'function' ? data() : data;
}

/** Byte length of a tensor a writer is given; a shape its dtype cannot store is an argument error (RangeError). */
export function tensorBytesToWrite(path: string, tensor: { readonly name: string; readonly dtype: TensorDType; readonly shape: readonly number[] }): number {
  try {
    return tensorByteLength(tensor.dtype, tensor.shape, path, tensor.name);
  } catch (error) {
    throw new RangeError((error as Error).message, { cause: error });
  }
}
