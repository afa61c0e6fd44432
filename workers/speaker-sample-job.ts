// Piscina task: one speaker sample extraction (DESIGN §3.4). Thin: the logic lives in
// src/jobs/speaker-sample.ts (tested directly). One store per configuration per pool thread.
import { extractSpeakerSample, type ExtractResult, type SpeakerSampleRequest } from '../src/jobs/speaker-sample.js';
import { createStore, type ObjectStore, type StoreConfig } from '../src/store/index.js';

const stores = new Map<string, ObjectStore>();

function storeFor(c: StoreConfig): ObjectStore {
  const key = JSON.stringify([c.STORE, c.STORE_DIR ?? '', c.GCS_BUCKET ?? '', c.GCS_API_ENDPOINT ?? '']);
  let s = stores.get(key);
  if (!s) stores.set(key, (s = createStore(c)));
  return s;
}

export default function run(task: { store: StoreConfig; req: SpeakerSampleRequest; maxSeconds?: number }): Promise<ExtractResult> {
  return extractSpeakerSample(storeFor(task.store), task.req, task.maxSeconds === undefined ? {} : { maxSeconds: task.maxSeconds });
}
