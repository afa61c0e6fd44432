// The load generator: many real `ws` clients in one process, driven by one shared timer wheel
// (no timer per client), replaying audio encoded once. Clients write pre-framed WebSocket
// messages (masked with a zero key, which the protocol allows) straight to their socket, one
// write per message — as a wearable sends one 30-byte frame per TCP packet — so the generator
// spends its CPU on syscalls, not on framing.
//
// Workloads (DESIGN §2):
//   device     /v1/audio/stream, lc3_fs1030: one 30-byte LC3 frame per message, 100 msgs/s
//              (optional ack=1: counts 202 durable acks)
//   omi-leak1  /v1/trigger/listen: 103 conversation switch, then a 104 process request every 0.1 s
//   omi-leak2  /v1/trigger/listen, pcm16 at 8 kHz: 103, then a 101 with 16,000 bytes of PCM
//              every 0.05 s
//   idle       /v1/audio/stream: connects and sends nothing (memory per idle session)
// Churn: every client disconnects after a jittered lifetime and reconnects; a fraction of those
// disconnects are abrupt (socket destroyed, no close handshake).
//
//   device-pcm /v1/audio/stream, pcm16 at 16 kHz: the same 30-byte messages, nothing to decode
//              (isolates the main thread's ingest cost from the shards' decoding)
// Counts: messages, LC3 frames and audio bytes sent per uid and conversation, reconnects, close
// codes received, acks. "Sent" means written to the socket; what is still in the socket's
// userland buffer when a client kills its connection (or gives up on a close handshake) may
// never reach the server and is counted as `uncertain`. Without backpressure the kernel takes
// each write at once, so that buffer is empty.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { lc3Frames, pcmChunks } from './signal.js';

export type Workload = 'device' | 'device-pcm' | 'omi-leak1' | 'omi-leak2' | 'idle';
export const WORKLOADS: readonly Workload[] = ['device', 'device-pcm', 'omi-leak1', 'omi-leak2', 'idle'];

export interface ClientGroup {
  workload: Workload;
  clients: number;
  /** Messages per second per client; Infinity = as fast as the socket accepts (blast). */
  rate?: number;
  /** device: ask for durable acks (ack=1). */
  ack?: boolean;
  /** device: conversation_id query parameter (default: none, stored under "_"). */
  conversation?: string;
  /** uid = `${uidPrefix}${index}`; default: the workload name. */
  uidPrefix?: string;
}

export interface Churn {
  /** Each connection lives a uniformly random time in [minS, maxS] seconds, then reconnects. */
  minS: number;
  maxS: number;
  /** Fraction (0..1) of those disconnects that are abrupt socket kills. */
  killFraction: number;
}

export interface LoadOptions {
  /** Loopback only: 127.0.0.1 (or ::1 / localhost). */
  host?: string;
  port: number;
  groups: readonly ClientGroup[];
  churn?: Churn | undefined;
  /** Spread the first connects over this many seconds (default 1). */
  rampS?: number;
  /** Hard bound: the generator stops itself after this many seconds (default 600). */
  maxSeconds?: number;
  /** Timer wheel tick, ms (default 5). */
  tickMs?: number;
  /** Per-socket userland buffer above which a client skips writing (default 64 KiB). */
  highWaterBytes?: number;
  /** Most messages one client writes per tick (default 200 paced, 4096 blast). */
  maxBurst?: number;
  /** Delay before a reconnect, ms: uniform in [min, max] (default 50..500). */
  reconnectMs?: readonly [number, number];
  /** Seeded randomness for jitter (default Math.random). */
  random?: () => number;
}

export interface KeyCount {
  kind: 'lc3' | 'pcm';
  /** LC3 frames, or PCM samples. */
  frames: number;
  bytes: number;
}

