// Shard worker entry: wires a ShardCore (src/shard) to comlink (control) and an event port.
import { parentPort, workerData } from 'node:worker_threads';
import { createShard, type ShardWorkerData } from '../src/shard/shard-main.js';
import { Comlink, nodeEndpoint } from '../src/util/comlink-node.js';

const api = await createShard(workerData as ShardWorkerData);
Comlink.expose(api, nodeEndpoint(parentPort!));
