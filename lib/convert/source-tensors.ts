/**
 * Tensors of a source model as the converters (quantize, sharp) read and store them: any stored
 * tensor as float32 values, and float tensors (embeddings, head, norms) ready to write.
 */
import { LowbitFormatError } from '../errors';
import { dequantizeToF32, f32ToBf16, f32ToF16 } from '../io/dtypes';
import { type LowbitFloatFormat, type LowbitTensorToWrite, isLowbitTensor } from '../io/lowbit-format';
import type { ModelSource, TensorInfo } from '../io/types';
import { tensorFromPacked } from '../qtensor';

function elementCount(info: TensorInfo): number {
  return info.shape.reduce((a, b) => a * b, 1);
}

/** Any stored tensor as float32 values (a lowbit file's packed weights dequantized). */
export function floatValues(source: ModelSource, info: TensorInfo): Float32Array {
  try {
    if (!isLowbitTensor(info)) return dequantizeToF32(info.dtype, info.read(), elementCount(info));
    const t = tensorFromPacked(info.format, info.shape[0], info.shape[1], info.group, info.read(), info.readScales());
    try {
      return t.dequantize();
    } finally {
      t.dispose();
    }
  } catch (error) {
    if (error instanceof LowbitFormatError) throw error;
    throw new LowbitFormatError(source.path, `cannot read ${info.dtype} weights: ${(error as Error).message}`, info.name, { cause: error });
  }
}

/** Elements converted per chunk of a float tensor (bounds the memory of a 128k-token embedding). */
const FLOAT_CHUNK_ELEMENTS = 1 << 22;

/** A float tensor stored as `format`, converted from the source's dtype when it differs. */
export function floatTensor(source: ModelSource, info: TensorInfo, format: LowbitFloatFormat): LowbitTensorToWrite {
  return {
    name: info.name, format, shape: info.shape,
    *data() {
      if (info.dtype === format) {
        yield info.read();
        return;
      }
      const values = floatValues(source, info);
      for (let at = 0; at < values.length; at += FLOAT_CHUNK_ELEMENTS) {
        const part = values.subarray(at, at + FLOAT_CHUNK_ELEMENTS);
        const encoded = format === 'f32' ? part : Uint16Array.from(part, format === 'f16' ? f32ToF16 : f32ToBf16);
        yield new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
      }
    },
  };
}