export interface LoadStats {
  elapsedS: number;
  clients: number;
  connected: number;
  connects: number;
  reconnects: number;
  connectFailures: number;
  /** Disconnects we started: graceful close handshakes and abrupt kills. */
  closes: number;
  kills: number;
  /** Close codes of disconnects we did not start (server closes, 1006 resets), by code. */
  serverCloses: Record<string, number>;
  /** One sample reason per server close code. */
  closeReasons: Record<string, string>;
  errors: Record<string, number>;
  messages: number;
  controlMessages: number;
  lc3Frames: number;
  pcmBytes: number;
  audioBytes: number;
  /** Per `${uid}/${conversation}`. */
  perKey: Record<string, KeyCount>;
  /** Audio possibly lost by our own kills (still in the client's buffer when the socket died). */
  uncertain: { frames: number; bytes: number; perKey: Record<string, KeyCount> };
  /** 202 acks received and the sum over sessions of the last acked frame count. */
  acks: { messages: number; frames: number };
  /** 201 replies received. */
  replies: number;
  /** Messages that were due but not sent: at the end (lag) and skipped ticks (socket full). */
  lateMessages: number;
  blockedTicks: number;
  /** Event-loop delay of the generator, ms. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

// ---------------------------------------------------------------------------------------------
// WebSocket framing (RFC 6455 §5.2): FIN + opcode, MASK bit set, all-zero masking key.

export function clientFrame(payload: Uint8Array, opcode = 2): Buffer {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = 2 + ext + 4;
  const out = Buffer.alloc(head + n);
  out[0] = 0x80 | opcode;
  if (ext === 0) out[1] = 0x80 | n;
  else if (ext === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  // Masking key: bytes [head-4, head) stay zero, so the payload is sent as is.
  out.set(payload, head);
  return out;
}

export function pusherPayload(header: number, body: Uint8Array | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32LE(header, 0);
  out.set(b, 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Timer wheel: one interval for every client. Items land in the bucket of their due tick; items
// due beyond the wheel's horizon wait their round in the same bucket.

interface WheelEntry<T> {
  item: T;
  at: number;
  token: number;
}

export class TimerWheel<T> {
  private readonly buckets: WheelEntry<T>[][];
  private cursor: number;
  private count = 0;

  constructor(
    readonly tickMs: number,
    readonly slots: number,
    now: number,
  ) {
    this.buckets = Array.from({ length: slots }, () => []);
    this.cursor = Math.floor(now / tickMs);
  }

  get size(): number {
    return this.count;
  }

  /** Schedules `item` at time `at` (ms, same clock as advance). `token` is handed back on run. */
  schedule(item: T, at: number, token = 0): void {
    const tick = Math.max(Math.floor(at / this.tickMs), this.cursor);
    this.buckets[tick % this.slots]!.push({ item, at, token });
    this.count++;
  }

  /**
   * Runs every item due at or before `now`. The bucket of the current tick is looked at again on
   * the next advance (it may hold items due later in this tick); items scheduled meanwhile for
   * `now` or earlier run on the next advance.
   */
  advance(now: number, run: (item: T, token: number) => void): number {
    const target = Math.floor(now / this.tickMs);
    let ran = 0;
    const last = Math.min(target, this.cursor + this.slots - 1);
    for (let k = this.cursor; k <= last; k++) {
      this.cursor = k;
      const i = k % this.slots;
      const bucket = this.buckets[i]!;
      if (bucket.length === 0) continue;
      const keep: WheelEntry<T>[] = [];
      const due: WheelEntry<T>[] = [];
      for (const e of bucket) (e.at <= now ? due : keep).push(e);
      this.buckets[i] = keep;
      this.count -= due.length;
      for (const e of due) {
        run(e.item, e.token);
        ran++;
      }
    }
    this.cursor = Math.max(this.cursor, target);
    return ran;
  }
}

// ---------------------------------------------------------------------------------------------
// Workload definitions.

const LC3 = { frameUs: 10000, sampleRate: 16000, frameBytes: 30 } as const;
const OMI2_PCM_BYTES = 16000;
const OMI2_RATE = 8000;

interface Shared {
  deviceWire: Buffer[];
  pcm: Uint8Array[];
}

let shared: Shared | undefined;

/** Encoded once per process: 5 s of LC3 frames (500 frames) and 4 s of 8 kHz PCM. */
function sharedAudio(): Shared {
  return (shared ??= {
    deviceWire: lc3Frames(LC3, 5).map((f) => clientFrame(f)),
    pcm: pcmChunks(OMI2_RATE, 4, OMI2_PCM_BYTES),
  });
}

function defaultRate(w: Workload): number {
  return w === 'device' || w === 'device-pcm' ? 100 : w === 'omi-leak1' ? 10 : w === 'omi-leak2' ? 20 : 0;
}

function pathFor(g: ClientGroup, uid: string): string {
  switch (g.workload) {
    case 'device':
    case 'idle': {
      const q = new URLSearchParams({ uid, codec: 'lc3_fs1030' });
      if (g.ack) q.set('ack', '1');
      if (g.conversation) q.set('conversation_id', g.conversation);
      return `/v1/audio/stream?${q}`;
    }
    case 'device-pcm':
      return `/v1/audio/stream?${new URLSearchParams({ uid, codec: 'pcm16', sample_rate: '16000' })}`;
    default:
      return `/v1/trigger/listen?${new URLSearchParams({ uid, sample_rate: String(OMI2_RATE), codec: 'pcm16' })}`;
  }
}

