/**
 * JSON in model files (safetensors headers, config.json, shard indexes): parsing with errors that
 * name the file, and typed field access that names the key at fault.
 */
import { LowbitFormatError } from '../errors';
import { readSideFile } from './source';

/** A parsed JSON object. */
export type JsonObject = { readonly [key: string]: unknown };

/** Whether `value` is a JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses UTF-8 JSON bytes; invalid UTF-8 or syntax is a LowbitFormatError naming `file` (and `key`). */
export function parseJson(file: string, bytes: Uint8Array, key?: string): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LowbitFormatError(file, 'JSON is not valid UTF-8', key);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new LowbitFormatError(file, `invalid JSON: ${(error as Error).message}`, key, { cause: error });
  }
}

/** Reads and parses a JSON file that must hold an object. */
export function readJsonObject(path: string): JsonObject {
  const value = parseJson(path, readSideFile(path));
  if (!isJsonObject(value)) throw new LowbitFormatError(path, 'expected a JSON object');
  return value;
}

/** Typed reads of the fields of one JSON object; errors name the file and the field. */
export class JsonFields {
  constructor(
    readonly file: string,
    readonly value: JsonObject,
  ) {}

  has(key: string): boolean {
    return Object.hasOwn(this.value, key) && this.value[key] !== null;
  }

  /** The field, or undefined when absent or null. */
  get(key: string): unknown {
    return this.has(key) ? this.value[key] : undefined;
  }

  fail(message: string, key: string): LowbitFormatError {
    return new LowbitFormatError(this.file, message, key);
  }

  number(key: string, fallback?: number): number {
    const value = this.get(key);
    if (value === undefined) {
      if (fallback === undefined) throw this.fail('missing', key);
      return fallback;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) throw this.fail(`expected a number, got ${JSON.stringify(value)}`, key);
    return value;
  }

  integer(key: string, fallback?: number): number {
    const value = this.number(key, fallback);
    if (!Number.isSafeInteger(value)) throw this.fail(`expected an integer, got ${value}`, key);
    return value;
  }

  string(key: string): string | undefined {
    const value = this.get(key);
    if (value !== undefined && typeof value !== 'string') throw this.fail(`expected a string, got ${JSON.stringify(value)}`, key);
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.get(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') throw this.fail(`expected true or false, got ${JSON.stringify(value)}`, key);
    return value;
  }

  /** A token id or list of ids (config.json's `eos_token_id` may be either). */
  tokenIds(key: string): number[] | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    const ids = Array.isArray(value) ? value : [value];
    if (!ids.every((id) => Number.isSafeInteger(id) && (id as number) >= 0)) {
      throw this.fail(`expected a token id or a list of them, got ${JSON.stringify(value)}`, key);
    }
    return ids as number[];
  }

  /** A nested object field as JsonFields, or undefined when absent. */
  object(key: string): JsonFields | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    if (!isJsonObject(value)) throw this.fail('expected an object', key);
    return new JsonFields(this.file, value);
  }
}
