/**
 * The bundled test models (../shared/models, see its README) with the configs its table gives,
 * and a scratch-folder helper for tests that write files.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Folder of the shared models (override with LOWBIT_MODELS_DIR). */
export const MODELS_DIR = process.env.LOWBIT_MODELS_DIR ?? path.resolve(__dirname, '../../../shared/models');

/** Absolute path of a file given relative to MODELS_DIR. */
export function modelPath(relative: string): string {
  return path.join(MODELS_DIR, relative);
}

/** One entry of references.json: a greedy generation of llama2.c's run.c. */
export interface Reference {
  model: string;
  tokenizer: string;
  sameWeightsGguf: string;
  prompt: string;
  promptTokens: number[];
  generatedTokens: number[];
  continuation: string;
  stoppedOnBos: boolean;
  maxPositions: number;
}

export function readReferences(): Reference[] {
  return JSON.parse(fs.readFileSync(modelPath('references.json'), 'utf8')) as Reference[];
}

/** The README's config columns. */
export interface ReadmeConfig {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly maxSeqLen: number;
}

/** A bundled llama2.c model and the GGUF files made from it. */
export interface BundledModel {
  readonly name: string;
  /** llama2.c checkpoint, relative to MODELS_DIR. */
  readonly bin: string;
  readonly config: ReadmeConfig;
  readonly tiedEmbeddings: boolean;
  /** Tokenizer found next to the .bin (undefined: none there). */
  readonly tokenizer?: string;
  readonly ggufF32?: string;
  readonly ggufQ8?: string;
  readonly ggufQ4?: string;
}

/** The llama2.c models of the README table, with their GGUF siblings. */
export const BUNDLED_MODELS: readonly BundledModel[] = [
  {
    name: 'stories260K',
    bin: 'stories260K/stories260K.bin',
    config: { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, maxSeqLen: 512 },
    tiedEmbeddings: true,
    tokenizer: 'stories260K/tok512.bin',
    ggufF32: 'stories260K/stories260K-f32.gguf',
  },
  {
    name: 'llama2xs',
    bin: 'llama2xs/llama2xs.bin',
    config: { dim: 64, hiddenDim: 192, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, maxSeqLen: 256 },
    tiedEmbeddings: true,
    ggufF32: 'llama2xs/llama2xs-f32.gguf',
    ggufQ8: 'llama2xs/llama2xs-Q8_0.gguf',
    ggufQ4: 'llama2xs/llama2xs-Q4_0.gguf',
  },
  {
    name: 'babyllama-tok105',
    bin: 'babyllama-tok105/babyllama-tok105.bin',
    config: { dim: 128, hiddenDim: 352, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 105, maxSeqLen: 256 },
    tiedEmbeddings: true,
    tokenizer: 'babyllama-tok105/tok105.bin',
    ggufF32: 'babyllama-tok105/babyllama-tok105-f32.gguf',
    ggufQ8: 'babyllama-tok105/babyllama-tok105-Q8_0.gguf',
    ggufQ4: 'babyllama-tok105/babyllama-tok105-Q4_0.gguf',
  },
  {
    name: 'aidreams260K',
    bin: 'aidreams260K/aidreams260K.bin',
    config: { dim: 64, hiddenDim: 172, nLayers: 4, nHeads: 4, nKvHeads: 4, vocabSize: 512, maxSeqLen: 128 },
    tiedEmbeddings: true,
    tokenizer: 'aidreams260K/tok512_aidreams.bin',
  },
];

/**
 * llama.cpp's convert-llama2c-to-ggml writes `llama.context_length` = 128 (its default context),
 * not the checkpoint's seq_len, for every bundled GGUF.
 */
export const GGUF_CONTEXT_LENGTH = 128;

/** A fresh scratch folder under the OS temp dir; remove it with `removeDir`. */
export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lowbit-${prefix}-`));
}

/** Removes a scratch folder and everything in it. */
export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
