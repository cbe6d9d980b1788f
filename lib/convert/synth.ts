/**
 * `lowbit synth`: a random model in lowbit's format whose linear weights lie exactly on a ParetoQ
 * grid, shaped like a real one (MobileLLM, Llama), for benchmarks and load tests without
 * downloading checkpoints. Codes are drawn with the probabilities round-to-nearest gives a
 * Gaussian row, scales sized like trained weights (row std ~0.02); embeddings and head are f16
 * N(0, 0.02); norms 1 + N(0, 0.05). Everything is streamed: one chunk of rows is in memory at a
 * time, so a 7B model never is. The same seed gives the same tensors.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { f16ToF32, f32ToF16 } from '../io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LAYER_ROLES, LM_HEAD, layerTensorName } from '../io/llama';
import {
  type LowbitFileContent, type LowbitRecipe, type LowbitTensorToWrite, type LowbitTokenizer, writeLowbitFile,
} from '../io/lowbit-format';
import type { LlamaConfig } from '../io/types';
import { binding, callNative } from '../native';
import type { QuantFormat } from '../qtensor';
import { loadTokenizer } from '../tokenizer';
import { readTokenizerContent } from '../tokenizer/load';
import { integerIn, invalidParameter, knownOptions, oneOf, plainObject } from '../validate';
import { LOWBIT_VERSION } from '../version';
import { type ProgressListener, recipeDate } from './progress';
import { type Bits, formatOfBits, parseBits } from './recipe';

// ---------------------------------------------------------------------------------------------
// Shapes

/** A model shape: its config and the bundled tokenizer whose vocabulary it uses. */
export interface SynthShape {
  readonly config: LlamaConfig;
  /** Tokenizer file, relative to the bundled models folder (../shared/models in this repository). */
  readonly tokenizer: string;
}

const LLAMA2_TOKENIZER = 'tokenizers/llama2-tokenizer.model';

/** Shared by every shape unless it says otherwise (MobileLLM and Llama 2 values). */
const BASE = { normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'half', headDim: 64 } as const;

/** MobileLLM (research notes A4): vocab 32000 (Llama 2 tokenizer), 2048 positions, embedding shared with the head. */
function mobileLlm(nLayers: number, dim: number, nHeads: number, nKvHeads: number, hiddenDim: number): SynthShape {
  return {
    config: { ...BASE, dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: 32000, maxSeqLen: 2048, tiedEmbeddings: true },
    tokenizer: LLAMA2_TOKENIZER,
  };
}

/**
 * The shapes `synth` knows. MobileLLM rows are research notes A4 (MobileLLM configs). `llama-1b`:
 * 16 layers, d 2048, 32 heads, 8 KV heads, FFN 8192, vocab 32000, tied (as Llama 3.2 1B, with the
 * Llama 2 vocabulary). `llama-2-7b`: Meta's Llama-2-7b config.json (4096, 11008, 32 layers, 32
 * heads, 32 KV heads, vocab 32000, 4096 positions, untied). `llama-3-8b`: Meta-Llama-3-8B
 * config.json (4096, 14336, 32 layers, 32 heads, 8 KV heads, vocab 128256, 8192 positions,
 * rope theta 500000, untied). `tiny` and `tiny-256` (widths that are whole TQ blocks) are for
 * tests (vocab of stories260K's tok512.model).
 */
