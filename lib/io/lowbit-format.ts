/**
 * lowbit's own model file (docs/FORMAT.md): one safetensors file that loads without its source.
 * Quantized weights are `U8 [rows, rowBytes]` tensors in lowbit's packing (QTensor.packed(),
 * native/core/formats.h) plus `F32 [rows, groups]` scales named `<name>.scales`; float tensors are
 * F32/F16/BF16; the tokenizer file rides along as the `U8` tensor `lowbit.tokenizer`. The
 * `__metadata__` strings `lowbit.*` hold JSON: version, Llama config, per-tensor format, tokenizer
 * kind and special ids, and the recipe that made the file. Version 2 adds `lowbit.sharp`: layers
 * that reuse another layer's MLP weights, with low-rank recovery tensors (./sharp.ts).
 */
import { LowbitFormatError } from '../errors';
import { binding } from '../native';
import type { QuantFormat } from '../qtensor';
import { type JsonObject, JsonFields, isJsonObject, parseJson } from './json';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, checkLlamaConfig } from './llama';
import { type SafetensorsEntry, type SafetensorsHeader, readSafetensorsHeader } from './safetensors';
import { type SafetensorsLayout, type SafetensorsStreamTensor, safetensorsLayout, writeSafetensorsStream } from './safetensors-writer';
import { type SharpLayout, MLP_PROJECTIONS, RECOVERY_INITS, type MlpProjection, type RecoveryInit, isLoraTensor, sharpLayoutProblem, sharpShapes } from './sharp';
import { type ByteSource, FileSource } from './source';
import { closeOnError, createModelSource, fileTensor } from './tensors';
import type {
  EmbeddedTokenizer, EmbeddedTokenizerKind, LlamaConfig, ModelSource, RopeScaling, TensorInfo, TokenizerSource,
} from './types';

/**
 * The newest format version: what files with SHARP sharing are written as. Files without sharing
 * are written as version 1, which every lowbit reads; this one reads both.
 */
export const LOWBIT_FORMAT_VERSION = 2;
/** The versions this lowbit reads. */
export const LOWBIT_READ_VERSIONS: readonly number[] = [1, 2];

/** `__metadata__` keys; `lowbit.version` also marks a safetensors file as ours. */
export const LOWBIT_KEYS = {
  version: 'lowbit.version',
  config: 'lowbit.config',
  tensors: 'lowbit.tensors',
  tokenizer: 'lowbit.tokenizer',
  recipe: 'lowbit.recipe',
  sharp: 'lowbit.sharp',
} as const;

/** The U8 tensor holding the tokenizer file. */
export const TOKENIZER_TENSOR = 'lowbit.tokenizer';
/** Suffix of the F32 scale tensor of a quantized weight. */
export const SCALES_SUFFIX = '.scales';

export type LowbitFloatFormat = 'f32' | 'f16' | 'bf16';
export type LowbitTensorFormat = QuantFormat | LowbitFloatFormat;

const QUANT_FORMAT_NAMES: readonly QuantFormat[] = ['b1', 't158', 'b2', 'b3', 'b4'];
const FLOAT_FORMAT_NAMES: readonly LowbitFloatFormat[] = ['f32', 'f16', 'bf16'];
const TOKENIZER_KINDS: readonly EmbeddedTokenizerKind[] = ['sentencepiece', 'tiktoken', 'tokenizer.json', 'llama2c', 'gguf'];

/** Tokenizer files are at most tens of megabytes; the loader refuses larger ones. */
const MAX_TOKENIZER_BYTES = 256 << 20;

