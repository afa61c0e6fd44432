// `lc3-pusher serve`: configuration from the environment, JSON logs, the durable spool and its
// uploader, SIGTERM drain.
import { mkdirSync } from 'node:fs';
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
import { UploaderSupervisor } from './spool/uploader-supervisor.js';
import { Comlink } from './util/comlink-node.js';
import { jobLog } from './log/job-log.js';
import { errorKey, LimitedLog } from './log/limited.js';
import { createLogger, type LogSettings, type Logger } from './log/logger.js';
import { shutdownHandler } from './log/shutdown.js';

export interface Service {
  server: IngestServer;
  port: number;
  quota: SpoolQuota;
  uploader: Comlink.Remote<UploaderApi>;
  /** The main thread's logger. */
  logger: Logger;
  /** The drain (DESIGN §5), its story in the log: draining, sessions closed, drained. `why`: e.g. the signal. */
  stop(why?: string): Promise<void>;
}

export interface ServiceOptions {
  /** The main thread's logger (default: LOG_LEVEL to stdout). */
  logger?: Logger;
  /** Where every thread's lines go (default stdout); tests use a file. */
  logDest?: string | number;
}

/** Starts the uploader worker (its logic: src/spool/uploader-worker.ts). */
async function startUploader(cfg: Config, quota: SpoolQuota, logger: Logger, log: LogSettings) {
  const data: UploaderWorkerData = {
    dir: cfg.SPOOL_DIR,
    store: { STORE: cfg.STORE, STORE_DIR: cfg.STORE_DIR, GCS_BUCKET: cfg.GCS_BUCKET, GCS_API_ENDPOINT: cfg.GCS_API_ENDPOINT },
    quotaSab: quota.sab,
    // It logs its own retries (thread "uploader", rate-limited).
    log,
  };
  // Restarted when it throws or exits (src/spool/uploader-supervisor.ts): `api` stays valid across restarts.
  const uploader = new UploaderSupervisor({
    data,
    onCrash: ({ code, err, restarts, restartInMs }) => logger.error({ code, err, restarts, restartInMs }, 'uploader thread died; restarting it'),
    onRestarted: ({ restarts, ms }) => logger.warn({ restarts, ms }, 'uploader thread restarted (it rescans the spool)'),
  });
  await uploader.start(); // resolves once the worker has started (and scanned the spool)
  return uploader;
}

