/**
 * Conversions between containers for tests: a ModelSource written as a Hugging Face folder
 * (config.json + safetensors or pytorch_model.bin, optionally sharded) with q/k rows permuted to
 * HF's `rotate_half` order exactly as transformers' convert_llama_weights_to_hf.py does, and the
 * inverse permutation so tensors from any container can be compared in one (interleaved) layout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { layerTensorName, ropeRowOrder } from '../../lib/io/llama';
import { writeSafetensors } from '../../lib/io/safetensors-writer';
import type { LlamaConfig, ModelSource, TensorDType } from '../../lib/io/types';
import { type TorchSaveOptions, writePytorchCheckpoint } from './pytorch-writer';

/** HF's `permute(w, n_heads)` on whole rows of any dtype (lib/io/llama.ts `ropeRowOrder`). */
export function permuteRowsForHf(bytes: Uint8Array, nHeads: number, rows: number): Uint8Array {
  return reorderRows(bytes, ropeRowOrder(rows, nHeads, 'half'));
}

/** The inverse of `permuteRowsForHf` (HF `rotate_half` order back to interleaved pairs). */
export function unpermuteRowsFromHf(bytes: Uint8Array, nHeads: number, rows: number): Uint8Array {
  return reorderRows(bytes, ropeRowOrder(rows, nHeads, 'interleaved'));
}

function reorderRows(bytes: Uint8Array, order: Int32Array): Uint8Array {
  const rowBytes = bytes.length / order.length;
  if (!Number.isInteger(rowBytes)) throw new RangeError(`cannot split ${bytes.length} bytes into ${order.length} rows`);
  const out = new Uint8Array(bytes.length);
  order.forEach((from, to) => out.set(bytes.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes));
  return out;
}

/** The number of heads a q/k projection is permuted over, or undefined for other tensors. */
function permutedHeads(config: LlamaConfig, name: string): number | undefined {
  for (let layer = 0; layer < config.nLayers; layer++) {
    if (name === layerTensorName(layer, 'self_attn.q_proj')) return config.nHeads;
    if (name === layerTensorName(layer, 'self_attn.k_proj')) return config.nKvHeads;
  }
  return undefined;
}

/** A tensor's bytes in the interleaved (Meta / llama2.c / GGUF) q/k row order, whatever the source's. */
export function interleavedBytes(model: ModelSource, name: string): Uint8Array {
  const tensor = model.tensors.get(name);
  if (tensor === undefined) throw new RangeError(`no tensor ${name}`);
  const bytes = tensor.read();
  const heads = permutedHeads(model.config, name);
  return model.config.ropeStyle === 'half' && heads !== undefined ? unpermuteRowsFromHf(bytes, heads, tensor.shape[0]) : bytes;
}

/** A tensor ready to write to a HF checkpoint. */
export interface HfTensor {
  readonly name: string;
  readonly dtype: TensorDType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** Every tensor of `model` in HF layout (q/k permuted unless the source already is `half`). */
export function hfTensors(model: ModelSource): HfTensor[] {
  return [...model.tensors.values()].map((tensor) => {
    const heads = permutedHeads(model.config, tensor.name);
    const bytes = tensor.read();
    const data = model.config.ropeStyle === 'interleaved' && heads !== undefined ? permuteRowsForHf(bytes, heads, tensor.shape[0]) : bytes;
    return { name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, data };
  });
}

/** config.json for `config`, as transformers' LlamaConfig writes it. */
export function hfConfigJson(config: LlamaConfig, ids: { bosId?: number; eosIds?: readonly number[] } = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: config.dim,
    intermediate_size: config.hiddenDim,
    num_hidden_layers: config.nLayers,
    num_attention_heads: config.nHeads,
    num_key_value_heads: config.nKvHeads,
    head_dim: config.headDim,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.maxSeqLen,
    rms_norm_eps: config.normEps,
    rope_theta: config.ropeTheta,
    rope_scaling: config.ropeScaling === undefined
      ? null
      : {
          rope_type: 'llama3',
          factor: config.ropeScaling.factor,
          low_freq_factor: config.ropeScaling.lowFreqFactor,
          high_freq_factor: config.ropeScaling.highFreqFactor,
          original_max_position_embeddings: config.ropeScaling.originalMaxPositions,
        },
    tie_word_embeddings: config.tiedEmbeddings,
    bos_token_id: ids.bosId ?? 1,
    eos_token_id: ids.eosIds?.length === 1 ? ids.eosIds[0] : (ids.eosIds ?? 2),
    torch_dtype: 'float32',
  };
}

/** Options of `writeHfModel`. */
export interface HfWriteOptions {
  readonly format: 'safetensors' | 'pytorch';
  /** Split the weights into this many shards with an index.json. Defaults to 1 (no index). */
  readonly shards?: number;
  /** Passed to the PyTorch writer. */
  readonly torch?: TorchSaveOptions;
  /** Extra tensors (e.g. ParetoQ clip values) written after the model's. */
  readonly extraTensors?: readonly HfTensor[];
}

/** Writes `model` as a Hugging Face folder `dir` (created if needed). */
export function writeHfModel(model: ModelSource, dir: string, options: HfWriteOptions): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(model.config, model), null, 2));
  const tensors = [...hfTensors(model), ...(options.extraTensors ?? [])];
  const shardCount = options.shards ?? 1;
  const base = options.format === 'safetensors' ? 'model' : 'pytorch_model';
  const extension = options.format === 'safetensors' ? 'safetensors' : 'bin';
  const write = (file: string, part: readonly HfTensor[]) =>
    options.format === 'safetensors' ? writeSafetensors(file, part, { format: 'pt' }) : writePytorchCheckpoint(file, part, options.torch);
  if (shardCount === 1) {
    write(path.join(dir, `${base}.${extension}`), tensors);
    return;
  }
  const weightMap: Record<string, string> = {};
  const perShard = Math.ceil(tensors.length / shardCount);
  for (let shard = 0; shard < shardCount; shard++) {
    const name = `${base}-${String(shard + 1).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.${extension}`;
    const part = tensors.slice(shard * perShard, (shard + 1) * perShard);
    for (const tensor of part) weightMap[tensor.name] = name;
    write(path.join(dir, name), part);
  }
  const totalSize = tensors.reduce((sum, t) => sum + t.data.length, 0);
  fs.writeFileSync(path.join(dir, `${base}.${extension}.index.json`), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
}
