/** Errors thrown by lowbit. Every error carries a stable string `code`. */

export type LowbitErrorCode =
  | 'LOWBIT_BAD_FILE'
  | 'LOWBIT_UNSUPPORTED'
  | 'LOWBIT_UNSUPPORTED_ISA'
  | 'LOWBIT_OFF_GRID'
  | 'LOWBIT_BAD_INPUT'
  | 'LOWBIT_DISPOSED'
  | 'LOWBIT_BUSY'
  | 'LOWBIT_ABORTED'
  | 'LOWBIT_NATIVE';

/** Base class of every error lowbit raises itself (argument errors are plain TypeError/RangeError). */
export class LowbitError extends Error {
  readonly code: LowbitErrorCode;
  constructor(message: string, code: LowbitErrorCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LowbitError';
    this.code = code;
  }
}

/**
 * A model, tokenizer or tensor file that cannot be read: truncated, wrong magic, offsets past the
 * end, sizes that overflow, missing tensors, unsupported dtypes, inconsistent config.
 * `file` names the file; `key` names the tensor or metadata key at fault when there is one.
 */
export class LowbitFormatError extends LowbitError {
  readonly file: string;
  readonly key: string | undefined;
  constructor(file: string, message: string, key?: string, options?: { cause?: unknown }) {
    super(`${file}: ${key !== undefined ? `${key}: ` : ''}${message}`, 'LOWBIT_BAD_FILE', options);
    this.name = 'LowbitFormatError';
    this.file = file;
    this.key = key;
  }
}

/** Use of an object after `dispose()`. */
export class DisposedError extends LowbitError {
  constructor(what: string) {
    super(`${what} has been disposed`, 'LOWBIT_DISPOSED');
    this.name = 'DisposedError';
  }
}
