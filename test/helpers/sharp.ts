/**
 * SHARP files seen by the independent float64 reference forward: every target's shared projection
 * materialised as W_ref + B A (summed in float64 here, from the file's stored tensors), so the
 * runtime's aliasing and fused low-rank kernels are checked against plain dense weights.
 */
import { dequantizeToF32 } from '../../lib/io/dtypes';
import { layerTensorName } from '../../lib/io/llama';
import { loraTensorName, mlpRole } from '../../lib/io/sharp';
import type { ModelSource, TensorInfo } from '../../lib/io/types';
import { dequantizedSource } from './lowbit-files';

function values(source: ModelSource, name: string): Float64Array {
  const info = source.tensors.get(name);
  if (!info) throw new Error(`missing ${name}`);
  return Float64Array.from(dequantizeToF32(info.dtype, info.read(), info.shape.reduce((a, b) => a * b, 1)));
}

function f32Tensor(name: string, shape: readonly number[], data: Float64Array): TensorInfo {
  const bytes = new Uint8Array(Float32Array.from(data).buffer);
  return { name, dtype: 'f32', shape, byteLength: bytes.length, read: () => bytes };
}

/** W (out x in) + B (out x rank) A (rank x in), in float64. */
export function plusLowRank(w: Float64Array, b: Float64Array, a: Float64Array, out: number, inputs: number, rank: number): Float64Array {
  const sum = Float64Array.from(w);
  for (let i = 0; i < out; i++) {
    for (let k = 0; k < rank; k++) {
      const bik = b[i * rank + k];
      for (let j = 0; j < inputs; j++) sum[i * inputs + j] += bik * a[k * inputs + j];
    }
  }
  return sum;
}

/** The weight target layer `layer` computes projection `mat` with, materialised. */
export function materializedWeight(source: ModelSource, layer: number, mat: 'gate' | 'up' | 'down'): Float64Array {
  const layout = source.sharp!;
  const reference = layout.schedule.find((p) => p.target === layer)!.reference;
  const w = values(source, layerTensorName(reference, mlpRole(mat)));
  const rank = layout.ranks[mat];
  if (rank === 0) return w;
  const info = source.tensors.get(layerTensorName(reference, mlpRole(mat)))!;
  const [out, inputs] = info.shape;
  return plusLowRank(w, values(source, loraTensorName(layer, mat, 'b')), values(source, loraTensorName(layer, mat, 'a')), out, inputs, rank);
}

/** A SHARP lowbit file as a float model without sharing (quantized weights dequantized). */
export function materializedSource(file: string): ModelSource {
  const source = dequantizedSource(file);
  const tensors = new Map(source.tensors);
  for (const { target } of source.sharp!.schedule) {
    for (const mat of source.sharp!.mats) {
      const name = layerTensorName(target, mlpRole(mat));
      const shape = source.tensors.get(layerTensorName(source.sharp!.schedule.find((p) => p.target === target)!.reference, mlpRole(mat)))!.shape;
      tensors.set(name, f32Tensor(name, shape, materializedWeight(source, target, mat)));
    }
  }
  return { ...source, tensors };
}

/** A float source with target layers' MLP tensors replaced by their reference's: direct sharing, built independently. */
export function directlyShared(source: ModelSource, pairs: readonly { target: number; reference: number }[]): ModelSource {
  const tensors = new Map(source.tensors);
  for (const { target, reference } of pairs) {
    for (const mat of ['gate', 'up', 'down'] as const) tensors.set(layerTensorName(target, mlpRole(mat)), source.tensors.get(layerTensorName(reference, mlpRole(mat)))!);
  }
  return { ...source, tensors };
}