/** How a file was made; written by the converters, shown by `lowbit info`. */
export interface LowbitRecipe {
  /** `quantize` (a converted model), `synth` (random weights on the grid) or `sharp` (shared MLPs). */
  readonly tool: 'quantize' | 'synth' | 'sharp';
  /** Default bits of the linear layers: 1, 1.58, 2, 3 or 4 (`sharp` without bits: null, float weights). */
  readonly bits: number | null;
  readonly method: 'exact' | 'rtn' | 'mse' | 'random' | null;
  /** Columns per scale (0: one scale per row). */
  readonly group: number;
  /** `--tensor-bits` rules in the order given (first match wins). */
  readonly tensorBits: readonly { readonly pattern: string; readonly bits: number }[];
  /** Precision of the embeddings and output head. */
  readonly embeddings: LowbitFloatFormat;
  /** The input's file name (quantize) or the shape name (synth). */
  readonly source: string;
  readonly lowbitVersion: string;
  /** ISO 8601. */
  readonly date: string;
  /** Tool-specific facts (e.g. `seed`, where exact weights came from). */
  readonly [extra: string]: unknown;
}

/** The tokenizer carried in a file: its kind and bytes, and the ids and template the model uses. */
export interface LowbitTokenizer {
  readonly format: EmbeddedTokenizerKind;
  readonly bytes: Uint8Array;
  readonly bosId?: number;
  /** Every id that ends generation. */
  readonly eosIds?: readonly number[];
  readonly chatTemplate?: string;
}

/** A quantized weight of a lowbit file: `read()` gives the packed rows, `readScales()` the scales. */
export interface LowbitTensorInfo extends TensorInfo {
  readonly dtype: 'lowbit';
  readonly format: QuantFormat;
  /** Columns per scale (0: one per row). */
  readonly group: number;
  /** Scales, rows x groups. */
  readScales(): Float32Array;
}

export function isLowbitTensor(info: TensorInfo): info is LowbitTensorInfo {
  return info.dtype === 'lowbit';
}

// ---------------------------------------------------------------------------------------------
// Sizes

let planeBits: ReadonlyMap<string, readonly number[]> | undefined;

/** Bytes of one packed row of `cols` weights (every plane; a partial 64-column chunk rounds up). */
export function packedRowBytes(format: QuantFormat, cols: number): number {
  planeBits ??= new Map(binding().formats().map((f) => [f.name, f.planeBits]));
  return planeBits.get(format)!.reduce((sum, bits) => sum + Math.ceil((cols * bits) / 8), 0);
}

/** Scale groups of a row: one for `group` 0. */
export function groupsPerRow(cols: number, group: number): number {
  return group === 0 ? 1 : Math.ceil(cols / group);
}

/** Where the bytes of a lowbit file go, by kind of tensor (scales count with their weights). */
export interface LowbitBytes {
  readonly attention: number;
  readonly mlp: number;
  readonly embeddings: number;
  readonly head: number;
  readonly norms: number;
  readonly tokenizer: number;
  /** The length prefix and JSON header. */
  readonly header: number;
  readonly total: number;
}

function byteKind(name: string): Exclude<keyof LowbitBytes, 'header' | 'total'> {
  if (name === TOKENIZER_TENSOR) return 'tokenizer';
  const base = name.endsWith(SCALES_SUFFIX) ? name.slice(0, -SCALES_SUFFIX.length) : name;
  if (base === EMBED_TOKENS) return 'embeddings';
  if (base === LM_HEAD) return 'head';
  if (base === FINAL_NORM || base.endsWith('layernorm.weight')) return 'norms';
  return base.includes('.self_attn.') ? 'attention' : 'mlp';
}

