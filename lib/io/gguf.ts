/**
 * GGUF v2/v3 reader (llama.cpp's container): header, typed metadata (every value type, nested
 * arrays), tensor infos and the aligned data section. llama.cpp tensor names are mapped to the
 * canonical Hugging Face names and GGUF's dims (ne[0] innermost) are reversed to row-major shapes.
 * Quantized tensors keep their ggml block layout (see dtypes.ts).
 */
import { LowbitFormatError } from '../errors';
import type { ByteWriter } from './byte-writer';
import { ByteCursor } from './cursor';
import { checkedSize, tensorByteLength } from './dtypes';
import {
  EMBED_TOKENS,
  FINAL_NORM,
  LAYER_ROLES,
  LM_HEAD,
  type LayerRole,
  checkLlamaConfig,
  checkLlamaTensors,
  layerTensorName,
  shortestF32Decimal,
} from './llama';
import { type ByteSource, FileSource } from './source';
import { type ByteRange, checkDisjoint, closeOnError, createModelSource, fileTensor } from './tensors';
import type { GgufValue, LlamaConfig, ModelSource, TensorInfo, TokenizerSource } from './types';

/** "GGUF" read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
/** Alignment of the data section and of every tensor when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Deeper nesting of metadata arrays is rejected (the spec allows nesting; no real file goes deep). */
const MAX_ARRAY_DEPTH = 8;

/** GGUF metadata value types (gguf_type). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
/** One of the GgufValueType codes. */
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** The stored type of a metadata value; for arrays, the type of their elements (first inner array's when nested). */
export interface GgufTypeInfo {
  readonly type: GgufValueType;
  readonly elementType?: GgufTypeInfo;
}

/** How one scalar value type is stored: read, written, and which JS values it can hold. */
interface ScalarCodec {
  /** Bytes of one value (strings: of their u64 length prefix, the least a string takes). */
  readonly bytes: number;
  read(cursor: ByteCursor): GgufValue;
  accepts(value: GgufValue): boolean;
  write(out: ByteWriter, value: GgufValue): void;
}

type ScalarType = Exclude<GgufValueType, 9>;

/** An integer type spanning [min, max], read as a number (bigint for 64-bit types). */
function integerCodec(bytes: number, min: bigint, max: bigint, read: (c: ByteCursor) => GgufValue, write: (out: ByteWriter, value: bigint) => void): ScalarCodec {
  return {
    bytes,
    read,
    accepts: (value) =>
      (typeof value === 'bigint' || (typeof value === 'number' && Number.isSafeInteger(value))) && BigInt(value) >= min && BigInt(value) <= max,
    write: (out, value) => write(out, BigInt(value as number | bigint)),
  };
}

/** The one table of GGUF scalar types, used by the reader and the writer. */
export const GGUF_SCALARS: Readonly<Record<ScalarType, ScalarCodec>> = {
  [GgufValueType.UINT8]: integerCodec(1, 0n, 0xffn, (c) => c.u8(), (out, v) => out.u8(Number(v))),
  [GgufValueType.INT8]: integerCodec(1, -0x80n, 0x7fn, (c) => c.i8(), (out, v) => out.i8(Number(v))),
  [GgufValueType.UINT16]: integerCodec(2, 0n, 0xffffn, (c) => c.u16(), (out, v) => out.u16(Number(v))),
  [GgufValueType.INT16]: integerCodec(2, -0x8000n, 0x7fffn, (c) => c.i16(), (out, v) => out.i16(Number(v))),
  [GgufValueType.UINT32]: integerCodec(4, 0n, 0xffffffffn, (c) => c.u32(), (out, v) => out.u32(Number(v))),
  [GgufValueType.INT32]: integerCodec(4, -0x80000000n, 0x7fffffffn, (c) => c.i32(), (out, v) => out.i32(Number(v))),
  [GgufValueType.UINT64]: integerCodec(8, 0n, 2n ** 64n - 1n, (c) => c.u64(), (out, v) => out.u64(v)),
  [GgufValueType.INT64]: integerCodec(8, -(2n ** 63n), 2n ** 63n - 1n, (c) => c.i64(), (out, v) => out.i64(v)),
  [GgufValueType.FLOAT32]: {
    bytes: 4,
    read: (c) => c.f32(),
    accepts: (value) => typeof value === 'number',
    write: (out, value) => out.f32(value as number),
  },
  [GgufValueType.FLOAT64]: {
    bytes: 8,
    read: (c) => c.f64(),
    accepts: (value) => typeof value === 'number',
    write: (out, value) => out.f64(value as number),
  },
  [GgufValueType.BOOL]: {
    bytes: 1,
    read: (c) => {
      const byte = c.u8();
      if (byte > 1) throw c.fail(`bool must be 0 or 1, got ${byte}`);
      return byte === 1;
    },
    accepts: (value) => typeof value === 'boolean',
    write: (out, value) => out.u8(value ? 1 : 0),
  },
  [GgufValueType.STRING]: {
    bytes: 8,
    read: (c) => readGgufString(c),
    accepts: (value) => typeof value === 'string',
    write: (out, value) => writeGgufString(out, value as string),
  },
};

/** Bytes the smallest array takes: element type and count. */
const ARRAY_HEADER_BYTES = 12;

/** Fewest bytes one value of `type` occupies, or undefined for an unknown type. */
function minValueBytes(type: number): number | undefined {
  return type === GgufValueType.ARRAY ? ARRAY_HEADER_BYTES : GGUF_SCALARS[type as ScalarType]?.bytes;
}

/** ggml tensor type ids of the dtypes lowbit reads from and writes to GGUF. */
export const GGML_TYPE_IDS = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, bf16: 30, tq1_0: 34, tq2_0: 35 } as const;
/** The TensorDTypes GGUF files can hold for lowbit. */
export type GgufTensorDType = keyof typeof GGML_TYPE_IDS;
const DTYPE_OF_GGML_TYPE = new Map<number, GgufTensorDType>(
  Object.entries(GGML_TYPE_IDS).map(([dtype, id]) => [id, dtype as GgufTensorDType]),
);