export const SYNTH_SHAPES = {
  tiny: {
    config: { ...BASE, dim: 64, hiddenDim: 160, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 512, maxSeqLen: 256, tiedEmbeddings: false },
    tokenizer: 'stories260K/tok512.model',
  },
  'tiny-256': {
    config: { ...BASE, dim: 256, hiddenDim: 512, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 512, maxSeqLen: 256, tiedEmbeddings: false },
    tokenizer: 'stories260K/tok512.model',
  },
  'mobilellm-125m': mobileLlm(30, 576, 9, 3, 1536),
  'mobilellm-350m': mobileLlm(32, 960, 15, 5, 2560),
  'mobilellm-600m': mobileLlm(40, 1152, 18, 6, 3072),
  'mobilellm-1b': mobileLlm(54, 1280, 20, 5, 3584),
  'mobilellm-1.5b': mobileLlm(54, 1600, 25, 5, 4352),
  'llama-1b': {
    config: { ...BASE, dim: 2048, hiddenDim: 8192, nLayers: 16, nHeads: 32, nKvHeads: 8, vocabSize: 32000, maxSeqLen: 2048, tiedEmbeddings: true },
    tokenizer: LLAMA2_TOKENIZER,
  },
  'llama-2-7b': {
    config: { ...BASE, dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, headDim: 128, vocabSize: 32000, maxSeqLen: 4096, tiedEmbeddings: false },
    tokenizer: LLAMA2_TOKENIZER,
  },
  'llama-3-8b': {
    config: {
      ...BASE, dim: 4096, hiddenDim: 14336, nLayers: 32, nHeads: 32, nKvHeads: 8, headDim: 128, vocabSize: 128256, maxSeqLen: 8192,
      ropeTheta: 500000, tiedEmbeddings: false,
    },
    tokenizer: 'tokenizers/llama3-tokenizer.model',
  },
} as const satisfies Record<string, SynthShape>;

export type SynthShapeName = keyof typeof SYNTH_SHAPES;
export const SYNTH_SHAPE_NAMES = Object.keys(SYNTH_SHAPES) as SynthShapeName[];

/** The bundled models folder: LOWBIT_MODELS_DIR, the package's models/, or ../shared/models of this repository. */
export function bundledModelsDir(): string {
  const candidates = [
    process.env.LOWBIT_MODELS_DIR,
    path.join(__dirname, '..', '..', 'models'),
    path.join(__dirname, '..', '..', '..', 'shared', 'models'),
  ].filter((dir): dir is string => dir !== undefined);
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'tokenizers')));
  if (found === undefined) throw invalidParameter('tokenizer', `a tokenizer file (no bundled models in ${candidates.join(', ')})`, undefined);
  return found;
}

