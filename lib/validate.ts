/**
 * Argument checks with one message shape for the whole API:
 * "Expected <what> for <name> but received <value> of type <type>". Type problems throw
 * TypeError, range problems RangeError, unknown option names are reported with a suggestion.
 */

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 40 ? `${value.slice(0, 40)}...` : value}' of type string`;
  if (value === null) return 'null';
  if (typeof value === 'object') return `a value of type ${value.constructor?.name ?? 'object'}`;
  return `${String(value)} of type ${typeof value}`;
}

export function invalidParameter(name: string, expected: string, actual: unknown, range = false): Error {
  const message = `Expected ${expected} for ${name} but received ${describe(actual)}`;
  return range ? new RangeError(message) : new TypeError(message);
}

export function integerIn(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw invalidParameter(name, `an integer from ${min}`, value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalidParameter(name, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, value, true);
  }
  return value;
}

export function numberIn(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidParameter(name, `a number from ${min} to ${max}`, value);
  if (value < min || value > max) throw invalidParameter(name, `a number from ${min} to ${max}`, value, true);
  return value;
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw invalidParameter(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value, typeof value === 'string');
  }
  return value as T;
}

/** Rejects option names that are not in `known`, naming the closest known one. */
export function knownOptions(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const close = known.find((k) => k.toLowerCase() === key.toLowerCase());
    throw new TypeError(close ? `Misspelled option "${key}" for ${what} should be "${close}"` : `Unknown option "${key}" for ${what}; known options: ${known.join(', ')}`);
  }
}

export function plainObject(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidParameter(name, 'an options object', value);
  return value as Record<string, unknown>;
}