/** ggml type names by id, for error messages only. */
const GGML_TYPE_NAMES = [
  'F32', 'F16', 'Q4_0', 'Q4_1', 'Q4_2', 'Q4_3', 'Q5_0', 'Q5_1', 'Q8_0', 'Q8_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K',
  'Q6_K', 'Q8_K', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS', 'IQ1_S', 'IQ4_NL', 'IQ3_S', 'IQ2_S', 'IQ4_XS', 'I8', 'I16',
  'I32', 'I64', 'F64', 'IQ1_M', 'BF16', 'Q4_0_4_4', 'Q4_0_4_8', 'Q4_0_8_8', 'TQ1_0', 'TQ2_0',
];

/** One tensor info of a GGUF header, as stored. */
export interface GgufTensorEntry {
  /** llama.cpp name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  readonly dtype: GgufTensorDType;
  /** ggml dims, innermost (contiguous) first. */
  readonly ne: readonly number[];
  /** Row-major shape: `ne` reversed. */
  readonly shape: readonly number[];
  /** Absolute file offset of the tensor's bytes. */
  readonly offset: number;
  readonly byteLength: number;
}

/** A parsed and validated GGUF header. */
export interface GgufHeader {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Stored type of every metadata value (needed to write the same value back). */
  readonly types: ReadonlyMap<string, GgufTypeInfo>;
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  readonly tensors: readonly GgufTensorEntry[];
}

function readGgufString(cursor: ByteCursor): string {
  const length = cursor.u64Safe('string length');
  return cursor.utf8(length);
}

/** A GGUF string: u64 byte length, then UTF-8. */
export function writeGgufString(out: ByteWriter, text: string): void {
  const bytes = new TextEncoder().encode(text);
  out.u64(bytes.length).raw(bytes);
}

