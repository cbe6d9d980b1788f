/**
 * lib/io: read every model container lowbit supports, and write GGUF and safetensors.
 * `openModel` tells containers apart by content (magic numbers), or by being a folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { ByteCursor } from './cursor';
import { GGUF_MAGIC, openGguf } from './gguf';
import { openHfDirectory } from './hf';
import { LLAMA2C_MAGIC, looksLikeLlama2c, openLlama2c } from './llama2c';
import { looksLikeLowbit, openLowbitFile } from './lowbit-format';
import { FileSource } from './source';
import type { ModelSource } from './types';
import { looksLikeZip } from './zip';

/** What `detectContainer` recognises. */
export type DetectedContainer = 'hf-dir' | 'gguf' | 'llama2c' | 'safetensors' | 'lowbit' | 'pytorch' | 'shard-index';

/** PyTorch's pre-1.6 (non-zip) files start by pickling this magic number (protocol 2, LONG1). */
const LEGACY_TORCH_MAGIC = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

/** Recognises the container at `filePath` from its content; undefined when it is none lowbit reads. */
export function detectContainer(filePath: string): DetectedContainer | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(filePath);
  } catch (error) {
    throw new LowbitFormatError(filePath, `cannot open: ${(error as Error).message}`, undefined, { cause: error });
  }
  if (stat.isDirectory()) return 'hf-dir';
  if (filePath.endsWith('.index.json')) return 'shard-index';
  const source = FileSource.open(filePath);
  try {
    if (source.size < 4) return undefined;
    const magic = new ByteCursor(source).u32();
    if (magic === GGUF_MAGIC) return 'gguf';
    if (looksLikeZip(source)) return 'pytorch';
    if (magic === LLAMA2C_MAGIC) return 'llama2c';
    if (looksLikeSafetensors(source)) return looksLikeLowbit(source) ? 'lowbit' : 'safetensors';
    if (looksLikeLlama2c(source)) return 'llama2c';
    const start = source.read(0, Math.min(source.size, LEGACY_TORCH_MAGIC.length));
    if (LEGACY_TORCH_MAGIC.every((byte, i) => start[i] === byte)) {
      throw new LowbitFormatError(filePath, 'legacy (pre-1.6, non-zip) PyTorch files are not supported; re-save with a current torch.save');
    }
    return undefined;
  } finally {
    source.close();
  }
}

/** A u64 header length that fits the file, then `{`. */
function looksLikeSafetensors(source: FileSource): boolean {
  if (source.size < 9) return false;
  const cursor = new ByteCursor(source);
  const headerLength = cursor.u64();
  return headerLength >= 2n && headerLength <= BigInt(source.size - 8) && cursor.u8() === 0x7b;
}

/** Options of `openModel`. */
export interface OpenModelOptions {
  /** A tokenizer file to use instead of the one the model names or sits next to. */
  readonly tokenizer?: string;
}

/**
 * Opens a model: a GGUF file, a llama2.c `.bin`, a lowbit file (safetensors with lowbit metadata,
 * docs/FORMAT.md), or a Hugging Face folder (a safetensors or pytorch_model.bin file, or a shard
 * index, opens the folder it sits in, which needs config.json).
 * Throws LowbitFormatError for anything it cannot read. Call `close()` on the result.
 */
export function openModel(modelPath: string, options: OpenModelOptions = {}): ModelSource {
  const container = detectContainer(modelPath);
  switch (container) {
    case 'hf-dir':
      return openHfDirectory(modelPath, options);
    case 'gguf':
      return openGguf(modelPath, options);
    case 'llama2c':
      return openLlama2c(modelPath, options);
    case 'lowbit':
      return openLowbitFile(modelPath, options);
    case 'safetensors':
    case 'pytorch':
    case 'shard-index': {
      const dir = path.dirname(modelPath);
      if (!fs.existsSync(path.join(dir, 'config.json'))) {
        throw new LowbitFormatError(modelPath, `a ${container} file has no Llama config: config.json must sit next to it`);
      }
      return openHfDirectory(dir, { ...options, weights: modelPath });
    }
    default:
      throw new LowbitFormatError(modelPath, 'not a model container lowbit reads (GGUF, llama2.c, lowbit, safetensors, PyTorch zip, Hugging Face folder)');
  }
}

/** The reader contract: ModelSource, TensorInfo, LlamaConfig, TokenizerSource ... */
export type * from './types';
export { type ByteSource, BufferSource, FileSource } from './source';
export { ByteCursor } from './cursor';
export {
  type BlockCodes,
  type DTypeLayout,
  bf16ToF32,
  blockCodes,
  checkedSize,
  dequantizeToF32,
  dtypeLayout,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isBlockDType,
  tensorByteLength,
} from './dtypes';
export { EMBED_TOKENS, FINAL_NORM, LAYER_ROLES, LM_HEAD, type LayerRole, canonicalShapes, layerTensorName } from './llama';
export { type TensorFile } from './tensors';
export { type Llama2cHeader, type Llama2cOptions, openLlama2c, readLlama2cHeader } from './llama2c';
export {
  GGML_TYPE_IDS,
  type GgufHeader,
  type GgufOptions,
  type GgufTensorDType,
  type GgufTensorEntry,
  type GgufTypeInfo,
  GgufValueType,
  canonicalTensorName,
  ggufTensorName,
  openGguf,
  readGgufHeader,
  readGgufMetadata,
} from './gguf';
export { type SafetensorsHeader, SAFETENSORS_DTYPES, openSafetensors, readSafetensorsHeader } from './safetensors';
export { openPytorchCheckpoint } from './pytorch';
export { type HfOptions, openHfDirectory, openWeights, readHfConfig } from './hf';
export { type GgufMetadataValue, type GgufTensorInput, type GgufTypedValue, ggufTyped, writeGguf } from './gguf-writer';
export {
  type SafetensorsStreamTensor, type SafetensorsTensorInput, safetensorsLayout, writeSafetensors, writeSafetensorsStream,
} from './safetensors-writer';
export {
  LOWBIT_FORMAT_VERSION, type LowbitFileContent, type LowbitFileDescription, type LowbitRecipe, type LowbitTensorInfo,
  type LowbitTensorToWrite, type LowbitTokenizer, describeLowbitFile, isLowbitTensor, openLowbitFile, planLowbitFile, writeLowbitFile,
} from './lowbit-format';
export { type TensorBytes } from './byte-writer';
