/**
 * Seeded mutation fuzzing of model files: byte flips, truncations, insertions, deletions and
 * length-field corruptions, concentrated on "hot" byte ranges (headers, tables) where they matter.
 * Each mutated file must either be rejected with LowbitFormatError or open and read completely;
 * reads are watched so that no single read asks for more bytes than the file has.
 */
import fs from 'node:fs';
import { LowbitFormatError } from '../../lib/errors';
import { seededRandom } from './env';

/** A byte range `[start, end)` mutations favour. */
export interface HotRange {
  readonly start: number;
  readonly end: number;
}

/** Values that break length and count fields in interesting ways (as u64 little-endian). */
function interestingValues(fileSize: number): bigint[] {
  const size = BigInt(fileSize);
  return [0n, 1n, 2n, 7n, 0x7fn, 0xffn, 0x7fffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n,
    size - 1n, size, size + 1n, size * 2n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
}

/**
 * A mutated file, described for failure messages. It equals the original before `changed.start`
 * and, when the lengths are equal, from `changed.end` on.
 */
export interface Mutation {
  readonly bytes: Uint8Array;
  readonly description: string;
  readonly changed: HotRange;
}

/** One mutation of `original`. */
export function mutate(original: Uint8Array, random: () => number, hot: readonly HotRange[]): Mutation {
  const pick = (n: number) => Math.floor(random() * n);
  const position = (): number => {
    if (hot.length > 0 && random() < 0.8) {
      const range = hot[pick(hot.length)];
      return Math.min(original.length - 1, range.start + pick(Math.max(1, range.end - range.start)));
    }
    return pick(original.length);
  };
  const kind = random();
  if (kind < 0.3) {
    const bytes = original.slice();
    const count = 1 + pick(4);
    const at: number[] = [];
    for (let i = 0; i < count; i++) {
      const p = position();
      bytes[p] ^= 1 + pick(255);
      at.push(p);
    }
    return { bytes, description: `flip bytes at ${at.join(', ')}`, changed: { start: Math.min(...at), end: Math.max(...at) + 1 } };
  }
  if (kind < 0.45) {
    const length = position();
    return { bytes: original.slice(0, length), description: `truncate to ${length}`, changed: { start: length, end: length } };
  }
  if (kind < 0.6) {
    const at = position();
    const inserted = Uint8Array.from({ length: 1 + pick(16) }, () => pick(256));
    const bytes = new Uint8Array(original.length + inserted.length);
    bytes.set(original.subarray(0, at));
    bytes.set(inserted, at);
    bytes.set(original.subarray(at), at + inserted.length);
    return { bytes, description: `insert ${inserted.length} bytes at ${at}`, changed: { start: at, end: bytes.length } };
  }
  if (kind < 0.7) {
    const at = position();
    const length = 1 + pick(16);
    const tail = original.subarray(Math.min(original.length, at + length));
    const bytes = new Uint8Array(at + tail.length);
    bytes.set(original.subarray(0, at));
    bytes.set(tail, at);
    return { bytes, description: `delete ${length} bytes at ${at}`, changed: { start: at, end: bytes.length } };
  }
  const values = interestingValues(original.length);
  const value = values[pick(values.length)];
  const width = random() < 0.5 ? 4 : 8;
  const at = Math.min(position(), original.length - width);
  const bytes = original.slice();
  const view = new DataView(bytes.buffer);
  if (width === 4) view.setUint32(at, Number(value & 0xffffffffn), true);
  else view.setBigUint64(at, BigInt.asUintN(64, value), true);
  return { bytes, description: `write u${width * 8} ${value} at ${at}`, changed: { start: at, end: at + width } };
}

/** Outcome counts of a fuzz run. */
export interface FuzzStats {
  rejected: number;
  opened: number;
  slowestMs: number;
}

/**
 * Runs `cases` seeded mutations of `original`: each is written to `target` and given to `check`,
 * which must open it and read everything. Fails on any error but LowbitFormatError, on a case
 * slower than `maxCaseMs`, and on a read larger than the mutated file.
 */
export function fuzzFile(options: {
  readonly original: Uint8Array;
  readonly target: string;
  readonly seed: number;
  readonly cases: number;
  readonly hot: readonly HotRange[];
  readonly check: (path: string) => void;
  readonly maxCaseMs?: number;
}): FuzzStats {
  const random = seededRandom(options.seed).uniform;
  const stats: FuzzStats = { rejected: 0, opened: 0, slowestMs: 0 };
  const realReadSync = fs.readSync;
  // Every read lib/io makes goes through fs.readSync into a buffer it allocated for that read:
  // none may be larger than the file read from.
  (fs as { readSync: unknown }).readSync = (fd: number, buffer: NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    const size = fs.fstatSync(fd).size;
    if (buffer.byteLength > size) throw new Error(`read into ${buffer.byteLength} bytes from a ${size}-byte file`);
    return (realReadSync as (...args: unknown[]) => number)(fd, buffer, ...rest);
  };
  fs.writeFileSync(options.target, options.original);
  const fd = fs.openSync(options.target, 'r+');
  try {
    for (let i = 0; i < options.cases; i++) {
      const mutation = mutate(options.original, random, options.hot);
      const { description } = mutation;
      const restore = patchFile(fd, options.original, mutation);
      const started = performance.now();
      try {
        options.check(options.target);
        stats.opened++;
      } catch (error) {
        if (!(error instanceof LowbitFormatError)) {
          throw new Error(`case ${i} (seed ${options.seed}, ${description}): ${String(error)}`, { cause: error });
        }
        stats.rejected++;
      }
      const elapsed = performance.now() - started;
      stats.slowestMs = Math.max(stats.slowestMs, elapsed);
      if (elapsed > (options.maxCaseMs ?? 2000)) throw new Error(`case ${i} (${description}) took ${elapsed.toFixed(0)} ms`);
      restore();
    }
  } finally {
    (fs as { readSync: unknown }).readSync = realReadSync;
    fs.closeSync(fd);
  }
  if (!fs.readFileSync(options.target).equals(options.original)) throw new Error('the fuzzed file was not restored after each case');
  return stats;
}

/**
 * Turns the file (holding `original`) into the mutated file by writing only the changed bytes, and
 * returns the function that turns it back: most mutations touch a few bytes of a 1 MB file.
 */
function patchFile(fd: number, original: Uint8Array, mutation: Mutation): () => void {
  const { start, end } = mutation.changed;
  const apply = (bytes: Uint8Array, until: number) => {
    if (until > start) fs.writeSync(fd, bytes, start, until - start, start);
    fs.ftruncateSync(fd, bytes.length);
  };
  apply(mutation.bytes, end);
  return () => apply(original, mutation.bytes.length === original.length ? end : original.length);
}
