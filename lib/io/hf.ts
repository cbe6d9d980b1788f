/**
 * Hugging Face model folders: `config.json` (LlamaForCausalLM and look-alikes), optional
 * `generation_config.json` and `tokenizer_config.json`, and weights in `model.safetensors`, sharded
 * safetensors, `pytorch_model.bin` or sharded pytorch_model.bin. HF stores q/k rows permuted for
 * `rotate_half`, hence ropeStyle `half`. Tensors that are not Llama weights (ParetoQ's
 * `weight_clip_val`, old `rotary_emb.inv_freq` buffers) pass through under their own names.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { type JsonObject, JsonFields, readJsonObject } from './json';
import { LM_HEAD, checkLlamaConfig, checkLlamaTensors } from './llama';
import { openPytorchCheckpoint } from './pytorch';
import { openSafetensors } from './safetensors';
import { openShardedIndex } from './shards';
import { FileSource, readSideFile } from './source';
import { type TensorFile, closeOnError, createModelSource } from './tensors';
import type { LlamaConfig, ModelSource, RopeScaling, TensorInfo, TokenizerSource } from './types';
import { looksLikeZip } from './zip';

/** Weight files looked for, in order of preference. */
const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];
const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'LlamaModel', 'LLaMAForCausalLM', 'MistralForCausalLM'];
const SUPPORTED_MODEL_TYPES = ['llama', 'mistral'];

/** Options of `openHfDirectory`. */
export interface HfOptions {
  /** A tokenizer file to use instead of the folder's tokenizer. */
  readonly tokenizer?: string;
  /** The weights file (or `*.index.json`) to read. Defaults to the first of WEIGHT_FILES present. */
  readonly weights?: string;
}

/** Config.json facts beyond the LlamaConfig. */
interface HfConfig {
  readonly config: LlamaConfig;
  /** config.json as read. */
  readonly raw: JsonObject;
  readonly bosId?: number;
  readonly eosIds?: number[];
}

function checkArchitecture(fields: JsonFields): void {
  const architectures = fields.get('architectures');
  if (architectures !== undefined) {
    if (!Array.isArray(architectures) || !architectures.some((name) => SUPPORTED_ARCHITECTURES.includes(name as string))) {
      throw fields.fail(`${JSON.stringify(architectures)} is not a Llama architecture`, 'architectures');
    }
  }
  const modelType = fields.string('model_type');
  if (modelType !== undefined && !SUPPORTED_MODEL_TYPES.includes(modelType)) {
    throw fields.fail(`model type ${modelType} is not supported`, 'model_type');
  }
  const activation = fields.string('hidden_act') ?? 'silu';
  if (activation !== 'silu') throw fields.fail(`activation ${activation} is not supported (SwiGLU uses silu)`, 'hidden_act');
  for (const key of ['attention_bias', 'mlp_bias']) {
    if (fields.boolean(key, false)) throw fields.fail('biases are not supported', key);
  }
  if (fields.has('sliding_window')) throw fields.fail('sliding-window attention is not supported', 'sliding_window');
}

/** `rope_scaling` of type llama3 (or none / default). */
function ropeScaling(fields: JsonFields): RopeScaling | undefined {
  const scaling = fields.object('rope_scaling');
  if (scaling === undefined) return undefined;
  const type = scaling.string('rope_type') ?? scaling.string('type');
  if (type === 'default') return undefined;
  if (type !== 'llama3') throw fields.fail(`RoPE scaling ${String(type)} is not supported (only llama3)`, 'rope_scaling');
  const field = (key: string) => {
    try {
      return scaling.number(key);
    } catch {
      throw fields.fail(`needs a number ${key}`, 'rope_scaling');
    }
  };
  return {
    factor: field('factor'),
    lowFreqFactor: field('low_freq_factor'),
    highFreqFactor: field('high_freq_factor'),
    originalMaxPositions: field('original_max_position_embeddings'),
  };
}

