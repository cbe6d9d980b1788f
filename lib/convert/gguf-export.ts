/**
 * Writes a lowbit model as a GGUF file in llama.cpp's nearest types, so both engines can run the
 * same weights (bench/generate.ts): b4 rows become Q4_0 blocks (codes carry over, each block
 * takes its row's scale), t158 rows become TQ2_0 or TQ1_0 blocks of 256; every other weight (and
 * any format asked as f16) is dequantized to F16. With f16-valued row scales (lowbit synth makes
 * them so) the GGUF computes exactly the function the lowbit file does. Embeddings and the head
 * are F16, norms F32. q/k rows move to GGUF's interleaved RoPE layout when the model uses HF's.
 */
import { LowbitError } from '../errors';
import {
  ggufTensorName, ggufTyped, type GgufMetadataValue, type GgufTensorInput, GgufValueType, openModel, readGgufMetadata, writeGguf,
} from '../io';
import { dequantizeToF32, encodeBlocks, f32ToF16 } from '../io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LAYER_ROLES, LM_HEAD, layerTensorName, ropeRowOrder } from '../io/llama';
import { refuseShared } from '../io/sharp';
import type { LlamaConfig, ModelSource } from '../io/types';
import { matrixTensor } from '../model/assemble';
import type { FormatName } from '../native';
import { QTensor } from '../qtensor';

/** GGUF types lowbit writes linear weights as. */
export type GgufLinearType = 'q4_0' | 'tq2_0' | 'tq1_0' | 'f16';

/** Which lowbit format each block type carries without loss, and its block length. */
const LOSSLESS: Record<Exclude<GgufLinearType, 'f16'>, { format: FormatName; block: number }> = {
  q4_0: { format: 'b4', block: 32 },
  tq2_0: { format: 't158', block: 256 },
  tq1_0: { format: 't158', block: 256 },
};

export interface GgufExportOptions {
  /** Type of the seven linear layers of every block. */
  linear: GgufLinearType;
  /** A GGUF file whose `tokenizer.ggml.*` metadata is the model's vocabulary (e.g. a vocab-only GGUF). */
  vocabulary: string;
}

