/** Assertions on the typed errors lowbit throws. */
import assert from 'node:assert/strict';
import { LowbitFormatError } from '../../lib/errors';

/** Runs `run`, which must throw a LowbitFormatError (whose message matches `pattern` and whose key is `key`, when given); returns it. */
export function formatError(run: () => unknown, pattern?: RegExp, key?: string): LowbitFormatError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof LowbitFormatError, `expected LowbitFormatError, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    if (key !== undefined) assert.equal(error.key, key);
    return error;
  }
  assert.fail('expected LowbitFormatError, nothing was thrown');
}