/** LlamaConfig and token ids from config.json; `generation_config.json`'s eos ids win. */
export function readHfConfig(dir: string): HfConfig {
  const configPath = path.join(dir, 'config.json');
  const fields = new JsonFields(configPath, readJsonObject(configPath));
  checkArchitecture(fields);
  const dim = fields.integer('hidden_size');
  const nHeads = fields.integer('num_attention_heads');
  if (!fields.has('head_dim') && !(nHeads > 0 && dim % nHeads === 0)) {
    throw fields.fail(`hidden_size ${dim} is not a multiple of ${nHeads} heads; head_dim is needed`, 'num_attention_heads');
  }
  const scaling = ropeScaling(fields);
  const config: LlamaConfig = {
    dim,
    hiddenDim: fields.integer('intermediate_size'),
    nLayers: fields.integer('num_hidden_layers'),
    nHeads,
    nKvHeads: fields.integer('num_key_value_heads', nHeads),
    headDim: fields.integer('head_dim', dim / nHeads),
    vocabSize: fields.integer('vocab_size'),
    maxSeqLen: fields.integer('max_position_embeddings'),
    normEps: fields.number('rms_norm_eps', 1e-6),
    ropeTheta: fields.number('rope_theta', 10000),
    ropeStyle: 'half',
    ...(scaling !== undefined && { ropeScaling: scaling }),
    tiedEmbeddings: fields.boolean('tie_word_embeddings', false),
  };
  checkLlamaConfig(configPath, config);
  const generationPath = path.join(dir, 'generation_config.json');
  const generation = fs.existsSync(generationPath) ? new JsonFields(generationPath, readJsonObject(generationPath)) : undefined;
  const bosIds = fields.tokenIds('bos_token_id') ?? generation?.tokenIds('bos_token_id');
  const eosIds = generation?.tokenIds('eos_token_id') ?? fields.tokenIds('eos_token_id');
  return { config, raw: fields.value, bosId: bosIds?.[0], eosIds };
}

/** The chat template: `chat_template.jinja`, else `chat_template` of tokenizer_config.json. */
function readChatTemplate(dir: string): string | undefined {
  const jinjaPath = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinjaPath)) return new TextDecoder().decode(readSideFile(jinjaPath));
  const configPath = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(configPath)) return undefined;
  const template = new JsonFields(configPath, readJsonObject(configPath)).get('chat_template');
  if (template === undefined || typeof template === 'string') return template;
  // Several named templates: [{name, template}, ...]; use "default".
  if (Array.isArray(template)) {
    const named = template.find((t) => t?.name === 'default') ?? template[0];
    if (typeof named?.template === 'string') return named.template;
  }
  throw new LowbitFormatError(configPath, 'must be a string or a list of {name, template}', 'chat_template');
}

/** Opens a weights file or shard index, telling safetensors from torch zips by content. */
export function openWeights(weightsPath: string): TensorFile {
  return weightsPath.endsWith('.index.json') ? openShardedIndex(weightsPath, openWeightsFile) : openWeightsFile(weightsPath);
}

function openWeightsFile(weightsPath: string): TensorFile {
  const probe = FileSource.open(weightsPath);
  let isZip: boolean;
  try {
    isZip = looksLikeZip(probe);
  } finally {
    probe.close();
  }
  return isZip ? openPytorchCheckpoint(weightsPath) : openSafetensors(weightsPath);
}

function findWeights(dir: string): string {
  const found = WEIGHT_FILES.find((name) => fs.existsSync(path.join(dir, name)));
  if (found === undefined) throw new LowbitFormatError(dir, `no weights found (looked for ${WEIGHT_FILES.join(', ')})`);
  return path.join(dir, found);
}

/** Opens a Hugging Face model folder. */
export function openHfDirectory(dir: string, options: HfOptions = {}): ModelSource {
  const { config, bosId, eosIds, raw } = readHfConfig(dir);
  const chatTemplate = readChatTemplate(dir);
  const weights = openWeights(options.weights ?? findWeights(dir));
  return closeOnError(
    () => weights.close(),
    () => {
      const tensors = new Map<string, TensorInfo>(weights.tensors);
      // Transformers ties lm_head to the embedding when told to, ignoring any stored copy.
      if (config.tiedEmbeddings) tensors.delete(LM_HEAD);
      checkLlamaTensors(weights.path, config, tensors);
      const tokenizer: TokenizerSource | undefined =
        options.tokenizer !== undefined
          ? { kind: 'file', path: options.tokenizer }
          : ['tokenizer.json', 'tokenizer.model'].some((name) => fs.existsSync(path.join(dir, name)))
            ? { kind: 'hf-dir', dir }
            : undefined;
      return createModelSource(
        {
          path: dir,
          container: weights.container,
          config,
          tensors,
          tokenizer,
          metadata: new Map(Object.entries(raw)),
          bosId,
          eosIds,
          chatTemplate,
        },
        () => weights.close(),
      );
    },
  );
}
