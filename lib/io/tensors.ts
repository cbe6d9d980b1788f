/**
 * Building blocks shared by the readers: tensors that read a byte range of an open file, the
 * overlap check for tensor byte ranges, the "named tensors of one container" shape, and the
 * ModelSource object every reader returns.
 */
import { LowbitFormatError } from '../errors';
import type { ByteSource } from './source';
import type { ModelSource, TensorDType, TensorInfo } from './types';

/** A tensor stored as `byteLength` bytes at `offset` of `source`. */
export function fileTensor(
  source: ByteSource,
  name: string,
  dtype: TensorDType,
  shape: readonly number[],
  offset: number,
  byteLength: number,
): TensorInfo {
  return Object.freeze({
    name,
    dtype,
    shape: Object.freeze([...shape]),
    byteLength,
    read: () => source.read(offset, byteLength),
  });
}

/** A stored byte range of a named tensor, for the overlap check. */
export interface ByteRange {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** Throws (naming the later tensor) when two non-empty ranges share a byte. */
export function checkDisjoint(file: string, ranges: readonly ByteRange[]): void {
  const sorted = ranges.filter((range) => range.end > range.start).sort((a, b) => a.start - b.start || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].start < sorted[i - 1].end) {
      throw new LowbitFormatError(file, `bytes overlap those of ${sorted[i - 1].name}`, sorted[i].name);
    }
  }
}

/** Named tensors read from one container (a weights file or a set of shards), open until close(). */
export interface TensorFile {
  readonly path: string;
  readonly container: 'safetensors' | 'pytorch';
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Container metadata (safetensors `__metadata__`; empty for PyTorch). */
  readonly metadata: ReadonlyMap<string, unknown>;
  close(): void;
}

/** Everything a ModelSource holds, as a reader assembles it. */
export type ModelSourceParts = Omit<ModelSource, 'close'>;

/** A ModelSource whose close() runs `close` once. */
export function createModelSource(parts: ModelSourceParts, close: () => void): ModelSource {
  let open = true;
  const { bosId, eosIds, chatTemplate, sharp, ...required } = parts;
  // Optional fields are left out rather than set to undefined.
  return Object.freeze({
    ...required,
    ...(bosId !== undefined && { bosId }),
    ...(eosIds !== undefined && { eosIds: Object.freeze([...eosIds]) }),
    ...(chatTemplate !== undefined && { chatTemplate }),
    ...(sharp !== undefined && { sharp }),
    config: Object.freeze({ ...parts.config }),
    close() {
      if (!open) return;
      open = false;
      close();
    },
  });
}

/**
 * Runs `open` and returns its result; if it throws, runs `cleanup` first. Readers use it so a file
 * rejected half-way through opening does not leak its descriptor.
 */
export function closeOnError<T>(cleanup: () => void, open: () => T): T {
  try {
    return open();
  } catch (error) {
    cleanup();
    throw error;
  }
}
