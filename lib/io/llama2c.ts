/**
 * llama2.c checkpoints (`.bin`): the legacy export (7 × int32 header, then float32 arrays in run.c's
 * order, freq_cis tables included) and the "version 1" export (magic "ak42", 256-byte header,
 * different array order, no freq_cis). Each per-layer array of the file ([n_layers, ...]) is handed
 * out as one tensor per layer, each with its own offset; nothing is converted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { ByteCursor } from './cursor';
import { checkedSize } from './dtypes';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, type LayerRole, checkLlamaConfig, checkLlamaTensors, layerTensorName } from './llama';
import { type ByteSource, FileSource } from './source';
import { closeOnError, createModelSource, fileTensor } from './tensors';
import type { LlamaConfig, ModelSource, TensorInfo, TokenizerSource } from './types';

/** "ak42" read as a little-endian uint32: the magic of llama2.c's versioned exports. */
export const LLAMA2C_MAGIC = 0x616b3432;
const VERSIONED_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 28;

/** The hyperparameters in a llama2.c header. */
export interface Llama2cHeader {
  /** 0 for the legacy (headerless) export. */
  readonly version: 0 | 1;
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly seqLen: number;
  /** The classifier is the token embedding (no separate wcls array). */
  readonly sharedClassifier: boolean;
  /** Where the float32 arrays start. */
  readonly dataOffset: number;
}

/** Reads and sanity-checks the header (not the file size: see `llama2cLayout`). */
export function readLlama2cHeader(source: ByteSource): Llama2cHeader {
  const cursor = new ByteCursor(source);
  cursor.require(4);
  const versioned = cursor.u32() === LLAMA2C_MAGIC;
  if (!versioned) cursor.seek(0);
  const version = versioned ? cursor.within('version', () => cursor.i32()) : 0;
  if (version !== 0 && version !== 1) {
    throw cursor.fail(`llama2.c export version ${version} is not supported (only the float32 exports: legacy and 1)`, 'version');
  }
  const fields = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
  const values = fields.map((field) => cursor.within(field, () => cursor.i32()));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, signedVocab, seqLen] = values;
  // Legacy files flag a separate classifier with a negative vocab size (run.c); v1 has a byte.
  const sharedClassifier = versioned ? cursor.within('shared_classifier', () => cursor.u8()) !== 0 : signedVocab > 0;
  const vocabSize = versioned ? signedVocab : Math.abs(signedVocab);
  fields.forEach((field, i) => {
    const value = field === 'vocab_size' ? vocabSize : values[i];
    if (value <= 0) throw cursor.fail(`must be positive, got ${values[i]}`, field);
  });
  if (dim % nHeads !== 0) throw cursor.fail(`dim ${dim} is not a multiple of n_heads ${nHeads}`, 'n_heads');
  if (nHeads % nKvHeads !== 0) throw cursor.fail(`n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`, 'n_kv_heads');
  const dataOffset = versioned ? VERSIONED_HEADER_BYTES : LEGACY_HEADER_BYTES;
  return { version, dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, sharedClassifier, dataOffset };
}

/** One float32 array of the file: a tensor (per layer or global) or a table lowbit skips. */
interface Llama2cArray {
  /** Canonical name; a LayerRole is expanded per layer; undefined for the RoPE tables we recompute. */
  readonly tensor: string | LayerRole | undefined;
  readonly perLayer: boolean;
  readonly shape: readonly number[];
}

/** The arrays of a llama2.c file in storage order (run.c's `memory_map_weights` / export.py). */
function llama2cArrays(header: Llama2cHeader): Llama2cArray[] {
  const { dim, hiddenDim, vocabSize, seqLen } = header;
  const headDim = dim / header.nHeads;
  const kvDim = header.nKvHeads * headDim;
  const layer = (tensor: LayerRole, shape: number[]): Llama2cArray => ({ tensor, perLayer: true, shape });
  const global = (tensor: string | undefined, shape: number[]): Llama2cArray => ({ tensor, perLayer: false, shape });
  const classifier = header.sharedClassifier ? [] : [global(LM_HEAD, [vocabSize, dim])];
  // w1 = gate_proj, w3 = up_proj, w2 = down_proj.
  const projections = [
    layer('self_attn.q_proj', [dim, dim]),
    layer('self_attn.k_proj', [kvDim, dim]),
    layer('self_attn.v_proj', [kvDim, dim]),
    layer('self_attn.o_proj', [dim, dim]),
  ];
  if (header.version === 0) {
    return [
      global(EMBED_TOKENS, [vocabSize, dim]),
      layer('input_layernorm', [dim]),
      ...projections,
      layer('post_attention_layernorm', [dim]),
      layer('mlp.gate_proj', [hiddenDim, dim]),
      layer('mlp.down_proj', [dim, hiddenDim]),
      layer('mlp.up_proj', [hiddenDim, dim]),
      global(FINAL_NORM, [dim]),
      global(undefined, [seqLen, headDim / 2]), // freq_cis_real: lowbit computes RoPE itself
      global(undefined, [seqLen, headDim / 2]), // freq_cis_imag
      ...classifier,
    ];
  }
  return [
    layer('input_layernorm', [dim]),
    layer('post_attention_layernorm', [dim]),
    global(FINAL_NORM, [dim]),
    global(EMBED_TOKENS, [vocabSize, dim]),
    ...projections,
    layer('mlp.gate_proj', [hiddenDim, dim]),
    layer('mlp.down_proj', [dim, hiddenDim]),
    layer('mlp.up_proj', [hiddenDim, dim]),
    ...classifier,
  ];
}

