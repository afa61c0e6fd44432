// Uploader worker entry: moves sealed spool chunks to the object store (logic in src/spool).
import { parentPort, workerData } from 'node:worker_threads';
import { createUploaderWorker, type UploaderWorkerData } from '../src/spool/uploader-worker.js';
import { Comlink, nodeEndpoint } from '../src/util/comlink-node.js';

const api = await createUploaderWorker(workerData as UploaderWorkerData);
Comlink.expose(api, nodeEndpoint(parentPort!));
