/**
 * The SHARP pipeline (`lowbit sharp`; arXiv 2502.07832, research notes B): target layers reuse an
 * adjacent reference layer's MLP weights, and each shared projection gets a low-rank recovery,
 * y = W_ref x + B (A x), fitted in native code (native/sharp): none (direct sharing), the truncated
 * SVD of W_target - W_ref, or a covariance-weighted SVD on the inputs the projection sees on
 * calibration text, optionally refined by Single Layer Warmup. With `bits`, every linear layer is
 * quantized (the shared reference too) and the recovery is fitted against the quantized reference.
 * Writes one lowbit file of format version 2 (docs/FORMAT.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, LowbitFormatError } from '../errors';
import { openModel } from '../io';
import { f32ToF16 } from '../io/dtypes';
import { EMBED_TOKENS, FINAL_NORM, LAYER_ROLES, LM_HEAD, layerTensorName } from '../io/llama';
import {
  type LowbitFloatFormat, type LowbitRecipe, type LowbitTensorToWrite, isLowbitTensor, writeLowbitFile,
} from '../io/lowbit-format';
import {
  MLP_PROJECTIONS, type MlpProjection, RECOVERY_INITS, type RecoveryInit, type SharpLayout, type SharpPair, loraTensorName,
  mlpRole, mlpShape, refuseShared, sharedReference, sharpLayoutProblem,
} from '../io/sharp';
import type { ModelSource, TensorInfo } from '../io/types';
import { assembleModel } from '../model/assemble';
import { type AddonSharpFit, type AddonSharpLayer, awaitNative, binding, callNative } from '../native';
import { type QTensor, QUANT_METHODS, type QuantFormat, type QuantMethod, quantizeAsync } from '../qtensor';
import { loadTokenizer } from '../tokenizer';
import { integerIn, invalidParameter, knownOptions, numberIn, oneOf, plainObject } from '../validate';
import { LOWBIT_VERSION } from '../version';
import { tokenizerToEmbed } from './embed-tokenizer';
import { type ProgressListener, recipeDate } from './progress';
import { type Bits, formatOfBits, parseBits } from './recipe';
import { resolveMats, resolveRanks, resolveSchedule } from './sharp-recipe';
import { floatTensor, floatValues } from './source-tensors';

/** Options of `sharpModel`. */
export interface SharpModelOptions {
  /**
   * Which target layer reuses which reference layer's MLP: `later-half` (odd layers t >= n/2 reuse
   * t - 1), `every-other` (every odd layer reuses the one before), explicit pairs
   * `'TARGET<REFERENCE,...'` (e.g. `'3<2,4<2'`), or an array of `{ target, reference }`. A
   * reference may not itself be a target. Defaults to `later-half`.
   */
  readonly schedule?: string | readonly SharpPair[];
  /**
   * Rank of each shared projection's recovery (0: none): one number, `'gate=16,up=16,down=32'`, or
   * `{ gate, up, down }` (unnamed ones get 16). At most min(rows, cols) of the projection. Defaults to `16`.
   */
  readonly rank?: number | string | Partial<Record<MlpProjection, number>>;
  /** The MLP projections targets take from their reference (`'gate,up,down'` or an array). Defaults to all three. */
  readonly mats?: string | readonly MlpProjection[];
  /**
   * How the recovery starts: `none` (A B = 0, direct sharing; with `refine`, A random and B = 0),
   * `svd` (truncated SVD of W_target - W_ref, data-free) or `cov` (covariance-weighted SVD on the
   * calibration inputs; needs `calib`). Defaults to `svd`.
   */
  readonly init?: RecoveryInit;
  /** A plain-text file to calibrate on (cov and refine need it). Defaults to none. */
  readonly calib?: string;
  /** Tokens of `calib` to run through the original model. Defaults to `2048`. */
  readonly calibTokens?: number;
  /** Single Layer Warmup: Adam steps per target layer on its recovery (needs `calib`). Defaults to `0`. */
  readonly refine?: number;
  /** Adam's learning rate for `refine`, decayed to 0 on a cosine. Defaults to `0.003`. */
  readonly refineLearningRate?: number;
  /**
   * Quantize every linear layer to 1, 1.58, 2, 3 or 4 bits; the recovery is then fitted against the
   * quantized reference and stays float. Defaults to none: weights as the source stores them (float,
   * or a lowbit file's packed weights).
   */
  readonly bits?: number | string;
  /** With `bits`: `exact` (weights already on the grid), `rtn` or `mse` (see `quantizeModel`). Defaults to `exact`. */
  readonly method?: QuantMethod;
  /** With `bits`: columns per scale, a multiple of 32; 0 gives one scale per row. Defaults to `0`. */
  readonly group?: number;
  /** Precision of the recovery factors A and B. Defaults to `f32`. */
  readonly recovery?: 'f32' | 'f16';
  /** A tokenizer file to embed (and calibrate with) instead of the source's. Defaults to the source's tokenizer. */
  readonly tokenizer?: string;
  /** Threads for fitting and calibration. Defaults to the number of physical cores. */
  readonly threads?: number;
  /** Seed of the random numbers the fit uses (randomized SVD, LoRA start, batch order). Defaults to `0`. */
  readonly seed?: number;
  /** Called after calibration, after fitting, and after each stored tensor is written. Defaults to none. */
  readonly onProgress?: ProgressListener;
}