/** A tensor's place in the file. */
interface Placement {
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly byteLength: number;
}

/**
 * Where every tensor lies, checking that the file is exactly as long as the header implies (a
 * truncated file or trailing bytes are errors: they mean a wrong header or a different format).
 */
export function llama2cLayout(file: string, fileSize: number, header: Llama2cHeader): Placement[] {
  const placements: Placement[] = [];
  let offset = header.dataOffset;
  for (const array of llama2cArrays(header)) {
    const layers = array.perLayer ? header.nLayers : 1;
    const key = array.tensor === undefined ? 'freq_cis' : array.perLayer ? layerTensorName(0, array.tensor as LayerRole) : array.tensor;
    const byteLength = checkedSize([...array.shape, 4], Number.MAX_SAFE_INTEGER, file, key);
    if (offset + checkedSize([layers, byteLength], Number.MAX_SAFE_INTEGER, file, key) > fileSize) {
      throw sizeMismatch(file, fileSize, header, `more than ${fileSize}`, key);
    }
    for (let layer = 0; layer < layers; layer++) {
      if (array.tensor !== undefined) {
        const name = array.perLayer ? layerTensorName(layer, array.tensor as LayerRole) : array.tensor;
        placements.push({ name, shape: array.shape, offset, byteLength });
      }
      offset += byteLength;
    }
  }
  if (offset !== fileSize) throw sizeMismatch(file, fileSize, header, String(offset));
  return placements;
}

function sizeMismatch(file: string, fileSize: number, header: Llama2cHeader, implied: string, key?: string): LowbitFormatError {
  // bitllama2.c's ternary BitNet exports reuse the version-1 header, so say so rather than "truncated".
  const hint = header.version === 1 ? '; BitNet-style ternary exports share this header and are not supported' : '';
  return new LowbitFormatError(file, `the header implies ${implied} bytes of float32 weights but the file has ${fileSize} (truncated or trailing data${hint})`, key);
}

/** Whether the file is plausibly llama2.c: the versioned magic, or a legacy header whose size matches. */
export function looksLikeLlama2c(source: ByteSource): boolean {
  if (source.size < LEGACY_HEADER_BYTES) return false;
  if (new ByteCursor(source).u32() === LLAMA2C_MAGIC) return true;
  try {
    llama2cLayout(source.file, source.size, readLlama2cHeader(source));
    return true;
  } catch (error) {
    if (error instanceof LowbitFormatError) return false;
    throw error;
  }
}

/** The tokenizer next to a llama2.c model: tokenizer.bin, else a single tok*.bin, else tokenizer.model. */
export function findLlama2cTokenizer(modelPath: string): TokenizerSource | undefined {
  const dir = path.dirname(modelPath);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return undefined;
  }
  const self = path.basename(modelPath);
  const tokBins = names.filter((name) => /^tok.*\.bin$/.test(name) && name !== self);
  const found = names.includes('tokenizer.bin')
    ? 'tokenizer.bin'
    : tokBins.length === 1
      ? tokBins[0]
      : names.includes('tokenizer.model')
        ? 'tokenizer.model'
        : undefined;
  return found === undefined ? undefined : { kind: 'file', path: path.join(dir, found) };
}

/** Options of `openLlama2c`. */
export interface Llama2cOptions {
  /** Tokenizer file to use. Defaults to the one found next to the model (see `findLlama2cTokenizer`). */
  readonly tokenizer?: string;
}

/** Opens a llama2.c `.bin` checkpoint (legacy or version 1). */
export function openLlama2c(filePath: string, options: Llama2cOptions = {}): ModelSource {
  const source = FileSource.open(filePath);
  return closeOnError(
    () => source.close(),
    () => {
      const header = readLlama2cHeader(source);
      const tensors = new Map<string, TensorInfo>();
      for (const placement of llama2cLayout(filePath, source.size, header)) {
        tensors.set(placement.name, fileTensor(source, placement.name, 'f32', placement.shape, placement.offset, placement.byteLength));
      }
      const config: LlamaConfig = {
        dim: header.dim,
        hiddenDim: header.hiddenDim,
        nLayers: header.nLayers,
        nHeads: header.nHeads,
        nKvHeads: header.nKvHeads,
        headDim: header.dim / header.nHeads,
        vocabSize: header.vocabSize,
        maxSeqLen: header.seqLen,
        normEps: 1e-5,
        ropeTheta: 10000,
        ropeStyle: 'interleaved',
        tiedEmbeddings: header.sharedClassifier,
      };
      checkLlamaConfig(filePath, config);
      checkLlamaTensors(filePath, config, tensors);
      const metadata = new Map<string, unknown>([
        ['version', header.version],
        ['dim', header.dim],
        ['hidden_dim', header.hiddenDim],
        ['n_layers', header.nLayers],
        ['n_heads', header.nHeads],
        ['n_kv_heads', header.nKvHeads],
        ['vocab_size', header.vocabSize],
        ['seq_len', header.seqLen],
        ['shared_classifier', header.sharedClassifier],
      ]);
      const tokenizer: TokenizerSource | undefined =
        options.tokenizer !== undefined ? { kind: 'file', path: options.tokenizer } : findLlama2cTokenizer(filePath);
      return createModelSource(
        { path: filePath, container: 'llama2c', config, tensors, tokenizer, metadata },
        () => source.close(),
      );
    },
  );
}