type State = 'waiting' | 'connecting' | 'open' | 'closing' | 'done';

interface Client {
  index: number;
  group: ClientGroup;
  uid: string;
  conversation: string;
  key: string;
  rate: number;
  period: number;
  state: State;
  ws: WebSocket | undefined;
  sock: Socket | undefined;
  token: number;
  /** Stream clock: message i is due at streamStart + i * period. */
  streamStart: number;
  seq: number;
  /** When this connection ends (churn), ms; Infinity without churn. */
  endAt: number;
  weClosed: boolean;
  everOpened: boolean;
  acked: number;
  conn: number;
}

const DEVICE_WIRE_BYTES = 6 + LC3.frameBytes; // 2-byte header + 4-byte mask + frame
const OMI2_WIRE_BYTES = 8 + 12 + OMI2_PCM_BYTES; // 4-byte header + mask, 101 header + f64, PCM

/**
 * The audio that `bytes` of a client's unsent socket buffer may hold, given the `seq` messages
 * its connection wrote (an upper bound: at most one message per wire size, at most all of them).
 * LC3 in frames, PCM in samples; control messages (103/104) carry no audio.
 */
export function unsentAudio(w: Workload, bytes: number, seq: number): KeyCount & { lc3Frames: number } {
  if (w === 'device' || w === 'device-pcm') {
    const msgs = Math.min(seq, Math.ceil(bytes / DEVICE_WIRE_BYTES));
    const lc3 = w === 'device';
    return { kind: lc3 ? 'lc3' : 'pcm', frames: lc3 ? msgs : (msgs * LC3.frameBytes) / 2, bytes: msgs * LC3.frameBytes, lc3Frames: lc3 ? msgs : 0 };
  }
  const msgs = w === 'omi-leak2' ? Math.min(seq, Math.ceil(bytes / OMI2_WIRE_BYTES)) : 0;
  return { kind: 'pcm', frames: (msgs * OMI2_PCM_BYTES) / 2, bytes: msgs * OMI2_PCM_BYTES, lc3Frames: 0 };
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost';
}

