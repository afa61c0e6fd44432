// The HTTP + WebSocket front of the service (main thread): handshakes, sessions, shard events,
// /metrics /healthz /readyz (the /debug/* routes: debug.ts), idle sweeps and the SIGTERM drain.
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../config.js';
import type { Endpoint, SessionInit, ShardEvent } from '../session/protocol.js';
import { hasConsumers, type ConsumerSettings } from '../consumers/session-consumers.js';
import type { SettingsProvider, UserSettings } from '../settings/index.js';
import { maxRecordPayload, pieceBytes } from '../shard/ring.js';
import { Supervisor } from '../shard/supervisor.js';
import type { ShardFaults } from '../shard/shard-core.js';
import { authenticate, bearer, HttpError } from './auth.js';
import { Connection, type ConnectionHooks, type ConnectionLimits } from './connection.js';
import { DebugRoutes } from './debug.js';
import { parseHandshake } from './handshake.js';
import { Admission, answerClientError, httpServerLimits, TCP_SLACK, timestampsReplacedCounter } from './limits.js';
import { Metrics } from './metrics.js';
import { addThreadMetrics } from './metrics-threads.js';
import { ThreadDirectory, type ThreadControl } from './threads.js';
import { SessionLog } from './session-log.js';
import { createLogger, type Logger } from '../log/logger.js';
import { LimitedLog } from '../log/limited.js';

export interface ServerOptions {
  config: Config;
  log: (msg: string, fields?: object) => void;
  /** The main thread's logger (src/log/logger.ts): session lines, shard crashes. Default: LOG_LEVEL to stdout. */
  logger?: Logger;
  /** Test/chaos fault switches (never set in production). */
  faultsAllowed?: boolean;
  faults?: Partial<ShardFaults> | undefined;
  pcmTapDir?: string | undefined;
  /** Extra shard worker data (spool configuration). */
  shardExtra?: Record<string, unknown>;
  /** Extra readiness condition (e.g. spool not full). */
  ready?: () => string | undefined;
  /** Per-uid settings; without a provider nothing is spooled (sync off). */
  settings?: SettingsProvider;
  /** True while the spool is at SPOOL_MAX_BYTES or its disk is full: sockets are paused until it is not. */
  spoolFull?: () => boolean;
  /** Before a crashed shard restarts (recover the files its spool left open). */
  beforeShardRestart?: (shard: number) => Promise<void>;
  /** Called on drain after sessions closed, before the shards stop (seal + upload the spool). */
  onDrain?: (deadline: number) => Promise<void>;
  /** Other worker threads by name (e.g. the uploader): /debug/*, per-thread metrics. */
  debugThreads?: Record<string, ThreadControl>;
  /** The process-scoped job queue (104, 105); without one a 104 is answered with an error. */
  jobs?: JobSink;
}

export type JobReply = { ok: true; reply?: Record<string, unknown> } | { ok: false; error: string };

export interface JobSink {
  /**
   * Journals the job (durably) and runs it; resolves when it is finished, whether or not its
   * session is still there (a full queue or a bad request resolves at once with an error).
   */
  submit(uid: string, kind: 'process' | 'speaker_sample', msg: Record<string, unknown>): Promise<JobReply>;
}

/** The webhooks and apps a uid's settings name, or null when there are none (nothing is collected). */
export function consumersOf(s: UserSettings | undefined): ConsumerSettings | null {
  if (!s) return null;
  const c: ConsumerSettings = {
    transcriptWebhook: s.transcript_webhook,
    transcriptApps: s.transcript_apps,
    audioBytesWebhook: s.audio_bytes_webhook,
    audioApps: s.audio_apps,
  };
  return hasConsumers(c) ? c : null;
}

const SWEEP_MS = 1000;
/** Sweeps a socket stays paused on a full ring before the sweep retries it itself (Connection.rescue). */
const RESCUE_TICKS = 2;

const ENDPOINTS: Record<string, Endpoint> = { '/v1/trigger/listen': 'pusher', '/v1/audio/stream': 'device' };