/** Starts the whole service; `env` lets tests and the chaos harness set test-only switches. */
export async function startService(config: Config, env: NodeJS.ProcessEnv = process.env, opts: ServiceOptions = {}): Promise<Service> {
  // Every thread logs with LOG_LEVEL to the same place; workers build theirs from `logSettings`.
  const logSettings: LogSettings = { level: config.LOG_LEVEL, dest: opts.logDest };
  const logger = opts.logger ?? createLogger({ ...logSettings, thread: 'main' });
  const log = (msg: string, fields?: object) => logger.info(fields ?? {}, msg);
  // Repeated warnings (a dead settings service, a recovery problem per file): one line a minute per kind.
  const limited = new LimitedLog(logger);
  const faults = env.LC3_PUSHER_TEST_FAULTS ? parseFaults(env.LC3_PUSHER_TEST_FAULTS) : undefined;
  if (faults) logger.warn(faults, 'TEST FAULTS ENABLED');
  const settingsError = (err: Error, uid: string) => limited.warn(`settings ${errorKey(err)}`, { uid, err: err.message }, 'settings look-up failed');
  const recoveryError = (err: Error, ctx: string) => limited.warn(`recovery ${ctx} ${errorKey(err)}`, { ctx, err: err.message }, 'spool recovery problem');
  const settings = createSettingsProvider({
    file: config.SETTINGS_FILE,
    url: config.SETTINGS_URL,
    redisUrl: config.SETTINGS_REDIS_URL,
    http: { onError: settingsError },
    redis: { onError: settingsError },
  });

  // Crash recovery before any shard opens a file: journals replayed, torn tails cut, all sealed.
  mkdirSync(config.SPOOL_DIR, { recursive: true });
  const quota = new SpoolQuota(config.SPOOL_MAX_BYTES);
  const recovered = await recoverSpool({ dir: config.SPOOL_DIR, quota, onError: recoveryError });
  if (recovered.sealed.length || recovered.quarantined.length) {
    log('spool recovered', { sealed: recovered.sealed.length, replayedBytes: recovered.replayedBytes, truncatedBytes: recovered.truncatedBytes, quarantined: recovered.quarantined });
  }
  const uploader = await startUploader(config, quota, logger, logSettings);
  const storeConfig = { STORE: config.STORE, STORE_DIR: config.STORE_DIR, GCS_BUCKET: config.GCS_BUCKET, GCS_API_ENDPOINT: config.GCS_API_ENDPOINT };
  // Jobs journaled before a crash resume now (before any session can add new ones).
  const jobs = new JobService(config, storeConfig, jobLog(logger));
  await jobs.start();

  /** Set when the drain starts, for its log lines. */
  const drainStart = { sessions: 0, at: 0 };
  const server = new IngestServer({
    config,
    log,
    logger,
    // Fault switches exist for the leak harness's positive control and backpressure tests only.
    faultsAllowed: faults !== undefined,
    faults,
    pcmTapDir: env.LC3_PUSHER_TEST_PCM_DIR,
    settings,
    jobs,
    spoolFull: () => quota.full,
    beforeShardRestart: async (shard) => {
      // The dead shard's journal and open chunks: replay, seal, hand to the uploader.
      const r = await recoverSpool({ dir: config.SPOOL_DIR, shard, quota, onError: recoveryError });
      for (const name of r.sealed) await uploader.api.notify(name);
      log('shard spool recovered', { shard, sealed: r.sealed.length, replayedBytes: r.replayedBytes });
    },
    ready: () => (quota.noSpace ? `spool disk full (ENOSPC in ${config.SPOOL_DIR})` : quota.full ? `spool full (${quota.bytes} of ${quota.maxBytes} bytes)` : undefined),
    shardExtra: {
      log: logSettings,
      spool: { dir: config.SPOOL_DIR, fsyncMs: config.FSYNC_MS, chunkSeconds: config.CHUNK_SECONDS, quotaSab: quota.sab, ioFaults: faults ? env.LC3_PUSHER_TEST_SPOOL_FAULTS : undefined,
        // SIGTERM on a full disk: the shards stop sealing in time for the drain deadline (the rest is recovered at the next start).
        closeTimeoutMs: Math.max(1000, config.DRAIN_TIMEOUT_S * 1000 - 2000) },
      // Each shard has its own pool (a pool cannot cross threads): they share 64 connections per origin.
      outbound: { allowPrivate: config.WEBHOOK_ALLOW_PRIVATE, connectionsPerOrigin: Math.max(1, Math.floor(HTTP_CONNECTIONS_PER_ORIGIN / config.SHARDS)), sessionBufferBytes: config.SESSION_BUFFER_BYTES, queueBytes: Math.floor(config.QUEUE_MAX_BYTES / config.SHARDS) },
    },
    debugThreads: { uploader: remoteThread(() => uploader.api) },
    onDrain: async (deadline) => {
      // Sockets still open at the deadline were terminated; everything they sent is in the rings.
      const open = server.connections.size;
      log('sessions closed', { closed: drainStart.sessions - open, terminated: open, ms: Date.now() - drainStart.at });
      // Sessions are closed and their chunks sealing; upload what we can and finish the jobs that
      // can finish before the deadline (the rest stays journaled for the next start).
      // The uploader gets half of what is left: the shards still have to stop (seal or leave their
      // journal) after this, and an unreachable store or a full disk would otherwise spend it all.
      const [, j] = await Promise.all([uploader.api.drain(Math.max(0, (deadline - Date.now()) / 2)), jobs.drain(deadline)]);
      log('jobs drained', { finished: j.finished, remaining: j.remaining });
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
    logger,
    stop: async (why = 'stop') => {
      const t0 = Date.now();
      const deadline = t0 + config.DRAIN_TIMEOUT_S * 1000;
      Object.assign(drainStart, { sessions: server.connections.size, at: t0 });
      logger.info({ why, sessions: drainStart.sessions, drainTimeoutS: config.DRAIN_TIMEOUT_S }, 'draining');
      const before = await uploader.api.stats();
      await server.drain(deadline - t0);
      // The shards have stopped: every chunk is sealed now. A last pass (it rescans the spool)
      // uploads the chunks sealed after the first one and counts what is left for the next start.
      const last = await uploader.api.drain(Math.max(0, deadline - Date.now()));
      const after = await uploader.api.stats();
      log('drained', {
        uploaded: after.uploads_ok - before.uploads_ok,
        uploadedBytes: after.audio_bytes_uploaded_total - before.audio_bytes_uploaded_total,
        leftInSpool: last.remaining,
        leftInSpoolBytes: after.spool_bytes,
        ms: Date.now() - t0,
      });
      await jobs.close();
      await settings.close();
      uploader.state.stopping = true;
      await uploader.api.close();
      uploader.api[Comlink.releaseProxy]();
      await uploader.worker.terminate();
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
  const logger = createLogger({ level: config.LOG_LEVEL, thread: 'main' });
  // Node still prints the stack and exits 1; this puts it in the log first, as `fatal`.
  process.on('uncaughtExceptionMonitor', (err, origin) => logger.fatal({ err, origin }, 'uncaught exception; exiting'));
  let svc: Service;
  try {
    svc = await startService(config, env, { logger });
  } catch (err) {
    logger.fatal({ err }, 'start failed');
    throw err;
  }
  const stop = shutdownHandler(svc, logger, { drainTimeoutS: config.DRAIN_TIMEOUT_S });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