export class LoadGen {
  private readonly opts: Required<Omit<LoadOptions, 'churn'>> & { churn: Churn | undefined };
  private readonly clients: Client[] = [];
  private readonly wheel: TimerWheel<Client>;
  private readonly t0 = performance.now();
  private interval: NodeJS.Timeout | undefined;
  private hardStop: NodeJS.Timeout | undefined;
  private stopping = false;
  private stopPromise: Promise<LoadStats> | undefined;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 5 });
  private readonly s: LoadStats;
  private readonly audio: Shared;

  constructor(opts: LoadOptions) {
    const host = opts.host ?? '127.0.0.1';
    if (!isLoopback(host)) throw new Error(`load generator targets loopback only, not ${host}`);
    if (opts.churn && !(opts.churn.minS > 0 && opts.churn.maxS >= opts.churn.minS && opts.churn.killFraction >= 0 && opts.churn.killFraction <= 1)) {
      throw new Error('churn needs 0 < minS <= maxS and killFraction in 0..1');
    }
    this.opts = {
      host,
      port: opts.port,
      groups: opts.groups,
      churn: opts.churn,
      rampS: opts.rampS ?? 1,
      maxSeconds: opts.maxSeconds ?? 600,
      tickMs: opts.tickMs ?? 5,
      highWaterBytes: opts.highWaterBytes ?? 64 * 1024,
      maxBurst: opts.maxBurst ?? 0,
      reconnectMs: opts.reconnectMs ?? [50, 500],
      random: opts.random ?? Math.random,
    };
    this.audio = sharedAudio();
    this.wheel = new TimerWheel<Client>(this.opts.tickMs, 1024, 0);
    this.s = {
      elapsedS: 0,
      clients: 0,
      connected: 0,
      connects: 0,
      reconnects: 0,
      connectFailures: 0,
      closes: 0,
      kills: 0,
      serverCloses: {},
      closeReasons: {},
      errors: {},
      messages: 0,
      controlMessages: 0,
      lc3Frames: 0,
      pcmBytes: 0,
      audioBytes: 0,
      perKey: {},
      uncertain: { frames: 0, bytes: 0, perKey: {} },
      acks: { messages: 0, frames: 0 },
      replies: 0,
      lateMessages: 0,
      blockedTicks: 0,
      loopDelayP99Ms: 0,
      loopDelayMaxMs: 0,
    };
    let index = 0;
    for (const g of opts.groups) {
      for (let i = 0; i < g.clients; i++, index++) {
        const uid = `${g.uidPrefix ?? g.workload}${i}`;
        const conversation = g.workload.startsWith('omi') ? `conv-${uid}` : (g.conversation ?? '_');
        const rate = g.rate ?? defaultRate(g.workload);
        this.clients.push({
          index,
          group: g,
          uid,
          conversation,
          key: `${uid}/${conversation}`,
          rate,
          period: rate > 0 && Number.isFinite(rate) ? 1000 / rate : 0,
          state: 'waiting',
          ws: undefined,
          sock: undefined,
          token: 0,
          streamStart: 0,
          seq: 0,
          endAt: Infinity,
          weClosed: false,
          everOpened: false,
          acked: 0,
          conn: 0,
        });
      }
    }
    this.s.clients = this.clients.length;
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  /** Starts connecting (spread over rampS) and sending; stops by itself after maxSeconds. */
  start(): this {
    this.loopDelay.enable();
    const n = this.clients.length;
    for (const c of this.clients) this.schedule(c, n > 1 ? (this.opts.rampS * 1000 * c.index) / n : 0);
    this.interval = setInterval(() => this.tick(), this.opts.tickMs);
    this.hardStop = setTimeout(() => void this.stop(), this.opts.maxSeconds * 1000);
    this.hardStop.unref();
    return this;
  }

  private schedule(c: Client, at: number): void {
    this.wheel.schedule(c, at, ++c.token);
  }

  private tick(): void {
    this.wheel.advance(this.now(), (c, token) => {
      if (token === c.token) this.step(c);
    });
  }

  private step(c: Client): void {
    // Tokens cancel the entries of a connection that ended: the client is waiting or open.
    if (c.state === 'waiting') return this.connect(c);
    const now = this.now();
    if (now >= c.endAt) return this.disconnect(c);
    this.send(c, now);
  }

  private connect(c: Client): void {
    c.state = 'connecting';
    c.weClosed = false;
    c.acked = 0;
    c.conn++;
    const o = this.opts;
    const ws = new WebSocket(`ws://${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}${pathFor(c.group, c.uid)}`, { perMessageDeflate: false });
    c.ws = ws;
    ws.on('open', () => this.onOpen(c, ws));
    ws.on('message', (data: Buffer) => this.onMessage(c, data));
    ws.on('error', (err: Error & { code?: string }) => {
      const k = err.code ?? err.message.slice(0, 60);
      this.s.errors[k] = (this.s.errors[k] ?? 0) + 1;
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClose(c, code, reason.toString()));
  }

  private onOpen(c: Client, ws: WebSocket): void {
    this.s.connects++;
    if (c.everOpened) this.s.reconnects++;
    c.everOpened = true;
    this.s.connected++;
    c.state = 'open';
    c.sock = (ws as unknown as { _socket: Socket })._socket;
    const now = this.now();
    // Random phase within one period, so clients do not all write in the same tick.
    c.streamStart = now + this.opts.random() * c.period;
    c.seq = 0;
    const ch = this.opts.churn;
    c.endAt = ch ? now + (ch.minS + this.opts.random() * (ch.maxS - ch.minS)) * 1000 : Infinity;
    if (c.group.workload === 'omi-leak1' || c.group.workload === 'omi-leak2') {
      this.write(c, clientFrame(pusherPayload(103, c.conversation)));
      this.s.controlMessages++;
    }
    if (c.rate > 0) this.schedule(c, c.streamStart);
    else if (Number.isFinite(c.endAt)) this.schedule(c, c.endAt);
  }

  private onMessage(c: Client, data: Buffer): void {
    if (data.length < 4) return;
    const header = data.readUInt32LE(0);
    if (header === 202) {
      this.s.acks.messages++;
      const body = JSON.parse(data.subarray(4).toString('utf8')) as { frames: number };
      c.acked = body.frames;
    } else if (header === 201) this.s.replies++;
  }

  private onClose(c: Client, code: number, reason: string): void {
    const opened = c.state !== 'connecting';
    if (opened) this.s.connected--;
    else if (!this.stopping) this.s.connectFailures++;
    this.s.acks.frames += c.acked;
    c.acked = 0;
    if (opened && !c.weClosed) {
      const k = String(code);
      this.s.serverCloses[k] = (this.s.serverCloses[k] ?? 0) + 1;
      if (reason) this.s.closeReasons[k] ??= reason;
    }
    c.ws = undefined;
    c.sock = undefined;
    c.token++; // cancels anything scheduled for the old connection
    if (this.stopping) {
      c.state = 'done';
      return;
    }
    c.state = 'waiting';
    const [lo, hi] = this.opts.reconnectMs;
    // A refused or overloaded connect backs off longer.
    const delay = lo + this.opts.random() * (hi - lo) + (opened && code !== 1013 ? 0 : 1000);
    this.schedule(c, this.now() + delay);
  }

  private write(c: Client, buf: Buffer): void {
    c.sock!.write(buf);
    this.s.messages++;
  }

  private count(table: Record<string, KeyCount>, key: string, kind: 'lc3' | 'pcm', frames: number, bytes: number): void {
    const e = (table[key] ??= { kind, frames: 0, bytes: 0 });
    e.frames += frames;
    e.bytes += bytes;
  }

  /** Writes every message due by `now` (paced) or until the socket is full (blast). */
  private send(c: Client, now: number): void {
    const sock = c.sock!;
    const hw = this.opts.highWaterBytes;
    const blast = !Number.isFinite(c.rate);
    const dueSeq = blast ? Infinity : Math.floor((now - c.streamStart) / c.period) + 1;
    let budget = this.opts.maxBurst || (blast ? 4096 : 200); // one client must not hog a tick
    while (c.seq < dueSeq && budget-- > 0) {
      if (sock.writableLength >= hw) {
        if (!blast) this.s.blockedTicks++;
        break;
      }
      this.sendOne(c);
      c.seq++;
    }
    const next = blast ? now + this.opts.tickMs : Math.max(c.streamStart + c.seq * c.period, now + this.opts.tickMs);
    this.schedule(c, Math.min(next, c.endAt));
  }

  private sendOne(c: Client): void {
    const a = this.audio;
    switch (c.group.workload) {
      case 'device': {
        const frames = a.deviceWire;
        this.write(c, frames[(c.seq + c.index * 37) % frames.length]!);
        this.s.lc3Frames++;
        this.s.audioBytes += LC3.frameBytes;
        this.count(this.s.perKey, c.key, 'lc3', 1, LC3.frameBytes);
        return;
      }
      case 'device-pcm': {
        // The same 30-byte messages, declared as PCM16: 15 samples each, nothing to decode.
        const frames = a.deviceWire;
        this.write(c, frames[(c.seq + c.index * 37) % frames.length]!);
        this.s.pcmBytes += LC3.frameBytes;
        this.s.audioBytes += LC3.frameBytes;
        this.count(this.s.perKey, c.key, 'pcm', LC3.frameBytes / 2, LC3.frameBytes);
        return;
      }
      case 'omi-leak1':
        this.write(c, clientFrame(pusherPayload(104, JSON.stringify({ conversation_id: c.conversation, language: 'en' }))));
        this.s.controlMessages++;
        return;
      default: {
        // omi-leak2: 101 = u32 header + f64 LE unix seconds of the first sample + PCM.
        const pcm = a.pcm[c.seq % a.pcm.length]!;
        const payload = Buffer.allocUnsafe(12 + pcm.length);
        payload.writeUInt32LE(101, 0);
        payload.writeDoubleLE((performance.timeOrigin + performance.now()) / 1000, 4);
        payload.set(pcm, 12);
        this.write(c, clientFrame(payload));
        this.s.pcmBytes += pcm.length;
        this.s.audioBytes += pcm.length;
        this.count(this.s.perKey, c.key, 'pcm', pcm.length / 2, pcm.length);
      }
    }
  }

  /** Ends the current connection: a graceful close, or (a killFraction of the time) a kill. */
  private disconnect(c: Client): void {
    c.state = 'closing';
    c.weClosed = true;
    c.token++;
    const ch = this.opts.churn;
    if (!this.stopping && ch && this.opts.random() < ch.killFraction) {
      // Abrupt: no close frame. Whatever the socket has not taken yet dies with it.
      const left = c.sock!.writableLength;
      if (left > 0) this.uncertain(c, left);
      this.s.kills++;
      // Both end the connection without a close frame; alternate between the two spellings.
      if (c.conn % 2 === 0) c.sock!.destroy();
      else c.ws!.terminate();
      return;
    }
    this.s.closes++;
    c.ws!.close(1000, 'bye');
  }

  /** Audio still in the client's buffer when its socket was destroyed: maybe never sent. */
  private uncertain(c: Client, bytes: number): void {
    const a = unsentAudio(c.group.workload, bytes, c.seq);
    const u = this.s.uncertain;
    u.frames += a.lc3Frames;
    u.bytes += a.bytes;
    if (a.bytes > 0) this.count(u.perKey, c.key, a.kind, a.frames, a.bytes);
  }

  /** True once stopping began (by stop() or the maxSeconds bound). */
  get stopped(): boolean {
    return this.stopping;
  }

  /** A snapshot of the counters (live while running). */
  stats(): LoadStats {
    const s = this.s;
    s.elapsedS = this.now() / 1000;
    const h = this.loopDelay;
    s.loopDelayP99Ms = h.count > 0 ? h.percentile(99) / 1e6 : 0;
    s.loopDelayMaxMs = h.count > 0 ? h.max / 1e6 : 0;
    return s;
  }

  /**
   * Stops: every open client closes gracefully (after everything it wrote), stragglers are
   * terminated after `graceMs`; returns the final counts. Idempotent.
   */
  stop(graceMs = 5000): Promise<LoadStats> {
    return (this.stopPromise ??= this.doStop(graceMs));
  }

  private async doStop(graceMs: number): Promise<LoadStats> {
    this.stopping = true;
    clearTimeout(this.hardStop);
    const now = this.now();
    for (const c of this.clients) {
      if (c.state === 'open' && c.period > 0) {
        const due = Math.floor((now - c.streamStart) / c.period) + 1;
        if (due > c.seq) this.s.lateMessages += due - c.seq;
      }
      if (c.state === 'open') this.disconnect(c);
      else if (c.state === 'connecting') c.ws!.terminate();
      else if (c.state === 'waiting') {
        c.state = 'done';
        c.token++;
      }
    }
    const deadline = Date.now() + graceMs;
    while (this.clients.some((c) => c.state !== 'done') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.clients) {
      if (c.state === 'done') continue;
      // The close handshake did not finish: what is still in our buffer may never arrive.
      if (c.sock && c.sock.writableLength > 0) this.uncertain(c, c.sock.writableLength);
      c.ws?.terminate();
    }
    while (this.clients.some((c) => c.state !== 'done') && Date.now() < deadline + 1000) await new Promise((r) => setTimeout(r, 10));
    clearInterval(this.interval);
    this.loopDelay.disable();
    return this.stats();
  }
}

/** Runs a load for `seconds` (bounded) and returns the counts. */
export async function runLoad(opts: LoadOptions & { seconds: number }): Promise<LoadStats> {
  const gen = new LoadGen({ ...opts, maxSeconds: Math.min(opts.maxSeconds ?? Infinity, opts.seconds + 60) }).start();
  await new Promise((r) => setTimeout(r, opts.seconds * 1000));
  return gen.stop();
}

/** Parses "device:100,omi-leak1:30" (optionally "device+ack:50") into client groups. */
export function parseGroups(spec: string): ClientGroup[] {
  return spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((part) => {
      const m = /^([a-z0-9-]+)(\+ack)?(?::(\d+))?(?:@(\d+(?:\.\d+)?|max))?$/.exec(part);
      const w = m?.[1] as Workload | undefined;
      if (!m || !w || !WORKLOADS.includes(w)) throw new Error(`bad workload "${part}": use NAME[+ack][:CLIENTS][@RATE|@max], NAME one of ${WORKLOADS.join(', ')}`);
      const g: ClientGroup = { workload: w, clients: m[3] ? Number(m[3]) : w === 'omi-leak1' ? 30 : w === 'omi-leak2' ? 15 : 100 };
      if (m[2]) g.ack = true;
      if (m[4]) g.rate = m[4] === 'max' ? Infinity : Number(m[4]);
      return g;
    });
}

/** Parses "20-60" or "20" (seconds) plus a kill fraction into a churn spec. */
export function parseChurn(spec: string | undefined, killFraction: number): Churn | undefined {
  if (!spec || spec === '0' || spec === 'off') return undefined;
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(spec.trim());
  if (!m) throw new Error(`bad churn "${spec}": use SECONDS or MIN-MAX (e.g. 20-60)`);
  const minS = Number(m[1]);
  return { minS, maxS: m[2] ? Number(m[2]) : minS, killFraction };
}