const OPTIONS = ['schedule', 'rank', 'mats', 'init', 'calib', 'calibTokens', 'refine', 'refineLearningRate', 'bits', 'method',
  'group', 'recovery', 'tokenizer', 'threads', 'seed', 'onProgress'] as const;

/** How well one target layer's recovery fits (NaN where not measured: output terms need calibration). */
export interface SharpLayerReport {
  readonly target: number;
  readonly reference: number;
  /** Per shared projection: ||D - B A||² / ||D||² (D = W_target - W_ref), and the same of (D - B A) x on calibration inputs. */
  readonly projections: Partial<Record<MlpProjection, { readonly weightError: number; readonly outputError: number }>>;
  /** SLW loss (MLP output vs the original layer's, relative to its energy): direct sharing, after init, after refinement. */
  readonly lossShared: number;
  readonly lossInit: number;
  readonly lossRefined: number;
}

/** What `sharpModel` wrote. */
export interface SharpResult {
  readonly output: string;
  /** Size of the written file. */
  readonly bytes: number;
  readonly layout: SharpLayout;
  /** MLP weights as the model computes with them, and as stored (shared once, plus recovery). */
  readonly mlp: { readonly logicalParameters: number; readonly storedParameters: number; readonly savedFraction: number };
  readonly layers: readonly SharpLayerReport[];
  /** Calibration positions recorded (0 without `calib`). */
  readonly calibrationTokens: number;
  readonly recipe: LowbitRecipe;
  readonly seconds: number;
}

interface ResolvedOptions {
  readonly schedule: unknown;
  readonly rank: unknown;
  readonly mats: MlpProjection[];
  readonly init: RecoveryInit;
  readonly calib: string | undefined;
  readonly calibTokens: number;
  readonly refine: number;
  readonly learningRate: number;
  readonly bits: Bits | undefined;
  readonly method: QuantMethod;
  readonly group: number;
  readonly recovery: 'f32' | 'f16';
  readonly tokenizer: string | undefined;
  readonly threads: number;
  readonly seed: number;
  readonly onProgress: ProgressListener | undefined;
}

/** Calibration rows per SLW step. */
const REFINE_BATCH = 256;
const DEFAULT_RANK = 16;

