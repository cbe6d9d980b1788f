/**
 * A restricted unpickler (protocol 2 to 5): a stack machine that only builds plain data (None,
 * bools, ints, floats, str, bytes, tuples, lists, dicts). Everything that would run code in Python
 * (GLOBAL, REDUCE, BUILD, persistent ids) is delegated to a policy that decides what a name means
 * and builds inert JS objects; opcodes that instantiate arbitrary classes are refused. Nothing is
 * ever executed.
 */
import { LowbitFormatError } from '../errors';
import { ByteCursor } from './cursor';
import type { ByteSource } from './source';

/** A tuple (kept apart from lists so persistent ids and call arguments can be told apart). */
export class PickleTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** An object made by an UnpicklePolicy (a resolved global, a storage, a tensor ...). */
export interface PickleObject {
  /** What the policy made, e.g. `global`, `storage`, `tensor`. */
  readonly pickleKind: string;
}

/** Dict keys the unpickler accepts. */
export type PickleKey = string | number | bigint | boolean | null;
/** What unpickling produces: plain data, tuples, dicts as Maps, and policy-made objects. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | Map<PickleKey, PickleValue>
  | PickleObject;

/** What the unpickler may not decide itself. Each hook throws (via `fail`) to refuse. */
export interface UnpicklePolicy {
  /** GLOBAL / STACK_GLOBAL `module.name`. */
  global(module: string, name: string, fail: (message: string) => LowbitFormatError): PickleValue;
  /** REDUCE: `callable(*args)`. */
  reduce(callable: PickleValue, args: PickleTuple, fail: (message: string) => LowbitFormatError): PickleValue;
  /** BUILD: `object.__setstate__(state)`; returns the object that stays on the stack. */
  build(object: PickleValue, state: PickleValue, fail: (message: string) => LowbitFormatError): PickleValue;
  /** BINPERSID: the object a persistent id refers to. */
  persistentLoad(pid: PickleValue, fail: (message: string) => LowbitFormatError): PickleValue;
}

/** Opcode names, for error messages about opcodes we refuse. */
const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT', 0x80: 'PROTO',
  0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Longest module or attribute name GLOBAL may carry. */
const MAX_GLOBAL_NAME = 256;
/** Longest LONG1/LONG4 integer accepted, in bytes. */
const MAX_LONG_BYTES = 64;

/** The machine state of one unpickling. */
class Machine {
  readonly stack: PickleValue[] = [];
  readonly marks: number[] = [];
  readonly memo = new Map<number, PickleValue>();
  result: { value: PickleValue } | undefined;

  constructor(
    readonly cursor: ByteCursor,
    readonly policy: UnpicklePolicy,
  ) {}

  readonly fail = (message: string): LowbitFormatError => this.cursor.fail(message);

  push(value: PickleValue): void {
    this.stack.push(value);
  }

  pop(): PickleValue {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) throw this.fail('stack underflow');
    return this.stack.pop() as PickleValue;
  }

  top(): PickleValue {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) throw this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }

  /** The items pushed since the last MARK, which is removed. */
  popMark(): PickleValue[] {
    const mark = this.marks.pop();
    if (mark === undefined) throw this.fail('no MARK on the stack');
    return this.stack.splice(mark);
  }

  memoGet(index: number): PickleValue {
    if (!this.memo.has(index)) throw this.fail(`memo entry ${index} was never stored`);
    return this.memo.get(index) as PickleValue;
  }

  list(value: PickleValue): PickleValue[] {
    if (!Array.isArray(value)) throw this.fail('APPEND on something that is not a list');
    return value;
  }

  dict(value: PickleValue): Map<PickleKey, PickleValue> {
    if (!(value instanceof Map)) throw this.fail('SETITEM on something that is not a dict');
    return value;
  }

  setItems(target: Map<PickleKey, PickleValue>, items: PickleValue[]): void {
    if (items.length % 2 !== 0) throw this.fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) target.set(this.key(items[i]), items[i + 1]);
  }

  key(value: PickleValue): PickleKey {
    const ok = value === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof value);
    if (!ok) throw this.fail('dict keys must be str, int, float, bool or None');
    return value as PickleKey;
  }

  text(length: number): string {
    return this.cursor.utf8(length);
  }

  /** A py2 str (BINSTRING): bytes as latin-1 text. */
  latin1(length: number): string {
    let text = '';
    for (const byte of this.cursor.bytes(length)) text += String.fromCharCode(byte);
    return text;
  }

  /** A newline-terminated ASCII name (GLOBAL's operands). */
  line(): string {
    let text = '';
    for (;;) {
      const byte = this.cursor.u8();
      if (byte === 0x0a) return text;
      if (text.length >= MAX_GLOBAL_NAME) throw this.fail('GLOBAL name too long');
      text += String.fromCharCode(byte);
    }
  }

  /** A little-endian two's-complement integer of `length` bytes (LONG1, LONG4). */
  long(length: number): number | bigint {
    // Checkpoints only hold sizes and offsets; a huge integer is an attack on bigint arithmetic.
    if (length > MAX_LONG_BYTES) throw this.fail(`integer of ${length} bytes is too large`);
    const bytes = this.cursor.bytes(length);
    let hex = '0x0';
    for (let i = bytes.length - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, '0');
    let value = BigInt(hex);
    if (length > 0 && bytes[length - 1] & 0x80) value -= 1n << BigInt(8 * length);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  global(module: string, name: string): void {
    this.push(this.policy.global(module, name, this.fail));
  }
}

type Operation = (m: Machine) => void;

