/**
 * Assembly of a native model from the named tensors a reader hands out: each Llama role becomes a
 * QTensor in the format that holds it without loss — f32/f16 as they are, bf16 widened to f32,
 * GGUF Q4_0 as b4 (groups of 32), TQ1_0/TQ2_0 as t158 (groups of 256), Q8_0 dequantized to f32,
 * lowbit files' packed tensors as they are stored (the native side validates codes and scales) —
 * and float weights that already lie on a ParetoQ grid (fake-quantized checkpoints) are packed into
 * that grid's codes, bit-exact. SHARP target layers get their reference layer's native tensor for a
 * shared projection (one storage, aliased) plus the recovery factors A and B in float.
 */
import { LowbitFormatError } from '../errors';
import { blockCodes, dequantizeToF32, f16ToF32 } from '../io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LM_HEAD, layerTensorName, type LayerRole } from '../io/llama';
import { isLowbitTensor, type LowbitTensorInfo } from '../io/lowbit-format';
import { MLP_PROJECTIONS, type MlpProjection, loraTensorName, mlpShape, sharedReference } from '../io/sharp';
import type { LlamaConfig, ModelSource, TensorInfo } from '../io/types';
import {
  type ActivationMode, type AddonLayerWeights, type AddonLinearName, type AddonModel, type AddonModelConfig,
  type AddonQTensor, binding, callNative, type FormatName,
} from '../native';

/** Linear roles in the native layer struct, by Hugging Face role (the MLP's keys are SHARP's projection names). */
export const LINEAR_ROLES: ReadonlyArray<readonly [AddonLinearName, LayerRole]> = [
  ['wq', 'self_attn.q_proj'],
  ['wk', 'self_attn.k_proj'],
  ['wv', 'self_attn.v_proj'],
  ['wo', 'self_attn.o_proj'],
  ['gate', 'mlp.gate_proj'],
  ['up', 'mlp.up_proj'],
  ['down', 'mlp.down_proj'],
];

export interface AssembleOptions {
  /** Pack float weights that lie on a ParetoQ grid into its codes. Defaults to `true`. */
  readonly detectGrids?: boolean;
  /** How quantized layers multiply: int8 or float activations. Defaults to `int8`. */
  readonly activations?: ActivationMode;
}

/** What the MLP weights take, as the model computes with them and as they are stored (SHARP shares). */
export interface MlpStorage {
  /** Weights of every layer's gate, up and down, counting a shared one in every layer that uses it. */
  readonly logicalParameters: number;
  /** Weights held: each distinct MLP weight once, plus recovery factors. */
  readonly storedParameters: number;
  /** Bytes in memory of the logical weights (packed codes and scales, or floats). */
  readonly logicalBytes: number;
  /** Bytes in memory of the stored weights and recovery factors. */
  readonly storedBytes: number;
}

export interface AssembledModel {
  readonly native: AddonModel;
  /** Format of every stored weight tensor, by canonical name. */
  readonly formats: ReadonlyMap<string, FormatName>;
  /** Parameters (weights) the model stores; a tied output and a shared MLP weight count once. */
  readonly parameters: number;
  readonly mlp: MlpStorage;
}

const LINEAR_ROLE_OF = Object.fromEntries(LINEAR_ROLES) as Record<AddonLinearName, LayerRole>;

function required(source: ModelSource, name: string): TensorInfo {
  const info = source.tensors.get(name);
  if (!info) throw new LowbitFormatError(source.path, 'tensor is missing', name);
  return info;
}

function readF32(source: ModelSource, info: TensorInfo): Float32Array {
  const count = info.shape.reduce((a, b) => a * b, 1);
  try {
    return info.dtype === 'f32' ? copyF32(info.read()) : dequantizeToF32(info.dtype, info.read(), count);
  } catch (error) {
    if (error instanceof LowbitFormatError) throw error;
    throw new LowbitFormatError(source.path, `cannot read ${info.dtype} data: ${(error as Error).message}`, info.name, { cause: error });
  }
}