function resolveOptions(options: unknown): ResolvedOptions {
  const o = plainObject('options', options);
  knownOptions('sharpModel', o, OPTIONS);
  const group = o.group === undefined ? 0 : integerIn('group', o.group, 0);
  if (group % 32 !== 0) throw invalidParameter('group', '0 or a multiple of 32', group, true);
  for (const key of ['calib', 'tokenizer'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'string') throw invalidParameter(key, 'a file path', o[key]);
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidParameter('onProgress', 'a function', o.onProgress);
  const bits = o.bits === undefined ? undefined : parseBits('bits', o.bits);
  if (bits === undefined && (o.method !== undefined || o.group !== undefined)) {
    throw invalidParameter(o.method !== undefined ? 'method' : 'group', 'nothing without bits (float weights are stored as they are)', o.method ?? o.group);
  }
  const resolved: ResolvedOptions = {
    schedule: o.schedule ?? 'later-half',
    rank: o.rank,
    mats: o.mats === undefined ? [...MLP_PROJECTIONS] : resolveMats(o.mats),
    init: o.init === undefined ? 'svd' : oneOf('init', o.init, RECOVERY_INITS),
    calib: o.calib as string | undefined,
    calibTokens: o.calibTokens === undefined ? 2048 : integerIn('calibTokens', o.calibTokens, 16, 1 << 24),
    refine: o.refine === undefined ? 0 : integerIn('refine', o.refine, 0, 1_000_000),
    learningRate: o.refineLearningRate === undefined ? 3e-3 : numberIn('refineLearningRate', o.refineLearningRate, 1e-8, 0.5),
    bits,
    method: o.method === undefined ? 'exact' : oneOf('method', o.method, QUANT_METHODS),
    group,
    recovery: o.recovery === undefined ? 'f32' : oneOf('recovery', o.recovery, ['f32', 'f16'] as const),
    tokenizer: o.tokenizer as string | undefined,
    threads: o.threads === undefined ? 0 : integerIn('threads', o.threads, 1, 1024),
    seed: o.seed === undefined ? 0 : integerIn('seed', o.seed, 0),
    onProgress: o.onProgress as ProgressListener | undefined,
  };
  if ((resolved.init === 'cov' || resolved.refine > 0) && resolved.calib === undefined) {
    throw invalidParameter('calib', `a calibration text file (init 'cov' and refine need one)`, o.calib);
  }
  return resolved;
}

/** The layout the options ask for on this model; `none` without refinement stores no recovery. */
function layoutOf(source: ModelSource, o: ResolvedOptions): SharpLayout {
  const schedule = resolveSchedule(o.schedule, source.config.nLayers);
  const asked = resolveRanks(o.rank, DEFAULT_RANK);
  const direct = o.init === 'none' && o.refine === 0;
  const ranks = direct ? { gate: 0, up: 0, down: 0 } : asked;
  const layout: SharpLayout = { schedule, mats: o.mats, ranks, init: o.init, refine: o.refine };
  const problem = sharpLayoutProblem(source.config, layout);
  if (problem === undefined) return layout;
  const option = problem.field === 'ranks' ? 'rank' : problem.field;
  const value = { schedule: o.schedule, mats: o.mats, rank: o.rank, init: o.init, refine: o.refine }[option];
  throw invalidParameter(option, `a ${option} this model allows (${problem.message})`, value, true);
}

// ---------------------------------------------------------------------------------------------
// Source tensors

function bytesOf(values: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** f32, f16 and bf16 tensors keep their precision; anything else becomes f32. */
function asStored(info: TensorInfo): LowbitFloatFormat {
  return info.dtype === 'f16' || info.dtype === 'bf16' ? info.dtype : 'f32';
}

// ---------------------------------------------------------------------------------------------
// Linear layers: quantized to `bits`, kept packed (a lowbit source), or float as stored

class LinearStore {
  readonly #quantized = new Map<string, Promise<QTensor>>();

  constructor(readonly source: ModelSource, readonly o: ResolvedOptions) {}

  #info(name: string): TensorInfo {
    const info = this.source.tensors.get(name);
    if (info === undefined) throw new LowbitFormatError(this.source.path, 'tensor is missing', name);
    return info;
  }

  /** The original weights (the fit's target, and the teacher of refinement). */
  original(name: string): Float32Array {
    return floatValues(this.source, this.#info(name));
  }

  /** The weights the runtime will multiply: dequantized after quantization when `bits` is set. */
  async effective(name: string): Promise<Float32Array> {
    return this.o.bits === undefined ? this.original(name) : (await this.#quantize(name)).dequantize();
  }

  #quantize(name: string): Promise<QTensor> {
    let q = this.#quantized.get(name);
    if (q === undefined) {
      const info = this.#info(name), [rows, cols] = info.shape;
      const half = !isLowbitTensor(info) && (info.dtype === 'f16' || info.dtype === 'bf16');
      const weights = half ? new Uint16Array(info.read().slice().buffer) : this.original(name);
      q = quantizeAsync(weights, rows, cols, {
        format: formatOfBits(this.o.bits!), method: this.o.method, group: this.o.group,
        ...(half && { dtype: info.dtype as 'f16' | 'bf16' }), ...(this.o.threads > 0 && { threads: this.o.threads }),
      }).catch((error: unknown) => {
        if (error instanceof LowbitError && error.code === 'LOWBIT_OFF_GRID') {
          throw new LowbitError(`${this.source.path}: ${name}: not on the ${formatOfBits(this.o.bits!)} grid (${error.message}); ` +
            'use --method rtn or mse to quantize a float model', 'LOWBIT_OFF_GRID', { cause: error });
        }
        throw error;
      });
      this.#quantized.set(name, q);
    }
    return q;
  }

  /** The tensor to write for linear layer `name`. */
  tensor(name: string): LowbitTensorToWrite {
    const info = this.#info(name);
    if (this.o.bits !== undefined) {
      let q: QTensor | undefined;
      const store = this;
      return {
        name, format: formatOfBits(this.o.bits) as QuantFormat, shape: info.shape, group: this.o.group,
        async *data() {
          q = await store.#quantize(name);
          yield q.packed();
        },
        scales() {
          const scales = q!.scales()!;
          q!.dispose();
          store.#quantized.delete(name);
          return scales;
        },
      };
    }
    if (isLowbitTensor(info)) {
      return { name, format: info.format, shape: info.shape, group: info.group, data: () => [info.read()], scales: () => info.readScales() };
    }
    return floatTensor(this.source, info, asStored(info));
  }

  dispose(): void {
    for (const q of this.#quantized.values()) void q.then((t) => t.dispose(), () => undefined);
    this.#quantized.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Calibration: what each target layer's MLP reads when the original model runs on the text

interface LayerInputs {
  readonly ffnIn: Float32Array;
  readonly swiglu: Float32Array;
}

function readCalibrationText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new LowbitError(`cannot read the calibration text ${file}: ${(error as Error).message}`, 'LOWBIT_BAD_INPUT', { cause: error });
  }
}

/** Blocks of at most `ctx` tokens, each starting with BOS when the model has one, `limit` tokens in all. */
function calibrationBlocks(ids: readonly number[], bos: number | undefined, ctx: number, limit: number): number[][] {
  const per = bos === undefined ? ctx : ctx - 1, blocks: number[][] = [];
  let used = 0;
  for (let at = 0; at < ids.length && used < limit; at += per) {
    const room = Math.min(per, limit - used - (bos === undefined ? 0 : 1));
    if (room <= 0) break;
    const block = [...(bos === undefined ? [] : [bos]), ...ids.slice(at, at + room)];
    blocks.push(block);
    used += block.length;
  }
  return blocks;
}

/** The calibration text as blocks of tokens, at most the model's context (and 512) each. */
interface CalibrationPlan {
  readonly blocks: readonly number[][];
  readonly ctx: number;
  readonly tokens: number;
}

function planCalibration(source: ModelSource, o: ResolvedOptions): CalibrationPlan {
  if (!source.tokenizer) throw new LowbitFormatError(source.path, 'has no tokenizer to calibrate with; pass a tokenizer file');
  const tokenizer = loadTokenizer(source.tokenizer, { bosId: source.bosId, eosIds: source.eosIds });
  const ids = tokenizer.encode(readCalibrationText(o.calib!), { bos: false });
  const ctx = Math.min(source.config.maxSeqLen, 512);
  const blocks = calibrationBlocks(ids, tokenizer.bosId, ctx, o.calibTokens);
  const tokens = blocks.reduce((sum, b) => sum + b.length, 0);
  if (tokens < 16) throw new RangeError(`Expected a calibration text of at least 16 tokens but ${o.calib} has ${ids.length}`);
  return { blocks, ctx, tokens };
}

/** Runs the original model (float activations) over the calibration blocks, recording the targets' MLP inputs. */
async function recordCalibration(source: ModelSource, plan: CalibrationPlan, targets: readonly number[], o: ResolvedOptions,
  progress: (name: string) => void): Promise<Map<number, LayerInputs>> {
  const assembled = assembleModel(source, { activations: 'f32' });
  const AddonContextClass = binding().AddonContext;
  const context = callNative(() => new AddonContextClass(assembled.native, plan.ctx, 'f32', o.threads));
  try {
    context.recordMlp(Int32Array.from(targets));
    for (const [i, block] of plan.blocks.entries()) {
      context.truncate(0);
      await awaitNative(() => context.eval(Int32Array.from(block), 'none'));
      progress(`calibration block ${i + 1}/${plan.blocks.length}`);
    }
    return new Map(targets.map((t) => [t, context.recordedMlp(t)]));
  } finally {
    context.dispose();
    assembled.native.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Fitting

/** One target layer for the native fit: original and effective weights of all three projections. */
async function fitLayer(source: ModelSource, store: LinearStore, layout: SharpLayout, pair: SharpPair,
  inputs: LayerInputs | undefined): Promise<AddonSharpLayer> {
  const target = {} as Record<MlpProjection, Float32Array>, base = {} as Record<MlpProjection, Float32Array>;
  const rank = {} as Record<MlpProjection, number>;
  for (const mat of MLP_PROJECTIONS) {
    const shared = layout.mats.includes(mat);
    const own = layerTensorName(pair.target, mlpRole(mat));
    target[mat] = store.original(own);
    base[mat] = await store.effective(shared ? layerTensorName(pair.reference, mlpRole(mat)) : own);
    rank[mat] = shared ? layout.ranks[mat] : 0;
  }
  return { layer: pair.target, dim: source.config.dim, hidden: source.config.hiddenDim, target, base, rank, ...inputs };
}

async function fitRecovery(source: ModelSource, store: LinearStore, layout: SharpLayout, inputs: Map<number, LayerInputs> | undefined,
  o: ResolvedOptions): Promise<AddonSharpFit[]> {
  const layers: AddonSharpLayer[] = [];
  for (const pair of layout.schedule) layers.push(await fitLayer(source, store, layout, pair, inputs?.get(pair.target)));
  return awaitNative(() => binding().sharpFit({
    layers, init: layout.init, refineSteps: layout.refine, learningRate: o.learningRate, batch: REFINE_BATCH, seed: o.seed, threads: o.threads,
  }));
}

// ---------------------------------------------------------------------------------------------
// The file

/** A recovery factor, whose values the fit (run before the file is written) provides. */
function factorTensor(name: string, values: () => Float32Array, shape: number[], format: 'f32' | 'f16'): LowbitTensorToWrite {
  return { name, format, shape, data: () => [bytesOf(format === 'f32' ? values() : Uint16Array.from(values(), f32ToF16))] };
}

/**
 * Every tensor of the file, in layer order; targets' shared projections give way to their factors
 * (taken from `fits()` when written).
 */
function planTensors(source: ModelSource, store: LinearStore, layout: SharpLayout, fits: () => readonly AddonSharpFit[],
  o: ResolvedOptions): LowbitTensorToWrite[] {
  const c = source.config, tensor = (name: string) => source.tensors.get(name)!;
  const embeddings: LowbitFloatFormat = o.bits !== undefined ? 'f16' : asStored(tensor(EMBED_TOKENS));
  const fitOf = (layer: number, mat: MlpProjection) => fits()[layout.schedule.findIndex((p) => p.target === layer)].recovery[mat]!;
  const tensors: LowbitTensorToWrite[] = [floatTensor(source, tensor(EMBED_TOKENS), embeddings)];
  for (let layer = 0; layer < c.nLayers; layer++) {
    for (const role of LAYER_ROLES) {
      const name = layerTensorName(layer, role);
      const mat = MLP_PROJECTIONS.find((m) => mlpRole(m) === role);
      if (mat === undefined) {
        tensors.push(role.endsWith('layernorm') ? floatTensor(source, tensor(name), 'f32') : store.tensor(name));
      } else if (sharedReference(layout, layer, mat) === undefined) {
        tensors.push(store.tensor(name));
      } else {
        const rank = layout.ranks[mat], [out, inputs] = mlpShape(c, mat);
        if (rank === 0) continue;  // the reference's weight as it is
        tensors.push(factorTensor(loraTensorName(layer, mat, 'a'), () => fitOf(layer, mat).a, [rank, inputs], o.recovery));
        tensors.push(factorTensor(loraTensorName(layer, mat, 'b'), () => fitOf(layer, mat).b, [out, rank], o.recovery));
      }
    }
  }
  tensors.push(floatTensor(source, tensor(FINAL_NORM), 'f32'));
  if (!c.tiedEmbeddings) tensors.push(floatTensor(source, tensor(LM_HEAD), embeddings));
  return tensors;
}

/** Stored tensors the writer reports: quantized ones come with scales, plus the tokenizer. */
function streamCount(tensors: readonly LowbitTensorToWrite[]): number {
  return tensors.reduce((n, t) => n + (t.scales ? 2 : 1), 0) + 1;
}

function layerReports(layout: SharpLayout, fits: readonly AddonSharpFit[]): SharpLayerReport[] {
  return layout.schedule.map((pair, i) => ({
    ...pair,
    projections: Object.fromEntries(layout.mats.map((mat) => [mat, fits[i].report[mat]])),
    lossShared: fits[i].lossShared, lossInit: fits[i].lossInit, lossRefined: fits[i].lossRefined,
  }));
}

function mlpParameters(source: ModelSource, layout: SharpLayout) {
  const c = source.config, perMatrix = c.dim * c.hiddenDim;
  const logicalParameters = 3 * c.nLayers * perMatrix;
  let shared = 0, factors = 0;
  for (const mat of layout.mats) {
    const [out, inputs] = mlpShape(c, mat);
    shared += layout.schedule.length * perMatrix;
    factors += layout.schedule.length * layout.ranks[mat] * (out + inputs);
  }
  const storedParameters = logicalParameters - shared + factors;
  return { logicalParameters, storedParameters, savedFraction: 1 - storedParameters / logicalParameters };
}

/**
 * Converts the model at `input` into a SHARP model at `output` (one lowbit file, version 2):
 * target layers reuse their reference layer's MLP weights plus a low-rank recovery. Throws
 * TypeError/RangeError for bad options (a schedule the model does not allow included), a
 * LowbitError (LOWBIT_OFF_GRID) when `bits` with `exact` meets weights off the grid, and a
 * LowbitFormatError for unreadable input.
 */
export async function sharpModel(input: string, output: string, options: SharpModelOptions = {}): Promise<SharpResult> {
  if (typeof input !== 'string') throw invalidParameter('input', 'a model file or folder path', input);
  if (typeof output !== 'string' || output === '') throw invalidParameter('output', 'a file path', output);
  const o = resolveOptions(options);
  const started = performance.now();
  const source = openModel(input, { tokenizer: o.tokenizer });
  const store = new LinearStore(source, o);
  try {
    refuseShared(source, 'sharp');
    const layout = layoutOf(source, o);
    const tokenizer = tokenizerToEmbed(source);
    const targets = layout.schedule.map((p) => p.target);
    const calibration = o.calib !== undefined ? planCalibration(source, o) : undefined;
    let fits: AddonSharpFit[] | undefined;
    const tensors = planTensors(source, store, layout, () => fits!, o);
    // Steps: calibration blocks, the fit, then every stored tensor.
    const total = (calibration?.blocks.length ?? 0) + 1 + streamCount(tensors);
    let done = 0;
    const step = (name: string) => o.onProgress?.({ done: ++done, total, name });
    const inputs = calibration && await recordCalibration(source, calibration, targets, o, step);
    fits = await fitRecovery(source, store, layout, inputs, o);
    step(`fitted ${targets.length} target layer${targets.length === 1 ? '' : 's'}`);
    const recipe: LowbitRecipe = {
      tool: 'sharp', bits: o.bits ?? null, method: o.bits !== undefined ? o.method : null, group: o.group, tensorBits: [],
      embeddings: o.bits !== undefined ? 'f16' : asStored(source.tensors.get(EMBED_TOKENS)!), source: path.basename(input),
      lowbitVersion: LOWBIT_VERSION, date: recipeDate(), recovery: o.recovery, seed: o.seed,
      ...(calibration && { calibration: { file: path.basename(o.calib!), tokens: calibration.tokens } }),
      ...(layout.refine > 0 && { refineLearningRate: o.learningRate }),
    };
    const written = done;
    const bytes = await writeLowbitFile(output, { config: source.config, tokenizer, recipe, tensors, sharp: layout }, {
      onTensorWritten: (n, _total, name) => o.onProgress?.({ done: written + n, total, name }),
    });
    return {
      output, bytes, layout, mlp: mlpParameters(source, layout), layers: layerReports(layout, fits),
      calibrationTokens: calibration?.tokens ?? 0, recipe, seconds: (performance.now() - started) / 1000,
    };
  } finally {
    store.dispose();
    source.close();
  }
}