/** Reads one value of `type`; arrays recurse (bounded by MAX_ARRAY_DEPTH). */
function readValue(cursor: ByteCursor, type: number, depth: number): { value: GgufValue; info: GgufTypeInfo } {
  if (type === GgufValueType.ARRAY) {
    if (depth >= MAX_ARRAY_DEPTH) throw cursor.fail(`arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
    const elementType = cursor.u32();
    const count = cursor.u64Safe('array length');
    const elementBytes = minValueBytes(elementType);
    if (elementBytes === undefined) throw cursor.fail(`unknown array element type ${elementType}`);
    // Reject counts the remaining bytes cannot hold before allocating anything.
    checkedSize([count, elementBytes], cursor.remaining, cursor.file, cursor.key);
    const values: GgufValue[] = [];
    let elementInfo: GgufTypeInfo = { type: elementType as GgufValueType };
    for (let i = 0; i < count; i++) {
      const element = readValue(cursor, elementType, depth + 1);
      values.push(element.value);
      if (i === 0) elementInfo = element.info;
    }
    return { value: values, info: { type: GgufValueType.ARRAY, elementType: elementInfo } };
  }
  const codec = GGUF_SCALARS[type as ScalarType];
  if (codec === undefined) throw cursor.fail(`unknown value type ${type}`);
  return { value: codec.read(cursor), info: { type: type as GgufValueType } };
}

/** Reads and validates the header of a GGUF file: metadata, tensor infos, alignment, data bounds. */
export function readGgufHeader(source: ByteSource): GgufHeader {
  const cursor = new ByteCursor(source);
  const file = source.file;
  if (source.size < 4 || cursor.u32() !== GGUF_MAGIC) throw cursor.fail('not a GGUF file (bad magic)');
  const version = cursor.within('version', () => cursor.u32());
  if (version !== 2 && version !== 3) {
    const hint = version >= 0x01000000 ? ' (big-endian GGUF is not supported)' : '';
    throw cursor.fail(`GGUF version ${version} is not supported, only 2 and 3${hint}`, 'version');
  }
  const tensorCount = cursor.within('tensor_count', () => cursor.u64Safe('tensor count'));
  const kvCount = cursor.within('metadata_kv_count', () => cursor.u64Safe('metadata count'));
  checkedSize([kvCount, 8 + 4 + 1], cursor.remaining, file, 'metadata_kv_count');
  checkedSize([tensorCount, 8 + 4 + 8 + 4 + 8], cursor.remaining, file, 'tensor_count');

  const metadata = new Map<string, GgufValue>();
  const types = new Map<string, GgufTypeInfo>();
  for (let i = 0; i < kvCount; i++) {
    const key = cursor.within(`metadata key #${i}`, () => readGgufString(cursor));
    if (metadata.has(key)) throw cursor.fail('duplicate metadata key', key);
    const { value, info } = cursor.within(key, () => readValue(cursor, cursor.u32(), 0));
    metadata.set(key, value);
    types.set(key, info);
  }
  const alignment = readAlignment(file, metadata);

  const raw: { name: string; dtype: GgufTensorDType; ne: number[]; relativeOffset: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = cursor.within(`tensor #${i}`, () => readGgufString(cursor));
    cursor.within(name, () => {
      const nDims = cursor.u32();
      if (nDims < 1 || nDims > MAX_DIMS) throw cursor.fail(`has ${nDims} dims; 1 to ${MAX_DIMS} are allowed`);
      const ne = Array.from({ length: nDims }, () => cursor.u64Safe('dimension'));
      const typeId = cursor.u32();
      const dtype = DTYPE_OF_GGML_TYPE.get(typeId);
      if (dtype === undefined) {
        throw cursor.fail(`tensor type ${GGML_TYPE_NAMES[typeId] ?? 'unknown'} (${typeId}) is not supported`);
      }
      const relativeOffset = cursor.u64Safe('offset');
      if (relativeOffset % alignment !== 0) throw cursor.fail(`offset ${relativeOffset} is not a multiple of the alignment ${alignment}`);
      raw.push({ name, dtype, ne, relativeOffset });
    });
  }
  const dataOffset = Math.ceil(cursor.offset / alignment) * alignment;

  const names = new Set<string>();
  const tensors = raw.map(({ name, dtype, ne, relativeOffset }): GgufTensorEntry => {
    if (names.has(name)) throw new LowbitFormatError(file, 'duplicate tensor name', name);
    names.add(name);
    const shape = [...ne].reverse();
    const byteLength = tensorByteLength(dtype, shape, file, name, source.size);
    const offset = dataOffset + relativeOffset;
    if (offset + byteLength > source.size) {
      throw new LowbitFormatError(file, `data [${offset}, ${offset + byteLength}) runs past the end of the file (${source.size} bytes)`, name);
    }
    return { name, dtype, ne, shape, offset, byteLength };
  });
  checkDisjoint(file, tensors.map((t): ByteRange => ({ name: t.name, start: t.offset, end: t.offset + t.byteLength })));
  return { version, metadata, types, alignment, dataOffset, tensors };
}

function readAlignment(file: string, metadata: ReadonlyMap<string, GgufValue>): number {
  const value = metadata.get('general.alignment');
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const alignment = typeof value === 'number' || typeof value === 'bigint' ? Number(value) : NaN;
  if (!(Number.isSafeInteger(alignment) && alignment > 0 && (alignment & (alignment - 1)) === 0 && alignment <= 2 ** 30)) {
    throw new LowbitFormatError(file, `must be a power of two, got ${String(value)}`, 'general.alignment');
  }
  return alignment;
}

/** Reads only the header (metadata and tensor infos) of the GGUF file at `path`; e.g. a vocabulary-only file. */
export function readGgufMetadata(path: string): GgufHeader {
  const source = FileSource.open(path);
  try {
    return readGgufHeader(source);
  } finally {
    source.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Names

const GLOBAL_TO_CANONICAL: Readonly<Record<string, string>> = {
  'token_embd.weight': EMBED_TOKENS,
  'output_norm.weight': FINAL_NORM,
  'output.weight': LM_HEAD,
};
const LAYER_TO_ROLE: Readonly<Record<string, LayerRole>> = {
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
};
const ROLE_TO_LAYER = new Map<LayerRole, string>(Object.entries(LAYER_TO_ROLE).map(([gguf, role]) => [role, gguf]));
const CANONICAL_TO_GLOBAL = new Map<string, string>(Object.entries(GLOBAL_TO_CANONICAL).map(([gguf, name]) => [name, gguf]));

/** llama.cpp name → canonical name; names that are not Llama weights are returned unchanged. */
export function canonicalTensorName(ggufName: string): string {
  const global = GLOBAL_TO_CANONICAL[ggufName];
  if (global !== undefined) return global;
  const match = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(ggufName);
  const role = match === null ? undefined : LAYER_TO_ROLE[match[2]];
  return match === null || role === undefined ? ggufName : layerTensorName(Number(match[1]), role);
}

/** Canonical name → llama.cpp name (the inverse of `canonicalTensorName`). */
export function ggufTensorName(canonicalName: string): string {
  const global = CANONICAL_TO_GLOBAL.get(canonicalName);
  if (global !== undefined) return global;
  const match = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(canonicalName);
  const role = match === null ? undefined : (LAYER_ROLES as readonly string[]).includes(match[2]) ? (match[2] as LayerRole) : undefined;
  return match === null || role === undefined ? canonicalName : `blk.${match[1]}.${ROLE_TO_LAYER.get(role)}.weight`;
}

// ---------------------------------------------------------------------------------------------
// Config

/** Typed access to the metadata of one file, with errors naming the key. */
class MetadataReader {
  constructor(
    private readonly file: string,
    private readonly metadata: ReadonlyMap<string, GgufValue>,
  ) {}

  has(key: string): boolean {
    return this.metadata.has(key);
  }

  number(key: string, fallback?: number): number {
    const value = this.metadata.get(key);
    if (value === undefined) {
      if (fallback === undefined) throw new LowbitFormatError(this.file, 'missing metadata key', key);
      return fallback;
    }
    if (typeof value === 'bigint' && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value);
    if (typeof value === 'number') return value;
    throw new LowbitFormatError(this.file, `expected a number, got ${describe(value)}`, key);
  }

  integer(key: string, fallback?: number): number {
    const value = this.number(key, fallback);
    if (!Number.isSafeInteger(value)) throw new LowbitFormatError(this.file, `expected an integer, got ${value}`, key);
    return value;
  }

  string(key: string): string | undefined {
    const value = this.metadata.get(key);
    if (value === undefined || typeof value === 'string') return value;
    throw new LowbitFormatError(this.file, `expected a string, got ${describe(value)}`, key);
  }

  /** A token id (ids stored as u32 0xFFFFFFFF mean "none"). */
  tokenId(key: string): number | undefined {
    if (!this.metadata.has(key)) return undefined;
    const id = this.integer(key);
    return id >= 0 && id < 0xffffffff ? id : undefined;
  }

  arrayLength(key: string): number | undefined {
    const value = this.metadata.get(key);
    return Array.isArray(value) ? value.length : undefined;
  }
}

function describe(value: GgufValue): string {
  return Array.isArray(value) ? `an array of ${value.length}` : `${typeof value} ${String(value)}`;
}

/** LlamaConfig from `llama.*` keys (vocab size from `llama.vocab_size`, the token list, or the embedding). */
function ggufConfig(file: string, meta: MetadataReader, tensors: ReadonlyMap<string, TensorInfo>): LlamaConfig {
  const architecture = meta.string('general.architecture');
  if (architecture !== 'llama') {
    throw new LowbitFormatError(file, `architecture ${String(architecture)} is not supported (only llama)`, 'general.architecture');
  }
  const dim = meta.integer('llama.embedding_length');
  const nHeads = meta.integer('llama.attention.head_count');
  if (!meta.has('llama.attention.key_length') && !(nHeads > 0 && dim % nHeads === 0)) {
    throw new LowbitFormatError(file, `embedding length ${dim} is not a multiple of ${nHeads} heads`, 'llama.attention.head_count');
  }
  const headDim = meta.integer('llama.attention.key_length', dim / nHeads);
  if (meta.integer('llama.attention.value_length', headDim) !== headDim) {
    throw new LowbitFormatError(file, 'value heads of another size than key heads are not supported', 'llama.attention.value_length');
  }
  if (meta.integer('llama.rope.dimension_count', headDim) !== headDim) {
    throw new LowbitFormatError(file, `partial rotary embeddings are not supported (head size ${headDim})`, 'llama.rope.dimension_count');
  }
  const scalingType = meta.string('llama.rope.scaling.type') ?? 'none';
  if (scalingType !== 'none') {
    throw new LowbitFormatError(file, `RoPE scaling ${scalingType} is not supported`, 'llama.rope.scaling.type');
  }
  const embedding = tensors.get(EMBED_TOKENS);
  const vocabSize = meta.integer('llama.vocab_size', meta.arrayLength('tokenizer.ggml.tokens') ?? embedding?.shape[0] ?? 0);
  return {
    dim,
    hiddenDim: meta.integer('llama.feed_forward_length'),
    nLayers: meta.integer('llama.block_count'),
    nHeads,
    nKvHeads: meta.integer('llama.attention.head_count_kv', nHeads),
    headDim,
    vocabSize,
    maxSeqLen: meta.integer('llama.context_length'),
    normEps: shortestF32Decimal(meta.number('llama.attention.layer_norm_rms_epsilon')),
    ropeTheta: shortestF32Decimal(meta.number('llama.rope.freq_base', 10000)),
    ropeStyle: 'interleaved',
    tiedEmbeddings: !tensors.has(LM_HEAD),
  };
}

/** Options of `openGguf`. */
export interface GgufOptions {
  /** A tokenizer file to use instead of the vocabulary in the GGUF metadata. */
  readonly tokenizer?: string;
}

/**
 * Opens a GGUF `llama` model. Tensors get canonical names (others, e.g. `rope_freqs.weight` holding
 * Llama-3 RoPE factors, keep theirs). normEps and ropeTheta are stored as float32 in GGUF and are
 * reported as the shortest decimal with the same float32 value (1e-5, not 9.99999974e-6).
 */
export function openGguf(filePath: string, options: GgufOptions = {}): ModelSource {
  const source = FileSource.open(filePath);
  return closeOnError(
    () => source.close(),
    () => {
      const header = readGgufHeader(source);
      const tensors = new Map<string, TensorInfo>();
      for (const entry of header.tensors) {
        const name = canonicalTensorName(entry.name);
        if (tensors.has(name)) throw new LowbitFormatError(filePath, `two tensors map to ${name}`, entry.name);
        tensors.set(name, fileTensor(source, name, entry.dtype, entry.shape, entry.offset, entry.byteLength));
      }
      const meta = new MetadataReader(filePath, header.metadata);
      const config = ggufConfig(filePath, meta, tensors);
      checkLlamaConfig(filePath, config);
      checkLlamaTensors(filePath, config, tensors);
      const tokenizer: TokenizerSource | undefined =
        options.tokenizer !== undefined
          ? { kind: 'file', path: options.tokenizer }
          : meta.has('tokenizer.ggml.model')
            ? { kind: 'gguf', metadata: header.metadata }
            : undefined;
      const eosIds = ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']
        .map((key) => meta.tokenId(key))
        .filter((id, i, ids): id is number => id !== undefined && ids.indexOf(id) === i);
      return createModelSource(
        {
          path: filePath,
          container: 'gguf',
          config,
          tensors,
          tokenizer,
          metadata: header.metadata,
          bosId: meta.tokenId('tokenizer.ggml.bos_token_id'),
          eosIds: eosIds.length > 0 ? eosIds : undefined,
          chatTemplate: meta.string('tokenizer.chat_template'),
        },
        () => source.close(),
      );
    },
  );
}
