// `lc3-pusher serve`: configuration from the environment, JSON logs, the durable spool and its
// uploader, SIGTERM drain.
import { mkdirSync } from 'node:fs';
import { MessageChannel, Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { loadConfig, type Config } from './config.js';
import { HTTP_CONNECTIONS_PER_ORIGIN } from './http/client.js';
import { IngestServer } from './server/server.js';
import { JobService } from './jobs/job-service.js';
import { addBuildInfo } from './server/metrics-build.js';
import { addOutboundMetrics } from './server/metrics-outbound.js';
import { addUploadMetrics } from './server/metrics-threads.js';
import { remoteThread } from './server/threads.js';
import { createSettingsProvider } from './settings/index.js';
import { parseFaults } from './shard/shard-core.js';
import { SpoolQuota } from './spool/quota.js';
import { recoverSpool } from './spool/recover.js';
import type { UploaderApi, UploaderWorkerData } from './spool/uploader-worker.js';
import { Comlink, nodeEndpoint } from './util/comlink-node.js';
import { workerUrl } from './util/worker-url.js';

export interface Service {
  server: IngestServer;
  port: number;
  quota: SpoolQuota;
  uploader: Comlink.Remote<UploaderApi>;
  stop(): Promise<void>;
}

/** Starts the uploader worker (its logic: src/spool/uploader-worker.ts). */
async function startUploader(cfg: Config, quota: SpoolQuota, log: (msg: string, f?: object) => void) {
  const { port1, port2 } = new MessageChannel();
  const data: UploaderWorkerData = {
    dir: cfg.SPOOL_DIR,
    store: { STORE: cfg.STORE, STORE_DIR: cfg.STORE_DIR, GCS_BUCKET: cfg.GCS_BUCKET, GCS_API_ENDPOINT: cfg.GCS_API_ENDPOINT },
    quotaSab: quota.sab,
    events: port2,
  };
  const worker = new Worker(workerUrl('uploader'), { workerData: data, transferList: [port2], name: 'uploader' });
  port1.on('message', (m: { name: string; message: string }) => log('upload failed, will retry', { object: m.name, err: m.message }));
  port1.unref();
  worker.on('error', (err) => log('uploader error', { err: err.message }));
  const api = Comlink.wrap<UploaderApi>(nodeEndpoint(worker));
  await api.stats(); // resolves once the worker has started (and scanned the spool)
  return { worker, api, port: port1 };
}

/** Starts the whole service; `env` lets tests and the chaos harness set test-only switches. */
export async function startService(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<Service> {
  const logger = pino({ level: config.LOG_LEVEL });
  const log = (msg: string, fields?: object) => logger.info(fields ?? {}, msg);
  const faults = env.LC3_PUSHER_TEST_FAULTS ? parseFaults(env.LC3_PUSHER_TEST_FAULTS) : undefined;
  if (faults) log('TEST FAULTS ENABLED', faults);
  const settings = createSettingsProvider({
    file: config.SETTINGS_FILE,
    url: config.SETTINGS_URL,
    redisUrl: config.SETTINGS_REDIS_URL,
    http: { onError: (err, uid) => logger.warn({ uid, err: err.message }, 'settings look-up failed') },
    redis: { onError: (err, uid) => logger.warn({ uid, err: err.message }, 'settings look-up failed') },
  });

  // Crash recovery before any shard opens a file: journals replayed, torn tails cut, all sealed.
  mkdirSync(config.SPOOL_DIR, { recursive: true });
  const quota = new SpoolQuota(config.SPOOL_MAX_BYTES);
  const recovered = await recoverSpool({ dir: config.SPOOL_DIR, quota, onError: (err, ctx) => log('spool recovery problem', { ctx, err: err.message }) });
  if (recovered.sealed.length || recovered.quarantined.length) {
    log('spool recovered', { sealed: recovered.sealed.length, replayedBytes: recovered.replayedBytes, truncatedBytes: recovered.truncatedBytes, quarantined: recovered.quarantined });
  }
  const uploader = await startUploader(config, quota, log);
  const storeConfig = { STORE: config.STORE, STORE_DIR: config.STORE_DIR, GCS_BUCKET: config.GCS_BUCKET, GCS_API_ENDPOINT: config.GCS_API_ENDPOINT };
  // Jobs journaled before a crash resume now (before any session can add new ones).
  const jobs = new JobService(config, storeConfig, (msg, fields) => logger.warn(fields ?? {}, msg));
  await jobs.start();

  const server = new IngestServer({
    config,
    log,
    // Fault switches exist for the leak harness's positive control and backpressure tests only.
    faultsAllowed: faults !== undefined,
    faults,
    pcmTapDir: env.LC3_PUSHER_TEST_PCM_DIR,
    settings,
    jobs,
    spoolFull: () => quota.full,
    beforeShardRestart: async (shard) => {
      // The dead shard's journal and open chunks: replay, seal, hand to the uploader.
      const r = await recoverSpool({ dir: config.SPOOL_DIR, shard, quota, onError: (err, ctx) => log('spool recovery problem', { ctx, err: err.message }) });
      for (const name of r.sealed) await uploader.api.notify(name);
      log('shard spool recovered', { shard, sealed: r.sealed.length, replayedBytes: r.replayedBytes });
    },
    ready: () => (quota.full ? `spool full (${quota.bytes} of ${quota.maxBytes} bytes)` : undefined),
    shardExtra: {
      spool: { dir: config.SPOOL_DIR, fsyncMs: config.FSYNC_MS, chunkSeconds: config.CHUNK_SECONDS, quotaSab: quota.sab },
      // Each shard has its own pool (a pool cannot cross threads): they share 64 connections per origin.
      outbound: { allowPrivate: config.WEBHOOK_ALLOW_PRIVATE, connectionsPerOrigin: Math.max(1, Math.floor(HTTP_CONNECTIONS_PER_ORIGIN / config.SHARDS)), sessionBufferBytes: config.SESSION_BUFFER_BYTES },
    },
    debugThreads: { uploader: remoteThread(() => uploader.api) },
    onDrain: async (deadline) => {
      // Sessions are closed and their chunks sealed; upload what we can and finish the jobs that
      // can finish before the deadline (the rest stays journaled for the next start).
      const [r, j] = await Promise.all([uploader.api.drain(Math.max(0, deadline - Date.now())), jobs.drain(deadline)]);
      log('drained', { ...r, jobsFinished: j.finished, jobsRemaining: j.remaining });
    },
  });
  addSpoolMetrics(server, quota, uploader.api);
  addUploadMetrics(server.metrics, () => uploader.api.uploadDurations());
  addOutboundMetrics(server.metrics, { mainHttp: () => jobs.http.stats(), jobs: () => jobs.stats(), settings: () => settings.stats() });
  // pusher_build_info; its allocator (jemalloc unless LC3_PUSHER_ALLOCATOR=system) goes in the log line too.
  const { allocator } = addBuildInfo(server.metrics.registry);
  const port = await server.listen();
  // libuv's thread pool carries every fsync (bin/lc3-pusher.cjs sizes it from SHARDS; default 4).
  const threadpool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  log('listening', { port, shards: config.SHARDS, slots: config.SLOTS_PER_SHARD, store: config.STORE, spool: config.SPOOL_DIR, threadpool, allocator });
  return {
    server,
    port,
    quota,
    uploader: uploader.api,
    stop: async () => {
      await server.drain();
      await jobs.close();
      await settings.close();
      await uploader.api.close();
      uploader.api[Comlink.releaseProxy]();
      await uploader.worker.terminate();
      uploader.port.close();
    },
  };
}

function addSpoolMetrics(server: IngestServer, quota: SpoolQuota, uploader: Comlink.Remote<UploaderApi>): void {
  const r = server.metrics.registry;
  const spoolBytes = new Gauge({ name: 'pusher_spool_bytes', help: 'Bytes in the spool directory (journal + chunks)', registers: [r] });
  const spoolFiles = new Gauge({ name: 'pusher_spool_files', help: 'Sealed chunks waiting for upload', registers: [r] });
  const uploads = new Counter({ name: 'pusher_uploads_total', help: 'Upload attempts by result', labelNames: ['result'], registers: [r] });
  const retries = new Counter({ name: 'pusher_upload_retries_total', help: 'Upload attempts that were retries', registers: [r] });
  const uploaded = new Counter({ name: 'pusher_audio_bytes_uploaded_total', help: 'Chunk bytes confirmed by the store', registers: [r] });
  const durable = new Counter({ name: 'pusher_audio_bytes_durable_total', help: 'Audio bytes fsync’d to the spool', registers: [r] });
  const last = { ok: 0, error: 0, retries: 0, uploaded: 0, durable: 0 };
  const advance = (c: Counter<string>, key: keyof typeof last, v: number, labels?: Record<string, string>) => {
    if (v > last[key]) (labels ? c.inc(labels, v - last[key]) : c.inc(v - last[key]));
    last[key] = Math.max(last[key], v);
  };
  server.metrics.addCollector(async (m) => {
    spoolBytes.set(quota.bytes);
    const u = await uploader.stats();
    spoolFiles.set(u.spool_files);
    advance(uploads, 'ok', u.uploads_ok, { result: 'ok' });
    advance(uploads, 'error', u.uploads_error, { result: 'error' });
    advance(retries, 'retries', u.upload_retries_total);
    advance(uploaded, 'uploaded', u.audio_bytes_uploaded_total);
    advance(durable, 'durable', m.lastShardStats.reduce((s, x) => s + x.durableBytes, 0));
  });
}

/** `config`: what `lc3-pusher serve` parsed from env and flags (src/cli.ts); default: env only. */
export async function serveFromEnv(env: NodeJS.ProcessEnv = process.env, config: Config = loadConfig(env)): Promise<void> {
  const svc = await startService(config, env);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(JSON.stringify({ level: 30, msg: 'draining', signal }));
    svc.stop().then(
      () => process.exit(0),
      /* c8 ignore next 4 */
      (err: Error) => {
        console.error(JSON.stringify({ level: 50, msg: 'drain failed', err: err.message }));
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