export class IngestServer {
  readonly http: Server;
  readonly wss: WebSocketServer;
  readonly supervisor: Supervisor;
  readonly metrics: Metrics;
  /** Every thread by name (main, shard-N, the debugThreads): one resolver for /debug/* and metrics. */
  readonly threads: ThreadDirectory;
  private readonly debug: DebugRoutes;
  readonly connections = new Set<Connection>();
  private readonly bySlot: (Connection | undefined)[][];
  private readonly opts: ServerOptions;
  private readonly cfg: Config;
  private readonly limits: ConnectionLimits;
  /**
   * One hooks object for every connection (they only reach the server): a closure per connection
   * made every per-message call site (now, audioBytes, spoolFull) see a new function per session,
   * so V8 could inline none of them.
   */
  private readonly connHooks: ConnectionHooks = {
    reject: (reason) => this.metrics.rejected.inc({ reason }),
    audioBytes: (n) => (this.metrics.pendingAudioBytes += n),
    heldDelta: (d) => {
      this.heldBytes += d;
      this.metrics.pendingMessageBytes.set(this.heldBytes);
    },
    pausedDelta: (d) => {
      this.pausedCount += d;
      this.metrics.socketsPaused.set(this.pausedCount);
    },
    closed: (c) => {
      if (this.connections.delete(c)) this.admission.releaseUid(c.init.uid);
      if (this.bySlot[c.shard.index]![c.slot] === c) this.bySlot[c.shard.index]![c.slot] = undefined;
    },
    now: () => this.tick,
    timestampReplaced: () => this.timestampsReplaced.inc(),
    spoolFull: () => this.opts.spoolFull?.() === true,
    waitSpool: (c) => this.waitSpool(c),
  };
  private readonly logger: Logger;
  private readonly sessionLog: SessionLog;
  /** Refusals that come in herds (every reconnect while a shard is full or restarting): rate-limited. */
  private readonly limitedLog: LimitedLog;
  /** MAX_CONNECTIONS and MAX_SESSIONS_PER_UID, checked before the upgrade (src/server/limits.ts). */
  readonly admission: Admission;
  private readonly timestampsReplaced: ReturnType<typeof timestampsReplacedCounter>;
  private nextId = 1;
  /** Sweep counter; connections stamp it on every message (cheaper than reading the clock). */
  private tick = 0;
  private pausedCount = 0;
  /** Bytes of socket messages waiting for ring space (the main thread's only unbounded-by-ring memory). */
  private heldBytes = 0;
  private draining = false;
  private sweep: NodeJS.Timeout | undefined;

