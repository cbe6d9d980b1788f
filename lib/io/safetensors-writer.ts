/**
 * safetensors writer: the JSON header (with `__metadata__`) padded with spaces so the data section
 * starts 8-byte aligned, then the tensors back to back in the order given (the format allows no gaps
 * between tensors), streamed to disk one tensor (or one chunk of a tensor) at a time.
 */
import * as fs from 'node:fs';
import { ByteWriter, type TensorBytes, resolveBytes, tensorBytesToWrite, writeFile } from './byte-writer';
import { safetensorsDtypeName } from './safetensors';
import type { TensorDType } from './types';

/** One tensor to write. */
export interface SafetensorsTensorInput {
  readonly name: string;
  readonly dtype: TensorDType;
  /** Row-major shape. */
  readonly shape: readonly number[];
  readonly data: TensorBytes;
}

/** Name, dtype and shape of a tensor: all the header needs. */
export type SafetensorsTensorSpec = Pick<SafetensorsTensorInput, 'name' | 'dtype' | 'shape'>;

/** The header bytes (length prefix included) of a file holding `tensors`, and each tensor's byte length. */
export interface SafetensorsLayout {
  readonly header: Uint8Array;
  readonly byteLengths: readonly number[];
  /** Bytes of the whole file. */
  readonly fileBytes: number;
}

/** Lays out a safetensors file: header and tensor sizes, without any tensor data. */
export function safetensorsLayout(
  path: string,
  tensors: readonly SafetensorsTensorSpec[],
  metadata: Readonly<Record<string, string>> = {},
): SafetensorsLayout {
  // A null prototype, so that a tensor called __proto__ is an ordinary key.
  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const byteLengths = tensors.map((tensor) => {
    const dtypeName = safetensorsDtypeName(tensor.dtype);
    if (dtypeName === undefined) throw new RangeError(`${tensor.name}: safetensors cannot store dtype ${tensor.dtype}`);
    if (tensor.name === '__metadata__' || Object.hasOwn(header, tensor.name)) throw new RangeError(`duplicate or reserved tensor name ${tensor.name}`);
    const byteLength = tensorBytesToWrite(path, tensor);
    header[tensor.name] = { dtype: dtypeName, shape: [...tensor.shape], data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
    return byteLength;
  });
  const json = new ByteWriter().utf8(JSON.stringify(header));
  // Pad with spaces (valid JSON whitespace) so that 8 + header length is a multiple of 8.
  while (json.size % 8 !== 0) json.u8(0x20);
  const bytes = new ByteWriter().u64(json.size).raw(json.bytes()).bytes().slice();
  return { header: bytes, byteLengths, fileBytes: bytes.length + offset };
}

function checkLength(tensor: SafetensorsTensorSpec, given: number, needed: number): void {
  if (given !== needed) throw new RangeError(`${tensor.name}: ${given} bytes given, ${tensor.dtype} [${tensor.shape.join(', ')}] needs ${needed}`);
}

/** Writes a safetensors file at `path` (replacing it); `metadata` becomes `__metadata__`. */
export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorInput[],
  metadata: Readonly<Record<string, string>> = {},
): void {
  const layout = safetensorsLayout(path, tensors, metadata);
  writeFile(path, (out) => {
    out.write(layout.header);
    tensors.forEach((tensor, i) => {
      const bytes = resolveBytes(tensor.data);
      checkLength(tensor, bytes.length, layout.byteLengths[i]);
      out.write(bytes);
    });
  });
}

/** A tensor whose bytes are produced in chunks, e.g. one block of rows at a time. */
export interface SafetensorsStreamTensor extends SafetensorsTensorSpec {
  /** The tensor's bytes in order; their lengths must add up to what dtype and shape need. */
  chunks(): AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Options of `writeSafetensorsStream`. */
export interface SafetensorsStreamOptions {
  /** Called after each tensor is on disk, with its index. Defaults to none. */
  readonly onTensorWritten?: (index: number, tensor: SafetensorsStreamTensor) => void;
}

/**
 * Writes a safetensors file without holding more than one chunk of tensor data: the header comes
 * from names, dtypes and shapes alone. The file appears at `path` only when complete (it is
 * written next to it and renamed); on failure nothing is left behind. Resolves with its size.
 */
export async function writeSafetensorsStream(
  path: string,
  tensors: readonly SafetensorsStreamTensor[],
  metadata: Readonly<Record<string, string>> = {},
  options: SafetensorsStreamOptions = {},
): Promise<number> {
  const layout = safetensorsLayout(path, tensors, metadata);
  const partial = `${path}.partial-${process.pid}`;
  const handle = await fs.promises.open(partial, 'w');
  try {
    await writeAll(handle, layout.header);
    for (const [i, tensor] of tensors.entries()) {
      let written = 0;
      for await (const chunk of tensor.chunks()) {
        if (written + chunk.length > layout.byteLengths[i]) checkLength(tensor, written + chunk.length, layout.byteLengths[i]);
        await writeAll(handle, chunk);
        written += chunk.length;
      }
      checkLength(tensor, written, layout.byteLengths[i]);
      options.onTensorWritten?.(i, tensor);
    }
    await handle.close();
    await fs.promises.rename(partial, path);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.promises.rm(partial, { force: true });
    throw error;
  }
  return layout.fileBytes;
}

async function writeAll(handle: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
}
