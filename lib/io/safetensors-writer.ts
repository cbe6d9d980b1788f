/**
 * safetensors writer: the JSON header (with `__metadata__`) padded with spaces so the data section
 * starts 8-byte aligned, then the tensors back to back in the order given (the format allows no gaps
 * between tensors), streamed to disk one tensor at a time.
 */
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

/** Writes a safetensors file at `path` (replacing it); `metadata` becomes `__metadata__`. */
export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorInput[],
  metadata: Readonly<Record<string, string>> = {},
): void {
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
  writeFile(path, (out) => {
    out.write(new ByteWriter().u64(json.size).bytes());
    out.write(json.bytes());
    tensors.forEach((tensor, i) => {
      const bytes = resolveBytes(tensor.data);
      if (bytes.length !== byteLengths[i]) {
        throw new RangeError(`${tensor.name}: ${bytes.length} bytes given, ${tensor.dtype} [${tensor.shape.join(', ')}] needs ${byteLengths[i]}`);
      }
      out.write(bytes);
    });
  });
}
