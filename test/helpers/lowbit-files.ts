/**
 * Reading lowbit files back for tests: dequantized weights through the QTensor API, a float view of
 * a file for the float64 reference forward, sizes computed from the packing rule (docs/FORMAT.md,
 * native/core/formats.h) rather than from lowbit's own helpers, an in-process CLI runner, and
 * rewriting a file's header to make hostile variants.
 */
import * as fs from 'node:fs';
import { main } from '../../lib/cli';
import { openModel } from '../../lib/io';
import { isLowbitTensor } from '../../lib/io/lowbit-format';
import type { ModelSource, TensorInfo } from '../../lib/io/types';
import { tensorFromPacked } from '../../lib/qtensor';

/** Bits per plane of each format: codes are split into planes of 1, 2 or 4 bits. */
export const PLANE_BITS: Record<string, number[]> = { b1: [1], t158: [2], b2: [2], b3: [2, 1], b4: [4] };

/** Bytes of one packed row: every plane rounds its last partial chunk up to whole bytes. */
export function expectedRowBytes(format: string, cols: number): number {
  return PLANE_BITS[format].reduce((sum, bits) => sum + Math.ceil((cols * bits) / 8), 0);
}

/** The weights of every quantized tensor of a lowbit file, dequantized, by name. */
export function dequantizedWeights(file: string): Map<string, { format: string; values: Float32Array }> {
  const source = openModel(file);
  try {
    const out = new Map<string, { format: string; values: Float32Array }>();
    for (const info of source.tensors.values()) {
      if (!isLowbitTensor(info)) continue;
      const t = tensorFromPacked(info.format, info.shape[0], info.shape[1], info.group, info.read(), info.readScales());
      out.set(info.name, { format: info.format, values: t.dequantize() });
      t.dispose();
    }
    return out;
  } finally {
    source.close();
  }
}

/** A lowbit file seen as float tensors (quantized ones dequantized), for the float64 reference forward. */
export function dequantizedSource(file: string): ModelSource {
  const source = openModel(file);
  const weights = dequantizedWeights(file);
  const tensors = new Map<string, TensorInfo>();
  for (const [name, info] of source.tensors) {
    const values = weights.get(name)?.values;
    if (values === undefined) {
      const bytes = info.read();
      tensors.set(name, { ...info, read: () => bytes });
    } else {
      tensors.set(name, { name, dtype: 'f32', shape: info.shape, byteLength: values.byteLength, read: () => new Uint8Array(values.buffer) });
    }
  }
  source.close();
  return { ...source, tensors, close: () => undefined };
}

/** Bytes of the header (length prefix + JSON) of a safetensors file. */
export function headerBytes(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const prefix = Buffer.alloc(8);
    fs.readSync(fd, prefix, 0, 8, 0);
    return 8 + Number(prefix.readBigUInt64LE(0));
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs the CLI in this process with stdout/stderr captured (stderr not a TTY). */
export async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const out = process.stdout.write, err = process.stderr.write, tty = process.stderr.isTTY;
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += chunk.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += chunk.toString()), true)) as typeof process.stderr.write;
  process.stderr.isTTY = false;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.stderr.isTTY = tty;
  }
}

/** A safetensors header as JSON: tensors by name, plus `__metadata__`. */
export interface Header {
  [name: string]: { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>;
}

/** The parsed header and data section of a safetensors file. */
export function splitFile(file: string): { header: Header; data: Buffer } {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + length).toString()), data: bytes.subarray(8 + length) };
}

/** Writes `file` again with its header edited (and optionally its data). */
export function rewrite(file: string, out: string, edit: (header: Header, metadata: Record<string, string>, data: Buffer) => void): string {
  const { header, data } = splitFile(file);
  const copy = Buffer.from(data);
  edit(header, header.__metadata__ as Record<string, string>, copy);
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(out, Buffer.concat([length, json, copy]));
  return out;
}

/** Edits the JSON held in the metadata string `key`. */
export function editJson(metadata: Record<string, string>, key: string, edit: (value: Record<string, unknown>) => void): void {
  const value = JSON.parse(metadata[key]);
  edit(value);
  metadata[key] = JSON.stringify(value);
}
