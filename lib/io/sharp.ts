/**
 * SHARP in a model (docs/FORMAT.md, version 2): target layers reuse the MLP projections of a
 * reference layer and add a low-rank recovery, y = W_ref x + B (A x). A target stores no weight for
 * a shared projection, only its recovery: `model.layers.{t}.mlp.{gate,up,down}_proj.lora_a`
 * `[rank, in]` (A) and `.lora_b` `[out, rank]` (B), absent when the rank is 0. Attention stays per
 * layer.
 */
import { LowbitError } from '../errors';
import { canonicalShapes, layerTensorName, type LayerRole } from './llama';
import type { LlamaConfig, ModelSource } from './types';

/** The MLP projections of a Llama block. */
export type MlpProjection = 'gate' | 'up' | 'down';
export const MLP_PROJECTIONS: readonly MlpProjection[] = ['gate', 'up', 'down'];

/** How the recovery was started: A B = 0 (direct sharing), truncated SVD, covariance-weighted SVD. */
export type RecoveryInit = 'none' | 'svd' | 'cov';
export const RECOVERY_INITS: readonly RecoveryInit[] = ['none', 'svd', 'cov'];

/** Target layer `target` computes its MLP with `reference`'s weights. */
export interface SharpPair {
  readonly target: number;
  readonly reference: number;
}

/** Which layers share, what, and how the recovery was made. */
export interface SharpLayout {
  /** One pair per target layer, in increasing target order. */
  readonly schedule: readonly SharpPair[];
  /** The projections a target takes from its reference; the others it keeps. */
  readonly mats: readonly MlpProjection[];
  /** Rank of each shared projection's recovery (0: none, the reference's weight as it is). */
  readonly ranks: Readonly<Record<MlpProjection, number>>;
  readonly init: RecoveryInit;
  /** Single Layer Warmup steps the recovery was refined with (0: none). */
  readonly refine: number;
}

/** The Hugging Face role of a projection, e.g. `mlp.gate_proj`. */
export function mlpRole(mat: MlpProjection): LayerRole {
  return `mlp.${mat}_proj`;
}

/** `model.layers.{layer}.mlp.{mat}_proj.lora_a` (A) or `.lora_b` (B). */
export function loraTensorName(layer: number, mat: MlpProjection, factor: 'a' | 'b'): string {
  return `model.layers.${layer}.${mlpRole(mat)}.lora_${factor}`;
}

/** The reference layer whose projection `mat` layer `layer` uses, or undefined when it has its own. */
export function sharedReference(layout: SharpLayout | undefined, layer: number, mat: MlpProjection): number | undefined {
  if (layout === undefined || !layout.mats.includes(mat)) return undefined;
  return layout.schedule.find((pair) => pair.target === layer)?.reference;
}

/** `[out, in]` of a projection. */
export function mlpShape(config: LlamaConfig, mat: MlpProjection): [number, number] {
  return mat === 'down' ? [config.dim, config.hiddenDim] : [config.hiddenDim, config.dim];
}

/** What is wrong with a layout, and which of its fields. */
export interface SharpLayoutProblem {
  readonly field: 'schedule' | 'mats' | 'ranks' | 'init' | 'refine';
  readonly message: string;
}

/**
 * What is wrong with a layout for a config, or undefined: layers in range, each target once, no
 * layer both target and reference, projections known and not repeated, ranks from 0 to
 * min(out, in).
 */
export function sharpLayoutProblem(config: LlamaConfig, layout: SharpLayout): SharpLayoutProblem | undefined {
  const n = config.nLayers;
  const schedule = (message: string): SharpLayoutProblem => ({ field: 'schedule', message });
  if (layout.schedule.length === 0) return schedule(`it shares no layer of the ${n}`);
  const targets = new Set<number>();
  for (const { target, reference } of layout.schedule) {
    for (const layer of [target, reference]) {
      if (!Number.isSafeInteger(layer) || layer < 0 || layer >= n) return schedule(`layer ${layer} is not one of the model's layers 0 to ${n - 1}`);
    }
    if (target === reference) return schedule(`layer ${target} cannot share with itself`);
    if (targets.has(target)) return schedule(`layer ${target} is a target twice`);
    targets.add(target);
  }
  const reused = layout.schedule.find((pair) => targets.has(pair.reference));
  if (reused !== undefined) return schedule(`layer ${reused.reference} is the reference of ${reused.target} and a target itself`);
  if (layout.mats.length === 0 || new Set(layout.mats).size !== layout.mats.length || layout.mats.some((m) => !MLP_PROJECTIONS.includes(m))) {
    return { field: 'mats', message: `expected distinct projections among ${MLP_PROJECTIONS.join(', ')}` };
  }
  for (const mat of MLP_PROJECTIONS) {
    const rank = layout.ranks[mat], max = Math.min(...mlpShape(config, mat));
    if (!Number.isSafeInteger(rank) || rank < 0 || rank > max) {
      return { field: 'ranks', message: `the rank of ${mat} must be an integer from 0 to ${max} (min of its [${mlpShape(config, mat).join(', ')}])` };
    }
  }
  if (!RECOVERY_INITS.includes(layout.init)) return { field: 'init', message: `expected one of ${RECOVERY_INITS.join(', ')}` };
  if (!Number.isSafeInteger(layout.refine) || layout.refine < 0) return { field: 'refine', message: 'expected a whole number of steps' };
  return undefined;
}

/**
 * Every tensor a model with this config and layout stores, with its shape: the canonical ones
 * minus the targets' shared projections, plus their recovery factors (rank above 0).
 */
export function sharpShapes(config: LlamaConfig, layout: SharpLayout | undefined): Map<string, number[]> {
  const shapes = canonicalShapes(config);
  if (layout === undefined) return shapes;
  for (const { target } of layout.schedule) {
    for (const mat of layout.mats) {
      shapes.delete(layerTensorName(target, mlpRole(mat)));
      const rank = layout.ranks[mat], [out, inputs] = mlpShape(config, mat);
      if (rank === 0) continue;
      shapes.set(loraTensorName(target, mat, 'a'), [rank, inputs]);
      shapes.set(loraTensorName(target, mat, 'b'), [out, rank]);
    }
  }
  return shapes;
}

/** Whether `name` is a recovery factor (always a float tensor). */
export function isLoraTensor(name: string): boolean {
  return /\.lora_[ab]$/.test(name);
}

/**
 * Throws for a source whose layers share MLP weights, for pipelines that expect every layer's
 * tensors (SHARP models are converted from their unshared source).
 */
export function refuseShared(source: ModelSource, what: string): void {
  if (source.sharp !== undefined) {
    throw new LowbitError(`${source.path} shares MLP weights between layers (SHARP): ${what} needs a model without sharing, such as its source`, 'LOWBIT_UNSUPPORTED');
  }
}