function copyF32(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** The format a row of float weights would be exact in, judging by how many distinct values it has. */
function gridCandidates(row: Float32Array): FormatName[] {
  const distinct = new Set<number>();
  for (const v of row) {
    distinct.add(v);
    if (distinct.size > 16) return [];
  }
  const n = distinct.size, hasZero = distinct.has(0);
  const all: [FormatName, boolean][] = [['b1', n <= 2 && !hasZero], ['t158', n <= 3], ['b2', n <= 4 && !hasZero], ['b3', n <= 8], ['b4', n <= 16]];
  return all.filter(([, ok]) => ok).map(([f]) => f);
}

/** A float matrix as a QTensor: packed into a ParetoQ grid when every row is on one, else as it is. */
function floatMatrix(source: ModelSource, info: TensorInfo, rows: number, cols: number, options: AssembleOptions): [AddonQTensor, FormatName] {
  const q = binding().AddonQTensor;
  // Half-precision bits are read once and viewed in place (a copy only if the bytes are misaligned).
  const halfBytes = info.dtype === 'f16' || info.dtype === 'bf16' ? info.read() : undefined;
  const halfBits = halfBytes && (halfBytes.byteOffset % 2 === 0
    ? new Uint16Array(halfBytes.buffer, halfBytes.byteOffset, halfBytes.byteLength / 2)
    : new Uint16Array(halfBytes.slice().buffer));
  const values = halfBits && info.dtype === 'f16' ? undefined : readF32(source, info);
  if (options.detectGrids !== false) {
    const firstRow = values ? values.subarray(0, cols) : Float32Array.from(halfBits!.subarray(0, cols), f16ToF32);
    for (const format of gridCandidates(firstRow)) {
      try {
        const weights = halfBits ?? values!;
        return [q.quantize(weights, rows, cols, format, 'exact', 0, info.dtype as 'f32' | 'f16' | 'bf16', 0), format];
      } catch {
        // not on this grid: try the next, wider one
      }
    }
  }
  if (info.dtype === 'f16') return [callNative(() => q.fromPacked('f16', rows, cols, 0, halfBytes!, null)), 'f16'];
  return [callNative(() => q.fromPacked('f32', rows, cols, 0, new Uint8Array(values!.buffer), null)), 'f32'];
}

/** GGUF block types that are exactly one of our formats: their codes and scales carry over. */
type CodeBlockDType = 'q4_0' | 'tq1_0' | 'tq2_0';
const BLOCK_FORMATS: Record<CodeBlockDType, { format: FormatName; group: number }> = {
  q4_0: { format: 'b4', group: 32 },
  tq1_0: { format: 't158', group: 256 },
  tq2_0: { format: 't158', group: 256 },
};

/** A lowbit file's packed tensor; bad codes, scales or sizes name the file and the tensor. */
function packedMatrix(source: ModelSource, info: LowbitTensorInfo, rows: number, cols: number): [AddonQTensor, FormatName] {
  try {
    return [callNative(() => binding().AddonQTensor.fromPacked(info.format, rows, cols, info.group, info.read(), info.readScales())), info.format];
  } catch (error) {
    if (error instanceof LowbitFormatError) throw error;
    throw new LowbitFormatError(source.path, `invalid ${info.format} data: ${(error as Error).message}`, info.name, { cause: error });
  }
}

/** One weight matrix (rows x cols) of the model as a native QTensor in the format that holds it. */
export function matrixTensor(source: ModelSource, name: string, rows: number, cols: number, options: AssembleOptions): [AddonQTensor, FormatName] {
  const info = required(source, name);
  if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== cols) {
    throw new LowbitFormatError(source.path, `has shape [${info.shape.join(', ')}], expected [${rows}, ${cols}]`, name);
  }
  if (isLowbitTensor(info)) return packedMatrix(source, info, rows, cols);
  if (info.dtype in BLOCK_FORMATS) {
    const dtype = info.dtype as CodeBlockDType, block = BLOCK_FORMATS[dtype];
    const { codes, scales } = blockCodes(dtype, info.read(), rows * cols);
    return [callNative(() => binding().AddonQTensor.fromCodes(block.format, rows, cols, block.group, codes, scales)), block.format];
  }
  if (info.dtype === 'f32' || info.dtype === 'f16' || info.dtype === 'bf16') return floatMatrix(source, info, rows, cols, options);
  const values = readF32(source, info);  // q8_0, f64: no lossless low-bit form, kept as f32
  return [callNative(() => binding().AddonQTensor.fromPacked('f32', rows, cols, 0, new Uint8Array(values.buffer), null)), 'f32'];
}

function vector(source: ModelSource, name: string, length: number): Float32Array {
  const info = required(source, name);
  const values = readF32(source, info);
  if (values.length !== length) throw new LowbitFormatError(source.path, `has ${values.length} values, expected ${length}`, name);
  return values;
}

/** GGUF files (Llama 3.1 and later) store RoPE frequency divisors as a tensor instead of rope_scaling. */
const ROPE_FREQS = 'rope_freqs.weight';

export function nativeConfig(config: LlamaConfig, ropeFreqFactors?: Float32Array): AddonModelConfig {
  return {
    dim: config.dim, hiddenDim: config.hiddenDim, nLayers: config.nLayers, nHeads: config.nHeads,
    nKvHeads: config.nKvHeads, headDim: config.headDim, vocabSize: config.vocabSize, maxSeqLen: config.maxSeqLen,
    normEps: config.normEps, ropeTheta: config.ropeTheta, ropeStyle: config.ropeStyle,
    ...(config.ropeScaling ? { ropeScaling: { ...config.ropeScaling } } : {}),
    ...(ropeFreqFactors ? { ropeFreqFactors } : {}),
  };
}