/** What each accepted opcode does; opcodes absent here are refused. */
const OPERATIONS: Readonly<Record<number, Operation>> = {
  0x80: (m) => {
    const protocol = m.cursor.u8();
    if (protocol < 2 || protocol > 5) throw m.fail(`pickle protocol ${protocol} is not supported (2 to 5)`);
  },
  0x95: (m) => void m.cursor.u64(), // FRAME: a framing hint; the frame's opcodes follow inline
  0x2e: (m) => {
    m.result = { value: m.pop() };
  },
  0x28: (m) => void m.marks.push(m.stack.length),
  0x30: (m) => void m.pop(),
  0x31: (m) => void m.popMark(),
  0x32: (m) => m.push(m.top()),
  0x4e: (m) => m.push(null),
  0x88: (m) => m.push(true),
  0x89: (m) => m.push(false),
  0x4a: (m) => m.push(m.cursor.i32()),
  0x4b: (m) => m.push(m.cursor.u8()),
  0x4d: (m) => m.push(m.cursor.u16()),
  0x8a: (m) => m.push(m.long(m.cursor.u8())),
  0x8b: (m) => {
    const length = m.cursor.i32();
    if (length < 0) throw m.fail('negative LONG4 length');
    m.push(m.long(length));
  },
  0x47: (m) => m.push(m.cursor.f64be()),
  0x58: (m) => m.push(m.text(m.cursor.u32())),
  0x8c: (m) => m.push(m.text(m.cursor.u8())),
  0x8d: (m) => m.push(m.text(m.cursor.u64Safe('string length'))),
  0x55: (m) => m.push(m.latin1(m.cursor.u8())),
  0x54: (m) => {
    const length = m.cursor.i32();
    if (length < 0) throw m.fail('negative BINSTRING length');
    m.push(m.latin1(length));
  },
  0x43: (m) => m.push(m.cursor.bytes(m.cursor.u8()).slice()),
  0x42: (m) => m.push(m.cursor.bytes(m.cursor.u32()).slice()),
  0x8e: (m) => m.push(m.cursor.bytes(m.cursor.u64Safe('bytes length')).slice()),
  0x29: (m) => m.push(new PickleTuple([])),
  0x74: (m) => m.push(new PickleTuple(m.popMark())),
  0x85: (m) => m.push(new PickleTuple([m.pop()])),
  0x86: (m) => {
    const b = m.pop();
    m.push(new PickleTuple([m.pop(), b]));
  },
  0x87: (m) => {
    const c = m.pop();
    const b = m.pop();
    m.push(new PickleTuple([m.pop(), b, c]));
  },
  0x5d: (m) => m.push([]),
  0x6c: (m) => m.push(m.popMark()),
  0x61: (m) => {
    const item = m.pop();
    m.list(m.top()).push(item);
  },
  0x65: (m) => {
    const items = m.popMark();
    const list = m.list(m.top());
    for (const item of items) list.push(item);
  },
  0x7d: (m) => m.push(new Map()),
  0x64: (m) => {
    const dict = new Map<PickleKey, PickleValue>();
    m.setItems(dict, m.popMark());
    m.push(dict);
  },
  0x73: (m) => {
    const value = m.pop();
    const key = m.pop();
    m.setItems(m.dict(m.top()), [key, value]);
  },
  0x75: (m) => {
    const items = m.popMark();
    m.setItems(m.dict(m.top()), items);
  },
  0x71: (m) => void m.memo.set(m.cursor.u8(), m.top()),
  0x72: (m) => void m.memo.set(m.cursor.u32(), m.top()),
  0x94: (m) => void m.memo.set(m.memo.size, m.top()),
  0x68: (m) => m.push(m.memoGet(m.cursor.u8())),
  0x6a: (m) => m.push(m.memoGet(m.cursor.u32())),
  0x63: (m) => {
    const module = m.line();
    m.global(module, m.line());
  },
  0x93: (m) => {
    const name = m.pop();
    const module = m.pop();
    if (typeof module !== 'string' || typeof name !== 'string') throw m.fail('STACK_GLOBAL needs two strings');
    m.global(module, name);
  },
  0x52: (m) => {
    const args = m.pop();
    const callable = m.pop();
    if (!(args instanceof PickleTuple)) throw m.fail('REDUCE arguments are not a tuple');
    m.push(m.policy.reduce(callable, args, m.fail));
  },
  0x62: (m) => {
    const state = m.pop();
    m.push(m.policy.build(m.pop(), state, m.fail));
  },
  0x51: (m) => m.push(m.policy.persistentLoad(m.pop(), m.fail)),
};

/**
 * Unpickles `source` (a whole pickle) under `policy`. Errors are LowbitFormatErrors naming the
 * source's file and `key` (e.g. the archive entry), with the offending opcode or global in the message.
 */
export function unpickle(source: ByteSource, policy: UnpicklePolicy, key: string): PickleValue {
  const cursor = new ByteCursor(source);
  return cursor.within(key, () => {
    const machine = new Machine(cursor, policy);
    if (source.size === 0 || cursor.u8() !== 0x80) throw cursor.fail('not a pickle of protocol 2 or later (no PROTO opcode)');
    cursor.seek(0);
    while (machine.result === undefined) {
      const at = cursor.offset;
      const opcode = cursor.u8();
      const operation = OPERATIONS[opcode];
      if (operation === undefined) {
        const name = OPCODE_NAMES[opcode];
        throw cursor.fail(`opcode ${name ?? `0x${opcode.toString(16)}`} at offset ${at} is not allowed${name === undefined ? ' (unknown)' : ''}`);
      }
      operation(machine);
    }
    return machine.result.value;
  });
}
