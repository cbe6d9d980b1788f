/**
 * A minimal reader of the protobuf wire format, enough for SentencePiece's ModelProto: fields
 * are visited in file order and unknown ones skipped. Every length is checked by ByteCursor
 * against the bytes of the enclosing message.
 */
import { ByteCursor } from '../io/cursor';

/** Protobuf wire types (3 and 4, the deprecated groups, are rejected). */
export const WireType = { varint: 0, fixed64: 1, lengthDelimited: 2, fixed32: 5 } as const;

/** Longest varint protobuf writes (a negative int64). */
const MAX_VARINT_BYTES = 10;

/** Reads the fields of one message; nested messages get a reader bounded by their length. */
export class ProtoReader {
  constructor(private readonly cursor: ByteCursor) {}

  /** Calls `visit` for each field; it must read the value with one of the methods below or `skip`. */
  forEachField(visit: (field: number, wireType: number) => void): void {
    while (this.cursor.remaining > 0) {
      const key = this.varint();
      if (key.high !== 0 || key.low >>> 3 === 0) throw this.cursor.fail(`invalid field key at offset ${this.cursor.offset}`);
      visit(key.low >>> 3, key.low & 7);
    }
  }

  /** The low 32 bits and the rest (as a number) of a varint. */
  varint(): { low: number; high: number } {
    let low = 0;
    let high = 0;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const byte = this.cursor.u8();
      const bits = byte & 0x7f;
      if (i < 4) low |= bits << (7 * i);
      else if (i === 4) {
        low |= (bits & 0x0f) << 28;
        high = bits >>> 4;
      } else high += bits * 2 ** (7 * i - 32);
      if ((byte & 0x80) === 0) return { low: low >>> 0, high };
    }
    throw this.cursor.fail(`varint longer than ${MAX_VARINT_BYTES} bytes at offset ${this.cursor.offset}`);
  }

  /** An `int32` / enum field (negative values are written as 10-byte varints). */
  int32(): number {
    return this.varint().low | 0;
  }

  bool(): boolean {
    const { low, high } = this.varint();
    return low !== 0 || high !== 0;
  }

  /** A `float` field (fixed32). */
  float(): number {
    return this.cursor.f32();
  }

  /** A length-delimited field as a reader of its own bytes (a nested message). */
  message(): ProtoReader {
    const length = this.length();
    const nested = new ByteCursor(this.cursor.source, this.cursor.offset, this.cursor.offset + length);
    this.cursor.skip(length);
    return new ProtoReader(nested);
  }

  /** A `string` field; invalid UTF-8 is a format error. */
  string(): string {
    return this.cursor.utf8(this.length(), true);
  }

  /** Skips a `bytes` field; returns its length. */
  skipBytes(): number {
    const length = this.length();
    this.cursor.skip(length);
    return length;
  }

  /** Skips any field whose value is not wanted. */
  skip(wireType: number): void {
    if (wireType === WireType.varint) this.varint();
    else if (wireType === WireType.fixed64) this.cursor.skip(8);
    else if (wireType === WireType.fixed32) this.cursor.skip(4);
    else if (wireType === WireType.lengthDelimited) this.skipBytes();
    else throw this.cursor.fail(`unsupported wire type ${wireType} at offset ${this.cursor.offset}`);
  }

  /** Throws unless a field arrived with the wire type its schema gives it. */
  expect(field: string, wireType: number, expected: number): void {
    if (wireType !== expected) throw this.cursor.fail(`field ${field} has wire type ${wireType}, expected ${expected}`);
  }

  private length(): number {
    const { low, high } = this.varint();
    if (high !== 0 || low > this.cursor.remaining) {
      throw this.cursor.fail(`length ${high * 2 ** 32 + low} is past the end of the message (${this.cursor.remaining} bytes left)`);
    }
    return low;
  }
}