/** Bytes of the distinct tensors among `tensors`. */
function distinctBytes(tensors: Iterable<AddonQTensor>): number {
  let bytes = 0;
  for (const t of new Set(tensors)) bytes += t.info().bytes;
  return bytes;
}

/** Logical and stored MLP weights: a target's shared projection is its reference's tensor. */
function mlpStorage(layers: readonly AddonLayerWeights[], c: LlamaConfig): MlpStorage {
  const weights = layers.flatMap((l) => MLP_PROJECTIONS.map((mat) => l[mat]));
  const factors = layers.flatMap((l) => Object.values(l.recovery ?? {}).flatMap((r) => [r.a, r.b]));
  const count = (t: AddonQTensor) => t.info().rows * t.info().cols;
  const stored = [...new Set(weights)].concat(factors);
  return {
    logicalParameters: layers.length * 3 * c.dim * c.hiddenDim,
    storedParameters: stored.reduce((sum, t) => sum + count(t), 0),
    logicalBytes: weights.reduce((sum, t) => sum + t.info().bytes, 0),
    storedBytes: distinctBytes(stored),
  };
}

/** Builds the native model. Temporary JS handles are released; the model keeps the weights. */
export function assembleModel(source: ModelSource, options: AssembleOptions = {}): AssembledModel {
  const c = source.config;
  const formats = new Map<string, FormatName>();
  const handles: AddonQTensor[] = [];
  const matrix = (name: string, rows: number, cols: number, matrixOptions = options) => {
    const [t, format] = matrixTensor(source, name, rows, cols, matrixOptions);
    handles.push(t);
    formats.set(name, format);
    return t;
  };
  // Recovery factors stay float whatever their values (a grid would make them quantized).
  const factor = (name: string, rows: number, cols: number) => matrix(name, rows, cols, { ...options, detectGrids: false });
  const isShared = (layer: number, key: AddonLinearName) =>
    MLP_PROJECTIONS.includes(key as MlpProjection) && sharedReference(source.sharp, layer, key as MlpProjection) !== undefined;
  try {
    const qDim = c.nHeads * c.headDim, kvDim = c.nKvHeads * c.headDim;
    const shapes: Record<AddonLinearName, [number, number]> = {
      wq: [qDim, c.dim], wk: [kvDim, c.dim], wv: [kvDim, c.dim], wo: [c.dim, qDim],
      gate: [c.hiddenDim, c.dim], up: [c.hiddenDim, c.dim], down: [c.dim, c.hiddenDim],
    };
    const embedding = matrix(EMBED_TOKENS, c.vocabSize, c.dim);
    const output = c.tiedEmbeddings || !source.tensors.has(LM_HEAD) ? embedding : matrix(LM_HEAD, c.vocabSize, c.dim);
    const layers: AddonLayerWeights[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const layer = {
        attnNorm: vector(source, layerTensorName(l, 'input_layernorm'), c.dim),
        ffnNorm: vector(source, layerTensorName(l, 'post_attention_layernorm'), c.dim),
      } as AddonLayerWeights;
      for (const [key] of LINEAR_ROLES.filter(([k]) => !isShared(l, k))) layer[key] = matrix(layerTensorName(l, LINEAR_ROLE_OF[key]), ...shapes[key]);
      layers.push(layer);
    }
    // SHARP targets, once every reference has its tensors (a reference may follow its target).
    for (let l = 0; l < c.nLayers; l++) {
      for (const mat of MLP_PROJECTIONS) {
        const reference = sharedReference(source.sharp, l, mat);
        if (reference === undefined) continue;
        layers[l][mat] = layers[reference][mat];
        const rank = source.sharp!.ranks[mat], [out, inputs] = mlpShape(c, mat);
        if (rank === 0) continue;
        layers[l].recovery = {
          ...layers[l].recovery,
          [mat]: { a: factor(loraTensorName(l, mat, 'a'), rank, inputs), b: factor(loraTensorName(l, mat, 'b'), out, rank) },
        };
      }
    }
    const finalNorm = vector(source, FINAL_NORM, c.dim);
    const AddonModelClass = binding().AddonModel;
    const freqFactors = source.tensors.has(ROPE_FREQS) ? vector(source, ROPE_FREQS, c.headDim / 2) : undefined;
    const mlp = mlpStorage(layers, c);  // read from the handles before the model consumes them
    const native = callNative(() => new AddonModelClass(nativeConfig(c, freqFactors), { embedding, output, finalNorm, layers }, options.activations ?? 'int8'));
    let parameters = 0;
    for (const name of formats.keys()) parameters += source.tensors.get(name)!.shape.reduce((a, b) => a * b, 1);
    return { native, formats, parameters, mlp };
  } finally {
    for (const t of handles) t.dispose();
  }
}
