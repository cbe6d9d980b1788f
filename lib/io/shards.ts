/**
 * Sharded checkpoints: `*.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`)
 * next to the shards, for safetensors and pytorch_model.bin alike.
 */
import * as path from 'node:path';
import { LowbitFormatError } from '../errors';
import { JsonFields, readJsonObject } from './json';
import { type TensorFile, closeOnError } from './tensors';
import type { TensorInfo } from './types';

/**
 * Opens every shard named by the index at `indexPath` with `openShard` and merges their tensors.
 * Each weight_map entry must be found in its shard; a tensor in two shards is an error. Shard names
 * must be plain file names in the index's folder.
 */
export function openShardedIndex(indexPath: string, openShard: (shardPath: string) => TensorFile): TensorFile {
  const index = new JsonFields(indexPath, readJsonObject(indexPath));
  const weightMap = index.object('weight_map');
  if (weightMap === undefined) throw new LowbitFormatError(indexPath, 'missing', 'weight_map');
  const shardOf = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap.value)) {
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '..' || shard === '.') {
      throw new LowbitFormatError(indexPath, `shard ${JSON.stringify(shard)} must be a file name in the same folder`, tensor);
    }
    if (shard.endsWith('.index.json')) throw new LowbitFormatError(indexPath, `shard ${shard} is itself an index`, tensor);
    shardOf.set(tensor, shard);
  }
  const shards: TensorFile[] = [];
  const closeAll = () => shards.forEach((shard) => shard.close());
  return closeOnError(closeAll, () => {
    const tensors = new Map<string, TensorInfo>();
    for (const shardName of new Set(shardOf.values())) {
      const shard = openShard(path.join(path.dirname(indexPath), shardName));
      shards.push(shard);
      if (shard.container !== shards[0].container) throw new LowbitFormatError(shard.path, `is ${shard.container}, other shards are ${shards[0].container}`);
      for (const [name, tensor] of shard.tensors) {
        if (tensors.has(name)) throw new LowbitFormatError(shard.path, 'tensor also stored in another shard', name);
        tensors.set(name, tensor);
      }
    }
    for (const [tensor, shardName] of shardOf) {
      const found = shards.find((shard) => path.basename(shard.path) === shardName);
      if (!found?.tensors.has(tensor)) throw new LowbitFormatError(indexPath, `not found in shard ${shardName}`, tensor);
    }
    const metadata = new Map<string, unknown>(Object.entries(index.object('metadata')?.value ?? {}));
    return { path: indexPath, container: shards[0]?.container ?? 'safetensors', tensors, metadata, close: closeAll };
  });
}