// ---------------------------------------------------------------------------------------------
// Random numbers: a seeded stream per tensor, so chunking never changes the result

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** mulberry32 seeded from the user's seed and a stream name; returns 32 random bits per call. */
function randomStream(seed: number, stream: string): () => number {
  let state = (Math.imul(seed >>> 0, 0x9e3779b9) ^ fnv1a(stream)) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Standard normal CDF (Abramowitz & Stegun 7.1.26, error < 1.5e-7). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const erf = 1 - (((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t) * Math.exp(-z * z);
  return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5, r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** 16 random bits → a standard normal value (inverse CDF at the bin's midpoint). */
const NORMAL_TABLE = Float64Array.from({ length: 65536 }, (_, i) => normalQuantile((i + 0.5) / 65536));

/**
 * Step d of each grid relative to a row's standard deviation: the uniform quantizer step that
 * minimises squared error for a Gaussian (Max, 1960), so codes are used as in a well-scaled row.
 */
const STEP_PER_STD: Record<QuantFormat, number> = { b1: 1.596, t158: 1.224, b2: 0.996, b3: 0.586, b4: 0.335 };

/** Level offsets o of w = d (c + o) (native/core/formats.h). */
const CODE_OFFSETS: Record<QuantFormat, { offset: number; codes: number }> = {
  b1: { offset: -0.5, codes: 2 }, t158: { offset: -1, codes: 3 }, b2: { offset: -1.5, codes: 4 }, b3: { offset: -4, codes: 8 }, b4: { offset: -8, codes: 16 },
};

/** 16 random bits → a code, with the probabilities rounding N(0, 1) to the grid of step STEP_PER_STD gives. */
function codeTable(format: QuantFormat): Uint8Array {
  const { offset, codes } = CODE_OFFSETS[format];
  const step = STEP_PER_STD[format];
  const table = new Uint8Array(65536);
  let code = 0;
  for (let i = 0; i < 65536; i++) {
    const p = (i + 0.5) / 65536;
    // Code c takes the values rounding to it: w/step - o in [c - 0.5, c + 0.5).
    while (code < codes - 1 && p > normalCdf((code + offset + 0.5) * step)) code++;
    table[i] = code;
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Tensors

const WEIGHT_STD = 0.02;
/** Rows differ in scale as trained rows do: std = 0.02 · exp(0.2 · N(0, 1)). */
const ROW_STD_SPREAD = 0.2;
const NORM_STD = 0.05;
/** Weights per generated chunk. */
const CHUNK_ELEMENTS = 1 << 22;

/**
 * Scales are f16 values, so the same weights written as GGUF (whose block scales are f16) compute
 * exactly the same function in llama.cpp (bench/generate.ts).
 */
function rowScales(format: QuantFormat, rows: number, seed: number, name: string): Float32Array {
  const next = randomStream(seed, `${name}:scales`);
  return Float32Array.from({ length: rows }, () => f16ToF32(f32ToF16(STEP_PER_STD[format] * WEIGHT_STD * Math.exp(ROW_STD_SPREAD * NORMAL_TABLE[next() >>> 16]))));
}

function linearTensor(name: string, format: QuantFormat, rows: number, cols: number, seed: number): LowbitTensorToWrite {
  const scales = () => rowScales(format, rows, seed, name);
  return {
    name, format, shape: [rows, cols], group: 0, scales,
    *data() {
      const table = codeTable(format), next = randomStream(seed, `${name}:codes`), all = scales();
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / cols));
      for (let r = 0; r < rows; r += rowsPerChunk) {
        const n = Math.min(rowsPerChunk, rows - r);
        const codes = new Uint8Array(n * cols);
        for (let i = 0; i < codes.length; i += 2) {
          const bits = next();
          codes[i] = table[bits & 0xffff];
          codes[i + 1] = table[bits >>> 16];  // past the end of the array: ignored
        }
        const packed = callNative(() => binding().AddonQTensor.fromCodes(format, n, cols, 0, codes, all.subarray(r, r + n)));
        try {
          yield packed.packed();
        } finally {
          packed.dispose();
        }
      }
    },
  };
}

/** An f16 matrix or an f32 vector of `mean + std · N(0, 1)`. */
function floatTensor(name: string, shape: readonly number[], mean: number, std: number, seed: number): LowbitTensorToWrite {
  const count = shape.reduce((a, b) => a * b, 1);
  const half = shape.length === 2;
  return {
    name, format: half ? 'f16' : 'f32', shape,
    *data() {
      const next = randomStream(seed, name);
      for (let at = 0; at < count; at += CHUNK_ELEMENTS) {
        const n = Math.min(CHUNK_ELEMENTS, count - at);
        const values = half ? new Uint16Array(n) : new Float32Array(n);
        for (let i = 0; i < n; i++) {
          const v = mean + std * NORMAL_TABLE[next() >>> 16];
          values[i] = half ? f32ToF16(v) : v;
        }
        yield new Uint8Array(values.buffer);
      }
    },
  };
}

function synthTensors(config: LlamaConfig, format: QuantFormat, seed: number): LowbitTensorToWrite[] {
  const qDim = config.nHeads * config.headDim, kvDim = config.nKvHeads * config.headDim;
  const shapes: Record<string, [number, number]> = {
    'self_attn.q_proj': [qDim, config.dim], 'self_attn.k_proj': [kvDim, config.dim], 'self_attn.v_proj': [kvDim, config.dim],
    'self_attn.o_proj': [config.dim, qDim], 'mlp.gate_proj': [config.hiddenDim, config.dim], 'mlp.up_proj': [config.hiddenDim, config.dim],
    'mlp.down_proj': [config.dim, config.hiddenDim],
  };
  const tensors = [floatTensor(EMBED_TOKENS, [config.vocabSize, config.dim], 0, WEIGHT_STD, seed)];
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const role of LAYER_ROLES) {
      const name = layerTensorName(layer, role);
      const shape = shapes[role];
      tensors.push(shape ? linearTensor(name, format, ...shape, seed) : floatTensor(name, [config.dim], 1, NORM_STD, seed));
    }
  }
  tensors.push(floatTensor(FINAL_NORM, [config.dim], 1, NORM_STD, seed));
  if (!config.tiedEmbeddings) tensors.push(floatTensor(LM_HEAD, [config.vocabSize, config.dim], 0, WEIGHT_STD, seed));
  return tensors;
}

// ---------------------------------------------------------------------------------------------
// The file

/** Options of `synthContent` and `synthModel`. */
export interface SynthOptions {
  /** A shape of SYNTH_SHAPES. */
  readonly shape: string;
  /** Bits of the linear layers: 1, 1.58, 2, 3 or 4, as a number or text. */
  readonly bits: number | string;
  /** Seed of the random weights (an unsigned 32-bit integer). Defaults to `0`. */
  readonly seed?: number;
  /** Tokenizer file to embed. Defaults to the shape's bundled tokenizer. */
  readonly tokenizer?: string;
  /** Called after each stored tensor is written. Defaults to none. */
  readonly onProgress?: ProgressListener;
}

const OPTIONS = ['shape', 'bits', 'seed', 'tokenizer', 'onProgress'] as const;

function resolveOptions(options: unknown): { shape: SynthShapeName; bits: Bits; seed: number; tokenizer?: string; onProgress?: ProgressListener } {
  const o = plainObject('options', options);
  knownOptions('synth', o, OPTIONS);
  if (o.tokenizer !== undefined && typeof o.tokenizer !== 'string') throw invalidParameter('tokenizer', 'a file path', o.tokenizer);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidParameter('onProgress', 'a function', o.onProgress);
  return {
    shape: oneOf('shape', o.shape, SYNTH_SHAPE_NAMES),
    bits: parseBits('bits', o.bits),
    seed: o.seed === undefined ? 0 : integerIn('seed', o.seed, 0, 0xffffffff),
    tokenizer: o.tokenizer as string | undefined,
    onProgress: o.onProgress as ProgressListener | undefined,
  };
}

/** The shape's tokenizer, embedded with its own BOS/EOS; its vocabulary must fit the config. */
function synthTokenizer(file: string, config: LlamaConfig): LowbitTokenizer {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const { kind } = readTokenizerContent(file, bytes);
  const tokenizer = loadTokenizer({ kind: 'embedded', file, format: kind, bytes });
  if (tokenizer.vocabSize > config.vocabSize) {
    throw invalidParameter('tokenizer', `a tokenizer of at most ${config.vocabSize} ids`, `${file} (${tokenizer.vocabSize} ids)`, true);
  }
  return { format: kind, bytes, ...(tokenizer.bosId !== undefined && { bosId: tokenizer.bosId }), eosIds: tokenizer.eosIds };
}

/** Everything a synthetic file holds, tensors still ungenerated (plan or write it). */
export function synthContent(options: SynthOptions): LowbitFileContent {
  const o = resolveOptions(options);
  const shape: SynthShape = SYNTH_SHAPES[o.shape];
  const tokenizerFile = o.tokenizer ?? path.join(bundledModelsDir(), shape.tokenizer);
  const recipe: LowbitRecipe = {
    tool: 'synth', bits: o.bits, method: 'random', group: 0, tensorBits: [], embeddings: 'f16', source: o.shape,
    lowbitVersion: LOWBIT_VERSION, date: recipeDate(), seed: o.seed,
  };
  return {
    config: shape.config,
    tokenizer: synthTokenizer(tokenizerFile, shape.config),
    recipe,
    tensors: synthTensors(shape.config, formatOfBits(o.bits), o.seed),
  };
}

/** Writes a synthetic model to `output`, streaming tensor by tensor; resolves with the file size. */
export async function synthModel(output: string, options: SynthOptions): Promise<number> {
  if (typeof output !== 'string' || output === '') throw invalidParameter('output', 'a file path', output);
  const content = synthContent(options);
  return writeLowbitFile(output, content, { onTensorWritten: (done, total, name) => options.onProgress?.({ done, total, name }) });
}
