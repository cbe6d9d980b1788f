/**
 * What every model reader produces: a Llama config, named tensors that are read from disk on
 * demand, the tokenizer's source and the raw metadata. Readers never interpret tensors beyond
 * their storage type; assembly into a native model happens in lib/model.
 */
import type { SharpLayout } from './sharp';

/** Storage types a reader may hand out. Quantized GGUF types keep their llama.cpp block layout. */
export type TensorDType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'f64'
  | 'i8'
  | 'u8'
  | 'i16'
  | 'i32'
  | 'i64'
  | 'q8_0'
  | 'q4_0'
  | 'tq1_0'
  | 'tq2_0'
  /** lowbit's own packed formats (our safetensors container); layout in docs/FORMAT.md. */
  | 'lowbit';

/** One tensor of a model file. Nothing is read until `read()` is called. */
export interface TensorInfo {
  /** Canonical (Hugging Face Llama) name, e.g. `model.layers.3.mlp.down_proj.weight`. */
  readonly name: string;
  readonly dtype: TensorDType;
  /** Row-major shape, outermost first; a linear weight is `[outFeatures, inFeatures]`. */
  readonly shape: readonly number[];
  /** Bytes of the stored data. */
  readonly byteLength: number;
  /** Reads the stored bytes (little-endian) from disk. Each call reads again; callers keep what they need. */
  read(): Uint8Array;
}

/** Llama-3 style frequency scaling of RoPE (`rope_scaling.rope_type == "llama3"`). */
export interface RopeScaling {
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositions: number;
}

/**
 * How rotary embeddings pair the dimensions of a head:
 * - `interleaved`: pairs (2i, 2i+1), as Meta's original checkpoints, llama2.c and GGUF `llama`;
 * - `half`: pairs (i, i + headDim/2), as Hugging Face's `rotate_half` (its converter permutes q/k).
 */
export type RopeStyle = 'interleaved' | 'half';

export interface LlamaConfig {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  /** Longest context the model was trained for. */
  readonly maxSeqLen: number;
  readonly normEps: number;
  readonly ropeTheta: number;
  readonly ropeStyle: RopeStyle;
  readonly ropeScaling?: RopeScaling;
  /** The output projection reuses the token embedding (no separate `lm_head.weight`). */
  readonly tiedEmbeddings: boolean;
}

/**
 * Kinds of tokenizer file a lowbit file embeds (docs/FORMAT.md): SentencePiece `.model`, tiktoken
 * rank file, Hugging Face `tokenizer.json`, llama2.c `tokenizer.bin`, or a GGUF file holding only
 * `tokenizer.*` metadata.
 */
export type EmbeddedTokenizerKind = 'sentencepiece' | 'tiktoken' | 'tokenizer.json' | 'llama2c' | 'gguf';

/** A tokenizer file carried inside a model file, with the special ids the model file names. */
export interface EmbeddedTokenizer {
  readonly kind: 'embedded';
  /** Names the bytes in errors, e.g. `model.lowbit (tensor lowbit.tokenizer)`. */
  readonly file: string;
  readonly format: EmbeddedTokenizerKind;
  readonly bytes: Uint8Array;
  /** Override the ids the tokenizer file names; checked against its vocabulary when loaded. */
  readonly bosId?: number;
  readonly eosIds?: readonly number[];
}

/** Where the tokenizer of a model comes from; turned into a Tokenizer by lib/tokenizer. */
export type TokenizerSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'gguf'; readonly metadata: ReadonlyMap<string, GgufValue> }
  | { readonly kind: 'hf-dir'; readonly dir: string }
  | EmbeddedTokenizer;

/** A GGUF metadata value (arrays hold one element type). */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

export type ModelContainer = 'llama2c' | 'gguf' | 'safetensors' | 'pytorch' | 'lowbit';

/** A model file (or Hugging Face directory) opened for reading. Call `close()` when done. */
export interface ModelSource {
  readonly path: string;
  readonly container: ModelContainer;
  readonly config: LlamaConfig;
  /** Tensors by canonical name. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly tokenizer: TokenizerSource | undefined;
  /** Container metadata as read (GGUF key/values, safetensors `__metadata__`, HF config.json ...). */
  readonly metadata: ReadonlyMap<string, unknown>;
  /** Token ids from the file's config, when it names them. */
  readonly bosId?: number;
  readonly eosIds?: readonly number[];
  /** Jinja chat template, when the file carries one. */
  readonly chatTemplate?: string;
  /** SHARP: layers that reuse another layer's MLP weights (lowbit files of version 2). */
  readonly sharp?: SharpLayout;
  close(): void;
}