  constructor(opts: ServerOptions) {
    this.opts = opts;
    this.cfg = opts.config;
    const cfg = this.cfg;
    this.logger = opts.logger ?? createLogger({ level: cfg.LOG_LEVEL, thread: 'main' });
    this.sessionLog = new SessionLog(this.logger);
    this.limitedLog = new LimitedLog(this.logger);
    this.bySlot = Array.from({ length: cfg.SHARDS }, () => new Array<Connection | undefined>(cfg.SLOTS_PER_SHARD));
    this.supervisor = new Supervisor({
      shards: cfg.SHARDS,
      slots: cfg.SLOTS_PER_SHARD,
      ringBytes: cfg.RING_BYTES,
      graceMs: cfg.CLOSE_GRACE_MS,
      faultsAllowed: opts.faultsAllowed === true,
      faults: opts.faults,
      pcmTapDir: opts.pcmTapDir,
      ...(opts.shardExtra ? { extra: opts.shardExtra } : {}),
      onEvent: (shard, ev) => this.onShardEvent(shard, ev),
      onShardLost: (shard) => this.onShardLost(shard),
      ...(opts.beforeShardRestart ? { beforeRestart: opts.beforeShardRestart } : {}),
      // The supervisor speaks only when a shard crashed or could not be restarted.
      log: (msg, fields) => this.logger.error(fields ?? {}, msg),
    });
    this.metrics = new Metrics(
      () => this.supervisor.stats(),
      () => this.supervisor.shards.filter((h) => h.up).map((h) => ({ shard: h.index, ringBytes: h.arena.totalUsed(), slots: h.leased })),
    );
    this.threads = new ThreadDirectory(this.supervisor, opts.debugThreads);
    addThreadMetrics(this.metrics, this.threads);
    this.debug = new DebugRoutes(this.threads, cfg.ADMIN_TOKEN);
    // A message may be far larger than a ring (it is written in pieces): MAX_MESSAGE_BYTES bounds it.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: cfg.MAX_MESSAGE_BYTES, perMessageDeflate: false });
    this.limits = { piece: pieceBytes(cfg.RING_BYTES), record: maxRecordPayload(cfg.RING_BYTES), maxJsonBytes: cfg.MAX_JSON_BYTES, sendBufferBytes: cfg.SEND_BUFFER_BYTES, rate: cfg };
    this.admission = new Admission(cfg, () => this.connections.size);
    this.timestampsReplaced = timestampsReplacedCounter(this.metrics.registry);
    this.http = createServer(httpServerLimits(cfg.HANDSHAKE_TIMEOUT_MS, cfg.MAX_HEADER_BYTES), (req, res) => void this.onRequest(req, res));
    // Slow, oversized or malformed requests Node refused before they reached us: counted, answered.
    this.http.on('clientError', (err: Error & { code?: string }, socket: Duplex) => answerClientError(err, socket, (reason) => this.metrics.rejected.inc({ reason })));
    // Past this many TCP connections Node closes new ones at accept, before they cost a parser.
    this.http.maxConnections = cfg.MAX_CONNECTIONS + TCP_SLACK;
    this.http.on('drop', () => this.metrics.rejected.inc({ reason: 'connection_limit' }));
    this.http.on('upgrade', (req, socket, head) => void this.onUpgrade(req, socket, head));
  }

  async listen(): Promise<number> {
    await this.supervisor.start();
    await new Promise<void>((resolve) => this.http.listen(this.cfg.PORT, this.cfg.HOST, resolve));
    this.sweep = setInterval(() => this.sweepIdle(), SWEEP_MS);
    this.sweep.unref();
    const addr = this.http.address();
    return typeof addr === 'object' && addr ? addr.port : this.cfg.PORT;
  }

  get pausedSockets(): number {
    return this.pausedCount;
  }

  /** Why the service is not ready, or undefined when it is. */
  notReady(): string | undefined {
    if (this.draining) return 'draining';
    const down = this.supervisor.shards.filter((h) => !h.up).map((h) => h.index);
    if (down.length) return `shard(s) down: ${down.join(', ')}`;
    return this.opts.ready?.();
  }

