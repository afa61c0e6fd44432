// comlink's Node adapter is a UMD/CommonJS module: its default export is the function itself.
import * as Comlink from 'comlink';
import adapter from 'comlink/dist/umd/node-adapter.js';
import type { MessagePort, Worker } from 'node:worker_threads';

export const nodeEndpoint = adapter as unknown as (nep: MessagePort | Worker) => Comlink.Endpoint;
export { Comlink };