/** The llama.* keys, with the types llama.cpp requires (uint32 counts, float32 constants). */
function llamaMetadata(c: LlamaConfig, name: string): [string, GgufMetadataValue][] {
  const u32 = (n: number) => ggufTyped(GgufValueType.UINT32, n), f32 = (n: number) => ggufTyped(GgufValueType.FLOAT32, n);
  return [
    ['general.architecture', 'llama'],
    ['general.name', name],
    ['llama.context_length', u32(c.maxSeqLen)],
    ['llama.embedding_length', u32(c.dim)],
    ['llama.block_count', u32(c.nLayers)],
    ['llama.feed_forward_length', u32(c.hiddenDim)],
    ['llama.attention.head_count', u32(c.nHeads)],
    ['llama.attention.head_count_kv', u32(c.nKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(c.normEps)],
    ['llama.rope.freq_base', f32(c.ropeTheta)],
    ['llama.rope.dimension_count', u32(c.headDim)],
    ['llama.vocab_size', u32(c.vocabSize)],
  ];
}

/** Rows of a weight in GGUF order: q/k projections of an HF-layout model are re-paired. */
function rowOrder(c: LlamaConfig, name: string, rows: number): Int32Array | undefined {
  if (c.ropeStyle !== 'half') return undefined;
  for (let l = 0; l < c.nLayers; l++) {
    if (name === layerTensorName(l, 'self_attn.q_proj')) return ropeRowOrder(rows, c.nHeads, 'interleaved');
    if (name === layerTensorName(l, 'self_attn.k_proj')) return ropeRowOrder(rows, c.nKvHeads, 'interleaved');
  }
  return undefined;
}

function reorder<T extends Uint8Array | Float32Array>(values: T, perRow: number, order: Int32Array | undefined): T {
  if (!order) return values;
  const out = new (values.constructor as new (n: number) => T)(values.length);
  order.forEach((from, to) => out.set(values.subarray(from * perRow, (from + 1) * perRow), to * perRow));
  return out;
}

/** A weight matrix as GGUF bytes of `type`. */
function matrixBytes(source: ModelSource, name: string, rows: number, cols: number, type: GgufLinearType): Uint8Array {
  const [native] = matrixTensor(source, name, rows, cols, {});
  const tensor = new QTensor(native);
  try {
    const order = rowOrder(source.config, name, rows);
    if (type !== 'f16') {
      const { format, block } = LOSSLESS[type];
      if (tensor.format !== format || tensor.group !== 0 || cols % block !== 0) {
        throw new LowbitError(`${name}: ${tensor.format} (group ${tensor.group}, ${cols} columns) has no exact ${type} form`, 'LOWBIT_UNSUPPORTED');
      }
      const codes = reorder(tensor.codes(), cols, order);
      const rowScales = reorder(tensor.scales()!, 1, order);
      const blockScales = new Float32Array((rows * cols) / block);
      for (let r = 0; r < rows; r++) blockScales.fill(rowScales[r], (r * cols) / block, ((r + 1) * cols) / block);
      return encodeBlocks(type, codes, blockScales);
    }
    return halfBytes(reorder(tensor.dequantize(), cols, order));
  } finally {
    tensor.dispose();
  }
}

function halfBytes(values: Float32Array): Uint8Array {
  const half = Uint16Array.from(values, f32ToF16);
  return new Uint8Array(half.buffer);
}

function vectorBytes(source: ModelSource, name: string): GgufTensorInput {
  const info = source.tensors.get(name)!;
  const values = dequantizeToF32(info.dtype, info.read(), info.shape[0]);
  return { name: ggufTensorName(name), dtype: 'f32', shape: [...info.shape], data: new Uint8Array(values.buffer) };
}

/** Writes `modelPath` (any model lowbit reads) as a llama.cpp GGUF at `outPath`. */
export function exportGguf(modelPath: string, outPath: string, options: GgufExportOptions): void {
  const source = openModel(modelPath);
  try {
    refuseShared(source, 'GGUF export');
    const c = source.config;
    const vocabulary = readGgufMetadata(options.vocabulary);
    const metadata: [string, GgufMetadataValue][] = llamaMetadata(c, source.path);
    for (const [key, value] of vocabulary.metadata) {
      if (key.startsWith('tokenizer.')) metadata.push([key, ggufTyped(vocabulary.types.get(key)!, value)]);
    }
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const shapes: Record<string, [number, number]> = {
      'self_attn.q_proj': [qDim, c.dim], 'self_attn.k_proj': [kvDim, c.dim], 'self_attn.v_proj': [kvDim, c.dim],
      'self_attn.o_proj': [c.dim, qDim], 'mlp.gate_proj': [c.hiddenDim, c.dim], 'mlp.up_proj': [c.hiddenDim, c.dim],
      'mlp.down_proj': [c.dim, c.hiddenDim],
    };
    // Matrices are converted one at a time, when the writer asks for their bytes.
    const tensors: GgufTensorInput[] = [];
    const lazy = (name: string, rows: number, cols: number, type: GgufLinearType): GgufTensorInput => ({
      name: ggufTensorName(name), dtype: type, shape: [rows, cols], data: () => matrixBytes(source, name, rows, cols, type),
    });
    tensors.push(lazy(EMBED_TOKENS, c.vocabSize, c.dim, 'f16'));
    for (let l = 0; l < c.nLayers; l++) {
      for (const role of LAYER_ROLES) {
        const name = layerTensorName(l, role);
        if (role in shapes) tensors.push(lazy(name, ...shapes[role], options.linear));
        else tensors.push(vectorBytes(source, name));
      }
    }
    tensors.push(vectorBytes(source, FINAL_NORM));
    if (!c.tiedEmbeddings && source.tensors.has(LM_HEAD)) tensors.push(lazy(LM_HEAD, c.vocabSize, c.dim, 'f16'));
    writeGguf(outPath, metadata, tensors);
  } finally {
    source.close();
  }
}