  private json(res: ServerResponse, status: number, body: object): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      switch (url.pathname) {
        case '/healthz':
        case '/health': // the Omi deployment's liveness probe path
          return this.json(res, 200, { ok: true });
        case '/readyz':
        case '/ready': { // the Omi deployment's readiness probe path
          const why = this.notReady();
          return this.json(res, why ? 503 : 200, why ? { ready: false, reason: why } : { ready: true });
        }
        case '/metrics': {
          const body = await this.metrics.render();
          res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
          res.end(body);
          return;
        }
        default:
          if (await this.debug.handle(req, url, res)) return;
          if (ENDPOINTS[url.pathname]) return this.json(res, 426, { error: 'this endpoint needs a WebSocket upgrade' });
          return this.json(res, 404, { error: 'not found' });
      }
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal', (err as Error).message);
      // A refusal is the client's business; an unexpected failure is ours.
      if (!(err instanceof HttpError)) this.logger.error({ err, path: url.pathname }, 'request failed');
      this.json(res, e.status, { error: e.message });
    }
  }

  private rejectHandshake(socket: Duplex, e: HttpError): void {
    this.metrics.rejected.inc({ reason: e.reason });
    const body = JSON.stringify({ error: e.message });
    const text = STATUS_CODES[e.status] ?? 'Bad Request';
    socket.end(`HTTP/1.1 ${e.status} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://x');
    const endpoint = ENDPOINTS[url.pathname];
    let entered = false;
    /** The uid claimed against MAX_SESSIONS_PER_UID, until the connection owns the claim. */
    let claimed: string | undefined;
    // Our own, async part of the handshake (auth, settings) has the deadline Node's part has.
    const deadline = setTimeout(() => {
      this.metrics.rejected.inc({ reason: 'handshake_timeout' });
      socket.destroy();
    }, this.cfg.HANDSHAKE_TIMEOUT_MS);
    try {
      if (!endpoint) throw new HttpError(404, 'not_found', `no WebSocket endpoint at ${url.pathname}`);
      if (this.draining) throw new HttpError(503, 'draining', 'server is draining');
      this.admission.enter();
      entered = true;
      const tokenUid = await authenticate(this.cfg, bearer(req.headers.authorization, url.searchParams));
      const parsed = parseHandshake(endpoint, url.searchParams, tokenUid, this.nextId++);
      this.admission.claimUid(parsed.uid);
      claimed = parsed.uid;
      const settings = this.opts.settings ? await this.opts.settings.get(parsed.uid) : undefined;
      if (socket.destroyed) return;
      const init: SessionInit = { ...parsed, sync: settings?.private_cloud_sync ?? false, consumers: consumersOf(settings) };
      let upgraded = false;
      // ws completes (or refuses) the upgrade synchronously: no callback means it answered 400.
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true;
        claimed = undefined; // accept() and the connection release it
        this.accept(ws, init);
      });
      if (!upgraded) this.metrics.rejected.inc({ reason: 'bad_upgrade' });
    } catch (err) {
      /* c8 ignore next */
      if (!(err instanceof HttpError)) throw err;
      this.rejectHandshake(socket, err);
    } finally {
      clearTimeout(deadline);
      if (entered) this.admission.leave();
      if (claimed !== undefined) this.admission.releaseUid(claimed);
    }
  }

  private accept(ws: WebSocket, init: SessionInit): void {
    const shard = this.supervisor.pick(init.uid);
    if (this.draining) {
      this.metrics.rejected.inc({ reason: 'draining' });
      this.admission.releaseUid(init.uid);
      return ws.close(1001, 'server is draining');
    }
    const slot = shard.up ? shard.lease() : -1;
    if (slot < 0) {
      this.metrics.rejected.inc({ reason: 'overloaded' });
      this.admission.releaseUid(init.uid);
      this.limitedLog.warn(`refused ${shard.index} ${shard.up}`, { shard: shard.index, uid: init.uid }, shard.up ? 'session refused (1013): no ring slot free on its shard' : 'session refused (1013): its shard is restarting');
      return ws.close(1013, shard.up ? 'server overloaded: no ring slot free, try again later' : 'shard restarting, try again later');
    }
    const conn = new Connection(ws, shard, slot, init, this.connHooks, this.limits);
    this.connections.add(conn);
    this.bySlot[shard.index]![slot] = conn;
    this.sessionLog.opened(conn);
    ws.once('close', (code: number, reason: Buffer) => this.sessionLog.closed(conn, code, reason.toString()));
  }

  /** Sockets paused because the spool is full; polled until it has room (then flushed in order). */
  private readonly spoolWaiters = new Set<Connection>();
  private spoolPoll: NodeJS.Timeout | undefined;

  private waitSpool(c: Connection): void {
    this.spoolWaiters.add(c);
    if (this.spoolPoll) return;
    const since = Date.now();
    this.limitedLog.warn('spool full', {}, 'spool full (SPOOL_MAX_BYTES, or its disk: ENOSPC): sockets paused until there is room');
    this.spoolPoll = setInterval(() => {
      if (this.opts.spoolFull?.()) return;
      const waiters = [...this.spoolWaiters];
      this.spoolWaiters.clear();
      clearInterval(this.spoolPoll);
      this.spoolPoll = undefined;
      // Only a real stall is news (a spool at its bound flaps full/not full as uploads finish).
      if (Date.now() - since >= 1000) this.logger.info({ pausedMs: Date.now() - since, sockets: waiters.length }, 'spool has room again');
      for (const w of waiters) w.flush();
    }, 100);
  }

  private onShardEvent(shard: number, ev: ShardEvent): void {
    if (ev.t === 'log') return this.logger.warn({ shard }, ev.msg); // shards without their own logger (tests)
    if (ev.t === 'job') return this.onJob(shard, ev);
    const conn = this.bySlot[shard]![ev.slot];
    if (!conn) return;
    switch (ev.t) {
      case 'drained':
        return conn.flush();
      case 'ack':
        return conn.reply(202, JSON.stringify({ frames: ev.frames, bytes: ev.bytes }));
      case 'reply':
        return conn.reply(201, ev.body);
      case 'close':
        return conn.fail(ev.code, ev.reason, ev.code === 1007 ? 'invalid_payload' : ev.code === 1003 ? 'malformed' : 'internal');
    }
  }

  /**
   * A 104 or 105 from a session. The job belongs to the process (it finishes when the client has
   * gone); only the 201 reply belongs to the session: sent if that very session is still open.
   */
  private onJob(shard: number, ev: Extract<ShardEvent, { t: 'job' }>): void {
    const conversationId = ev.msg.conversation_id;
    const reply = (r: JobReply): void => {
      if (ev.kind !== 'process') return;
      const c = this.bySlot[shard]![ev.slot];
      if (c?.init.id !== ev.session) return;
      c.reply(201, JSON.stringify(r.ok ? { conversation_id: conversationId, success: true, ...r.reply } : { conversation_id: conversationId, error: r.error }));
    };
    if (!this.opts.jobs) return reply({ ok: false, error: 'conversation processing is not configured' });
    this.opts.jobs.submit(ev.uid, ev.kind, ev.msg).then(reply, (err: Error) => reply({ ok: false, error: err.message }));
  }

  private onShardLost(shard: number): void {
    this.metrics.shardRestarts.inc({ shard: String(shard) });
    for (const conn of [...this.connections]) {
      if (conn.shard.index !== shard) continue;
      conn.abandon();
      conn.close(1011, 'shard restarted; reconnect', 'shard_restart');
    }
  }

  private sweepIdle(): void {
    // Idleness is counted in sweeps, not wall time: a late or early timer cannot make a
    // session that spoke since the last sweep look idle.
    this.tick++;
    const idleTicks = Math.ceil((this.cfg.RECEIVE_TIMEOUT_S * 1000) / SWEEP_MS);
    for (const conn of this.connections) {
      if (conn.isPaused) {
        if (conn.rescue(this.tick, RESCUE_TICKS)) this.metrics.pausedRescues.inc();
      } else if (this.tick - conn.lastSeen > idleTicks) conn.fail(1001, `idle for more than ${this.cfg.RECEIVE_TIMEOUT_S} s`, 'idle_timeout');
    }
  }

  /** Stops accepting, closes every session with 1001, hands the spool over, stops the shards. */
  async drain(timeoutMs = this.cfg.DRAIN_TIMEOUT_S * 1000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.draining = true;
    clearInterval(this.sweep);
    clearInterval(this.spoolPoll);
    this.http.close();
    for (const conn of this.connections) conn.close(1001, 'server is draining', 'drain');
    // With the spool full, a paused session's last messages cannot reach its shard before the
    // deadline: waiting for them would spend the whole drain here (they are not acknowledged;
    // clients resend them), so such sessions are terminated at once.
    while (this.connections.size > 0 && Date.now() < deadline && !this.opts.spoolFull?.()) await new Promise((r) => setTimeout(r, 20));
    for (const conn of this.connections) conn.ws.terminate();
    await this.opts.onDrain?.(deadline);
    await this.supervisor.stop();
    this.http.closeAllConnections();
  }
}