function bytesByKind(header: SafetensorsHeader): LowbitBytes {
  const sums = { attention: 0, mlp: 0, embeddings: 0, head: 0, norms: 0, tokenizer: 0 };
  for (const t of header.tensors) sums[byteKind(t.name)] += t.byteLength;
  const data = Object.values(sums).reduce((a, b) => a + b, 0);
  return { ...sums, header: header.dataOffset, total: header.dataOffset + data };
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Whether a parsed safetensors header is a lowbit file's (it carries `lowbit.version`). */
export function isLowbitHeader(header: SafetensorsHeader): boolean {
  return header.metadata.has(LOWBIT_KEYS.version);
}

/** Whether the safetensors file in `source` is a lowbit file; false for anything unreadable. */
export function looksLikeLowbit(source: ByteSource): boolean {
  try {
    return isLowbitHeader(readSafetensorsHeader(source));
  } catch {
    return false;
  }
}

/** Fields of a JSON metadata value; errors name the metadata key, then the field. */
class MetadataFields extends JsonFields {
  constructor(file: string, value: JsonObject, readonly key: string) {
    super(file, value);
  }

  override fail(message: string, field: string): LowbitFormatError {
    return new LowbitFormatError(this.file, `${field}: ${message}`, this.key);
  }
}

/** The JSON object stored as the metadata string `key`. */
function metadataObject(file: string, header: SafetensorsHeader, key: string): MetadataFields {
  const text = header.metadata.get(key);
  if (text === undefined) throw new LowbitFormatError(file, 'missing from __metadata__', key);
  const value = parseJson(file, new TextEncoder().encode(text), key);
  if (!isJsonObject(value)) throw new LowbitFormatError(file, 'must be a JSON object', key);
  return new MetadataFields(file, value, key);
}

function readVersion(file: string, header: SafetensorsHeader): number {
  const text = header.metadata.get(LOWBIT_KEYS.version)!;
  const version = LOWBIT_READ_VERSIONS.find((v) => text === String(v));
  if (version === undefined) {
    throw new LowbitFormatError(file, `format version ${JSON.stringify(text)} is not supported (this lowbit reads ${LOWBIT_READ_VERSIONS.join(' and ')})`, LOWBIT_KEYS.version);
  }
  return version;
}

function readRopeScaling(fields: MetadataFields): RopeScaling | undefined {
  const value = fields.get('ropeScaling');
  if (value === undefined) return undefined;
  if (!isJsonObject(value)) throw fields.fail('expected an object', 'ropeScaling');
  const scaling = new MetadataFields(fields.file, value, fields.key);
  return {
    factor: scaling.number('factor'),
    lowFreqFactor: scaling.number('lowFreqFactor'),
    highFreqFactor: scaling.number('highFreqFactor'),
    originalMaxPositions: scaling.number('originalMaxPositions'),
  };
}

function readConfig(file: string, header: SafetensorsHeader): LlamaConfig {
  const scoped = metadataObject(file, header, LOWBIT_KEYS.config);
  const ropeStyle = scoped.string('ropeStyle');
  if (ropeStyle !== 'interleaved' && ropeStyle !== 'half') throw scoped.fail(`must be 'interleaved' or 'half', got ${JSON.stringify(ropeStyle)}`, 'ropeStyle');
  const scaling = readRopeScaling(scoped);
  const config: LlamaConfig = {
    dim: scoped.integer('dim'),
    hiddenDim: scoped.integer('hiddenDim'),
    nLayers: scoped.integer('nLayers'),
    nHeads: scoped.integer('nHeads'),
    nKvHeads: scoped.integer('nKvHeads'),
    headDim: scoped.integer('headDim'),
    vocabSize: scoped.integer('vocabSize'),
    maxSeqLen: scoped.integer('maxSeqLen'),
    normEps: scoped.number('normEps'),
    ropeTheta: scoped.number('ropeTheta'),
    ropeStyle,
    ...(scaling !== undefined && { ropeScaling: scaling }),
    tiedEmbeddings: scoped.boolean('tiedEmbeddings', false),
  };
  checkLlamaConfig(file, config);
  return config;
}

/** One entry of `lowbit.tensors`. */
interface TensorEntry {
  readonly format: LowbitTensorFormat;
  readonly group: number;
}

function readTensorEntry(file: string, name: string, value: unknown, shape: readonly number[]): TensorEntry {
  const fail = (message: string) => new LowbitFormatError(file, `${message} (in ${LOWBIT_KEYS.tensors})`, name);
  if (!isJsonObject(value)) throw fail('entry must be an object');
  const format = value.format;
  const quantized = QUANT_FORMAT_NAMES.includes(format as QuantFormat);
  if (!quantized && !FLOAT_FORMAT_NAMES.includes(format as LowbitFloatFormat)) throw fail(`format ${JSON.stringify(format)} is not one lowbit stores`);
  if (quantized && shape.length !== 2) throw fail(`a vector cannot be ${String(format)}`);
  const stated = value.shape;
  if (!Array.isArray(stated) || stated.length !== shape.length || stated.some((n, i) => n !== shape[i])) {
    throw fail(`shape ${Array.isArray(stated) ? `[${stated.join(', ')}]` : JSON.stringify(stated)} should be [${shape.join(', ')}]`);
  }
  const group = value.group ?? 0;
  if (!(Number.isSafeInteger(group) && (group as number) >= 0 && (group as number) % 32 === 0) || (!quantized && group !== 0)) {
    throw fail(`group ${JSON.stringify(group)} must be 0 or a multiple of 32 (quantized formats only)`);
  }
  return { format: format as LowbitTensorFormat, group: group as number };
}

/** `lowbit.sharp` (version 2), checked against the config; undefined when absent. */
function readSharp(file: string, header: SafetensorsHeader, version: number, config: LlamaConfig): SharpLayout | undefined {
  if (!header.metadata.has(LOWBIT_KEYS.sharp)) return undefined;
  if (version < 2) throw new LowbitFormatError(file, 'needs format version 2', LOWBIT_KEYS.sharp);
  const fields = metadataObject(file, header, LOWBIT_KEYS.sharp);
  const schedule = fields.get('schedule'), mats = fields.get('mats'), ranks = fields.get('ranks');
  if (!Array.isArray(schedule) || !schedule.every((p) => isJsonObject(p) && Number.isSafeInteger(p.target) && Number.isSafeInteger(p.reference))) {
    throw fields.fail('expected an array of {"target", "reference"} layer indices', 'schedule');
  }
  if (!Array.isArray(mats) || !mats.every((m) => MLP_PROJECTIONS.includes(m as MlpProjection))) throw fields.fail(`expected an array of ${MLP_PROJECTIONS.join(', ')}`, 'mats');
  if (!isJsonObject(ranks)) throw fields.fail('expected an object of ranks', 'ranks');
  const rankFields = new MetadataFields(file, ranks, LOWBIT_KEYS.sharp);
  const init = fields.string('init');
  if (!RECOVERY_INITS.includes(init as RecoveryInit)) throw fields.fail(`must be one of ${RECOVERY_INITS.join(', ')}`, 'init');
  const layout: SharpLayout = {
    schedule: schedule.map((p) => ({ target: (p as JsonObject).target as number, reference: (p as JsonObject).reference as number })),
    mats: mats as MlpProjection[],
    ranks: { gate: rankFields.integer('gate'), up: rankFields.integer('up'), down: rankFields.integer('down') },
    init: init as RecoveryInit,
    refine: fields.integer('refine'),
  };
  const problem = sharpLayoutProblem(config, layout);
  if (problem !== undefined) throw fields.fail(problem.message, problem.field);
  return layout;
}

function readTensorEntries(file: string, header: SafetensorsHeader, config: LlamaConfig, sharp: SharpLayout | undefined): Map<string, TensorEntry> {
  const fields = metadataObject(file, header, LOWBIT_KEYS.tensors);
  const shapes = sharpShapes(config, sharp);
  for (const name of Object.keys(fields.value)) {
    if (!shapes.has(name)) throw new LowbitFormatError(file, `is not a tensor of this Llama config (in ${LOWBIT_KEYS.tensors})`, name);
  }
  const entries = new Map<string, TensorEntry>();
  for (const [name, shape] of shapes) {
    if (!Object.hasOwn(fields.value, name)) throw new LowbitFormatError(file, `missing from ${LOWBIT_KEYS.tensors}`, name);
    const entry = readTensorEntry(file, name, fields.value[name], shape);
    if (isLoraTensor(name) && !FLOAT_FORMAT_NAMES.includes(entry.format as LowbitFloatFormat)) {
      throw new LowbitFormatError(file, `a recovery factor must be f32, f16 or bf16, not ${entry.format} (in ${LOWBIT_KEYS.tensors})`, name);
    }
    entries.set(name, entry);
  }
  return entries;
}

/** The stored tensor `name`, which must have `dtype` and `shape`. */
function storedTensor(file: string, byName: ReadonlyMap<string, SafetensorsEntry>, name: string, dtype: string, shape: readonly number[]): SafetensorsEntry {
  const entry = byName.get(name);
  if (entry === undefined) throw new LowbitFormatError(file, 'tensor is missing', name);
  if (entry.dtype !== dtype || entry.shape.length !== shape.length || entry.shape.some((n, i) => n !== shape[i])) {
    throw new LowbitFormatError(file, `is ${entry.dtype} [${entry.shape.join(', ')}], expected ${dtype} [${shape.join(', ')}]`, name);
  }
  return entry;
}

function quantizedTensor(source: ByteSource, byName: ReadonlyMap<string, SafetensorsEntry>, name: string,
  shape: readonly number[], entry: TensorEntry): LowbitTensorInfo {
  const [rows, cols] = shape;
  const format = entry.format as QuantFormat;
  const packed = storedTensor(source.file, byName, name, 'u8', [rows, packedRowBytes(format, cols)]);
  const scales = storedTensor(source.file, byName, name + SCALES_SUFFIX, 'f32', [rows, groupsPerRow(cols, entry.group)]);
  return Object.freeze({
    name, dtype: 'lowbit', shape: Object.freeze([...shape]), byteLength: packed.byteLength, format, group: entry.group,
    read: () => source.read(packed.offset, packed.byteLength),
    readScales: () => {
      const bytes = source.read(scales.offset, scales.byteLength);
      const out = new Float32Array(scales.byteLength / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    },
  });
}

function readTensors(source: ByteSource, header: SafetensorsHeader, entries: ReadonlyMap<string, TensorEntry>, config: LlamaConfig,
  sharp: SharpLayout | undefined): Map<string, TensorInfo> {
  const file = source.file;
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  const shapes = sharpShapes(config, sharp);
  const tensors = new Map<string, TensorInfo>();
  const described = new Set([TOKENIZER_TENSOR]);
  for (const [name, entry] of entries) {
    const shape = shapes.get(name)!;
    if (QUANT_FORMAT_NAMES.includes(entry.format as QuantFormat)) {
      tensors.set(name, quantizedTensor(source, byName, name, shape, entry));
      described.add(name + SCALES_SUFFIX);
    } else {
      const t = storedTensor(file, byName, name, entry.format, shape);
      tensors.set(name, fileTensor(source, name, t.dtype, t.shape, t.offset, t.byteLength));
    }
    described.add(name);
  }
  const stray = header.tensors.find((t) => !described.has(t.name));
  if (stray !== undefined) throw new LowbitFormatError(file, `is not described by ${LOWBIT_KEYS.tensors}`, stray.name);
  return tensors;
}

function tokenIds(fields: JsonFields, key: string, vocabSize: number): number[] | undefined {
  const ids = fields.tokenIds(key);
  const bad = ids?.find((id) => id >= vocabSize);
  if (bad !== undefined) throw fields.fail(`${bad} is not below the vocabulary size ${vocabSize}`, key);
  return ids;
}

function readTokenizer(source: ByteSource, header: SafetensorsHeader, config: LlamaConfig): LowbitTokenizer {
  const file = source.file;
  const fields = metadataObject(file, header, LOWBIT_KEYS.tokenizer);
  const format = fields.string('format');
  if (!TOKENIZER_KINDS.includes(format as EmbeddedTokenizerKind)) throw fields.fail(`${JSON.stringify(format)} is not a tokenizer kind lowbit embeds`, 'format');
  const tensor = header.tensors.find((t) => t.name === TOKENIZER_TENSOR);
  if (tensor === undefined) throw new LowbitFormatError(file, 'tensor is missing', TOKENIZER_TENSOR);
  if (tensor.dtype !== 'u8' || tensor.shape.length !== 1) throw new LowbitFormatError(file, `must be U8 with one dimension, got ${tensor.dtype} [${tensor.shape.join(', ')}]`, TOKENIZER_TENSOR);
  if (tensor.byteLength > MAX_TOKENIZER_BYTES) throw new LowbitFormatError(file, `${tensor.byteLength} bytes is too large for a tokenizer`, TOKENIZER_TENSOR);
  const bosIds = tokenIds(fields, 'bosId', config.vocabSize);
  if (bosIds !== undefined && bosIds.length !== 1) throw fields.fail('expected one id', 'bosId');
  const eosIds = tokenIds(fields, 'eosIds', config.vocabSize);
  const chatTemplate = fields.string('chatTemplate');
  return {
    format: format as EmbeddedTokenizerKind,
    bytes: source.read(tensor.offset, tensor.byteLength),
    ...(bosIds !== undefined && { bosId: bosIds[0] }),
    ...(eosIds !== undefined && { eosIds }),
    ...(chatTemplate !== undefined && { chatTemplate }),
  };
}

/** The recipe as stored: an object whose fields are informative (checked only for shape). */
function readRecipe(file: string, header: SafetensorsHeader): JsonObject {
  return metadataObject(file, header, LOWBIT_KEYS.recipe).value;
}

/** Options of `openLowbitFile`. */
export interface LowbitOpenOptions {
  /** A tokenizer file to use instead of the embedded one. Defaults to the embedded one. */
  readonly tokenizer?: string;
}

/**
 * Opens a lowbit file. Quantized weights come out with dtype `lowbit` (see LowbitTensorInfo),
 * float ones as stored; the tokenizer is the embedded one. Everything is checked against the
 * config: names, shapes, dtypes, packed sizes, ids. Problems are LowbitFormatErrors naming the
 * file and the tensor or metadata key.
 */
export function openLowbitFile(path: string, options: LowbitOpenOptions = {}): ModelSource {
  const source = FileSource.open(path);
  return closeOnError(
    () => source.close(),
    () => {
      const header = readSafetensorsHeader(source);
      if (!isLowbitHeader(header)) throw new LowbitFormatError(path, 'is a safetensors file without lowbit metadata', LOWBIT_KEYS.version);
      const version = readVersion(path, header);
      const config = readConfig(path, header);
      const sharp = readSharp(path, header, version, config);
      const tensors = readTensors(source, header, readTensorEntries(path, header, config, sharp), config, sharp);
      const embedded = readTokenizer(source, header, config);
      const tokenizer: TokenizerSource = options.tokenizer !== undefined
        ? { kind: 'file', path: options.tokenizer }
        : {
            kind: 'embedded', file: `${path} (tensor ${TOKENIZER_TENSOR})`, format: embedded.format, bytes: embedded.bytes,
            ...(embedded.bosId !== undefined && { bosId: embedded.bosId }),
            ...(embedded.eosIds !== undefined && { eosIds: embedded.eosIds }),
          } satisfies EmbeddedTokenizer;
      const metadata = new Map<string, unknown>([
        [LOWBIT_KEYS.version, version],
        [LOWBIT_KEYS.recipe, readRecipe(path, header)],
        ['lowbit.bytes', bytesByKind(header)],
      ]);
      return createModelSource(
        { path, container: 'lowbit', config, tensors, tokenizer, metadata, chatTemplate: embedded.chatTemplate, sharp },
        () => source.close(),
      );
    },
  );
}

/** What `lowbit info` shows about a lowbit file beyond the model. */
export interface LowbitFileDescription {
  readonly version: number;
  readonly recipe: JsonObject;
  readonly bytes: LowbitBytes;
  /** SHARP sharing, when the file has it. */
  readonly sharp?: SharpLayout;
}

/** The version, recipe and byte breakdown of a lowbit file (reads its header only). */
export function describeLowbitFile(path: string): LowbitFileDescription {
  const source = openLowbitFile(path);
  try {
    return {
      version: source.metadata.get(LOWBIT_KEYS.version) as number,
      recipe: source.metadata.get(LOWBIT_KEYS.recipe) as JsonObject,
      bytes: source.metadata.get('lowbit.bytes') as LowbitBytes,
      ...(source.sharp !== undefined && { sharp: source.sharp }),
    };
  } finally {
    source.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** One tensor of a lowbit file to write, its bytes produced on demand. */
export interface LowbitTensorToWrite {
  /** Canonical (Hugging Face) name. */
  readonly name: string;
  readonly format: LowbitTensorFormat;
  /** `[rows, cols]`, or `[n]` for a norm. */
  readonly shape: readonly number[];
  /** Columns per scale for quantized formats. Defaults to `0` (one per row). */
  readonly group?: number;
  /** Packed rows (quantized) or little-endian values (float), in order, in chunks of any size. */
  data(): AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** Scales (rows x groups) of a quantized tensor; called once its data has been written. */
  scales?(): Float32Array | Promise<Float32Array>;
}

/** Everything a lowbit file holds. */
export interface LowbitFileContent {
  readonly config: LlamaConfig;
  readonly tokenizer: LowbitTokenizer;
  readonly recipe: LowbitRecipe;
  /**
   * Every tensor of `config` (no `lm_head` when tied) and `sharp` (./sharp.ts `sharpShapes`: no
   * shared projection of a target, its recovery factors instead), in file order.
   */
  readonly tensors: readonly LowbitTensorToWrite[];
  /** SHARP sharing; makes the file version 2. Defaults to none (version 1). */
  readonly sharp?: SharpLayout;
}

/** The tensors and metadata of a file, ready for the safetensors writer. */
export interface LowbitFilePlan {
  readonly streams: readonly SafetensorsStreamTensor[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly layout: SafetensorsLayout;
}

function isQuantized(format: LowbitTensorFormat): format is QuantFormat {
  return QUANT_FORMAT_NAMES.includes(format as QuantFormat);
}

function streamsOf(tensor: LowbitTensorToWrite): SafetensorsStreamTensor[] {
  const { name, format, shape } = tensor;
  if (!isQuantized(format)) return [{ name, dtype: format, shape, chunks: () => tensor.data() }];
  const [rows, cols] = shape;
  const group = tensor.group ?? 0;
  if (!tensor.scales) throw new RangeError(`${name}: a ${format} tensor needs scales`);
  const scales = tensor.scales.bind(tensor);
  return [
    { name, dtype: 'u8', shape: [rows, packedRowBytes(format, cols)], chunks: () => tensor.data() },
    {
      name: name + SCALES_SUFFIX, dtype: 'f32', shape: [rows, groupsPerRow(cols, group)],
      async *chunks() {
        const values = await scales();
        yield new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      },
    },
  ];
}

function checkContent(path: string, content: LowbitFileContent): void {
  checkLlamaConfig(path, content.config);
  const problem = content.sharp && sharpLayoutProblem(content.config, content.sharp);
  if (problem) throw new RangeError(`sharp.${problem.field}: ${problem.message}`);
  const shapes = sharpShapes(content.config, content.sharp);
  const names = content.tensors.map((t) => t.name);
  const missing = [...shapes.keys()].filter((name) => !names.includes(name));
  const extra = names.filter((name) => !shapes.has(name));
  if (missing.length > 0 || extra.length > 0 || names.length !== shapes.size) {
    throw new RangeError(`a lowbit file needs exactly the config's tensors: missing [${missing.join(', ')}], unexpected [${extra.join(', ')}]`);
  }
  for (const t of content.tensors) {
    const shape = shapes.get(t.name)!;
    if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new RangeError(`${t.name}: shape [${t.shape.join(', ')}] should be [${shape.join(', ')}]`);
    }
    if (!isQuantized(t.format) && !FLOAT_FORMAT_NAMES.includes(t.format)) throw new RangeError(`${t.name}: unknown format ${String(t.format)}`);
    if (isQuantized(t.format) && shape.length !== 2) throw new RangeError(`${t.name}: a vector cannot be ${t.format}`);
    if (isQuantized(t.format) && isLoraTensor(t.name)) throw new RangeError(`${t.name}: a recovery factor cannot be ${t.format}`);
  }
}

/** `lowbit.sharp`: the layout's fields and nothing else. */
function sharpMetadata(s: SharpLayout): string {
  return JSON.stringify({
    schedule: s.schedule.map(({ target, reference }) => ({ target, reference })), mats: s.mats,
    ranks: { gate: s.ranks.gate, up: s.ranks.up, down: s.ranks.down }, init: s.init, refine: s.refine,
  });
}

/** Lays out a lowbit file (header, sizes, metadata) without producing any tensor data. */
export function planLowbitFile(path: string, content: LowbitFileContent): LowbitFilePlan {
  checkContent(path, content);
  const { tokenizer } = content;
  const entries = Object.fromEntries(content.tensors.map((t) => [
    t.name,
    { format: t.format, shape: [...t.shape], ...(isQuantized(t.format) && { group: t.group ?? 0 }) },
  ]));
  const metadata = {
    [LOWBIT_KEYS.version]: String(content.sharp ? LOWBIT_FORMAT_VERSION : 1),
    [LOWBIT_KEYS.config]: JSON.stringify(content.config),
    [LOWBIT_KEYS.tensors]: JSON.stringify(entries),
    [LOWBIT_KEYS.tokenizer]: JSON.stringify({
      format: tokenizer.format, bosId: tokenizer.bosId, eosIds: tokenizer.eosIds, chatTemplate: tokenizer.chatTemplate,
    }),
    [LOWBIT_KEYS.recipe]: JSON.stringify(content.recipe),
    ...(content.sharp && { [LOWBIT_KEYS.sharp]: sharpMetadata(content.sharp) }),
  };
  const streams: SafetensorsStreamTensor[] = [
    ...content.tensors.flatMap(streamsOf),
    { name: TOKENIZER_TENSOR, dtype: 'u8', shape: [tokenizer.bytes.length], chunks: () => [tokenizer.bytes] },
  ];
  return { streams, metadata, layout: safetensorsLayout(path, streams, metadata) };
}

/** Options of `writeLowbitFile`. */
export interface LowbitWriteOptions {
  /** Called after each stored tensor (packed data, scales, float tensor, tokenizer) is on disk. Defaults to none. */
  readonly onTensorWritten?: (written: number, total: number, name: string) => void;
}

/**
 * Writes a lowbit file, streaming: one tensor's data (as its producer chunks it) is in memory at a
 * time. The file appears at `path` only when complete. Resolves with its size in bytes.
 */
export async function writeLowbitFile(path: string, content: LowbitFileContent, options: LowbitWriteOptions = {}): Promise<number> {
  const plan = planLowbitFile(path, content);
  return writeSafetensorsStream(path, plan.streams, plan.metadata, {
    onTensorWritten: (index, tensor) => options.onTensorWritten?.(index + 1, plan.streams.length, tensor.name),
  });
}
