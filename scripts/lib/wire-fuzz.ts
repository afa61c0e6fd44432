// The wire fuzzer's runner: plays WireCases (scripts/lib/wire-cases.ts) over raw TCP against a
// live service, `concurrency` connections at a time, and tallies what the server answered (HTTP
// status or close code). HonestStreams run real-time ack=1 sessions alongside: every audio byte
// they sent must come back acknowledged as durable, and none may be closed by the server.
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { wireCases, type Family, type WireCase } from './wire-cases.js';
import { closePayload, encodeFrame, OP, ServerReader } from './wire-frames.js';

export interface FuzzOptions {
  port: number;
  host?: string;
  cases: number;
  seed: number;
  concurrency: number;
  /** After the last write, how long to wait for the server to close before closing politely. */
  settleMs?: number;
  /** How long a connection may take to end after that (must exceed the service's HANDSHAKE_TIMEOUT_MS). */
  closeWaitMs?: number;
  onProgress?: (done: number) => void;
}

export interface FuzzFigures {
  cases: number;
  bytes: number;
  writes: number;
  byFamily: Record<Family, number>;
  /** Outcome ("http 400", "close 1002", "closed without a close frame", …) → count. */
  outcomes: Record<string, number>;
  /** Outcomes per case kind (frames/reserved-opcode → close 1002: n). */
  byKind: Record<string, Record<string, number>>;
  /** Connections the server neither answered nor closed within settle + closeWait: hangs. */
  hung: number;
  /** The first hung cases: kind, what the server had answered, and the bytes (base64). */
  hungSamples: { kind: string; status: number; closeCode: number; bytes: string }[];
  seconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One case on one connection; resolves with its outcome. */
export function runCase(c: WireCase, o: { port: number; host: string; settleMs: number; closeWaitMs: number }): Promise<{ outcome: string; writes: number; status: number; closeCode: number }> {
  return new Promise((resolve) => {
    const reader = new ServerReader();
    let ended = false;
    let writes = 0;
    let timer: NodeJS.Timeout | undefined;
    const s: Socket = connect({ port: o.port, host: o.host, noDelay: true });
    const finish = (hung: boolean, as?: string) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      s.destroy();
      const r = reader.reply;
      const outcome = as ?? (hung
        ? 'hung'
        : r.status === 0
          ? 'closed before an answer'
          : r.status !== 101
            ? `http ${r.status}`
            : r.closeCode
              ? `close ${r.closeCode}`
              : 'closed without a close frame');
      resolve({ outcome, writes, status: r.status, closeCode: r.closeCode });
    };
    let closeSent = false;
    const sendClose = () => {
      if (closeSent || s.destroyed) return;
      closeSent = true;
      s.write(encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
    };
    /** Past the settle time: an answer that comes now is acted on at once. */
    let settled = false;
    s.on('data', (d: Buffer) => {
      reader.push(d);
      // A server-initiated close waits for ours (RFC 6455 §5.5.1): answer it as a client should.
      if (reader.reply.closeCode) sendClose();
      else if (settled) afterSettle();
    });
    const afterSettle = () => {
      const st = reader.reply.status;
      // Refused with an HTTP answer (a keep-alive one stays open): the answer is the outcome.
      if (st !== 0 && st !== 101) return finish(false);
      // The client stalled inside a frame it declared longer: the server rightly waits for
      // the rest (RECEIVE_TIMEOUT_S ends such a session); nothing more to learn here.
      if (st === 101 && c.stallsMidFrame) return finish(false, 'client stalled mid-frame (server waits)');
      // Still open after acceptable input: close it as a client should, let the server answer.
      if (st === 101) sendClose();
    };
    s.on('error', () => {}); // resets are an outcome of their own (the close below)
    s.on('close', () => finish(false));
    s.on('connect', () => {
      void (async () => {
        let prev = 0;
        for (const cut of [...c.cuts, c.bytes.length]) {
          if (s.destroyed) return;
          s.write(c.bytes.subarray(prev, cut));
          writes++;
          prev = cut;
          if (cut < c.bytes.length) await new Promise((r) => setImmediate(r)); // separate segments
        }
        timer = setTimeout(() => {
          settled = true;
          afterSettle();
          if (ended) return;
          timer = setTimeout(() => finish(true), o.closeWaitMs);
        }, o.settleMs);
      })();
    });
  });
}

export async function runWireFuzz(o: FuzzOptions): Promise<FuzzFigures> {
  const t0 = Date.now();
  const f: FuzzFigures = { cases: 0, bytes: 0, writes: 0, byFamily: { handshake: 0, frames: 0, messages: 0 }, outcomes: {}, byKind: {}, hung: 0, hungSamples: [], seconds: 0 };
  const gen = wireCases(o.cases, o.seed);
  const opts = { port: o.port, host: o.host ?? '127.0.0.1', settleMs: o.settleMs ?? 150, closeWaitMs: o.closeWaitMs ?? 5000 };
  const worker = async () => {
    for (let next = gen.next(); !next.done; next = gen.next()) {
      const c = next.value;
      const r = await runCase(c, opts);
      f.cases++;
      f.bytes += c.bytes.length;
      f.writes += r.writes;
      f.byFamily[c.family]++;
      f.outcomes[r.outcome] = (f.outcomes[r.outcome] ?? 0) + 1;
      const k = (f.byKind[c.kind] ??= {});
      k[r.outcome] = (k[r.outcome] ?? 0) + 1;
      if (r.outcome === 'hung' && ++f.hung <= 10) f.hungSamples.push({ kind: c.kind, status: r.status, closeCode: r.closeCode, bytes: c.bytes.subarray(0, 600).toString('base64') });
      if (f.cases % 1000 === 0) o.onProgress?.(f.cases);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  f.seconds = (Date.now() - t0) / 1000;
  return f;
}

export interface HonestFigures {
  sessions: number;
  sentBytes: number;
  ackedBytes: number;
  /** Audio bytes sent and not acknowledged as durable by the end (must be 0). */
  lostBytes: number;
  /** Sessions the server closed (or that failed) before we did, by code (must be none). */
  unexpectedCloses: Record<string, number>;
}

interface Honest {
  ws: WebSocket;
  sent: number;
  acked: number;
  closedBy?: string;
}

/**
 * Real-time pusher sessions (PCM16 at 8 kHz, 100 ms per 101, ack=1) for uids `${prefix}N`;
 * their uids need private_cloud_sync on (or acks never come).
 */
export class HonestStreams {
  private readonly streams: Honest[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(
    private readonly port: number,
    private readonly n: number,
    private readonly prefix = 'honest',
  ) {}

  async start(): Promise<void> {
    await Promise.all(
      Array.from({ length: this.n }, (_, i) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${this.port}/v1/trigger/listen?uid=${this.prefix}${i}&sample_rate=8000&codec=pcm16&ack=1`);
          const h: Honest = { ws, sent: 0, acked: 0 };
          ws.once('open', () => {
            this.streams.push(h);
            resolve();
          });
          ws.once('error', reject);
          ws.on('message', (d: Buffer) => {
            if (d.length > 4 && d.readUInt32LE(0) === 202) h.acked = (JSON.parse(d.subarray(4).toString()) as { bytes: number }).bytes;
          });
          ws.on('close', (code) => {
            if (!this.stopping) h.closedBy = String(code);
          });
        }),
      ),
    );
    const pcm = Buffer.alloc(1600, 0x11); // 100 ms of 8 kHz PCM16
    this.timer = setInterval(() => {
      for (const h of this.streams) {
        if (h.ws.readyState !== WebSocket.OPEN) continue;
        const m = Buffer.alloc(12 + pcm.length);
        m.writeUInt32LE(101, 0);
        m.writeDoubleLE(Date.now() / 1000, 4);
        pcm.copy(m, 12);
        h.ws.send(m);
        h.sent += pcm.length;
      }
    }, 100);
  }

  /** Stops sending, waits (up to `deadlineMs`) until everything sent is acknowledged, closes. */
  async stop(deadlineMs = 10000): Promise<HonestFigures> {
    clearInterval(this.timer);
    const end = Date.now() + deadlineMs;
    while (Date.now() < end && this.streams.some((h) => h.acked < h.sent && h.ws.readyState === WebSocket.OPEN)) await sleep(50);
    this.stopping = true;
    for (const h of this.streams) h.ws.close();
    const f: HonestFigures = { sessions: this.streams.length, sentBytes: 0, ackedBytes: 0, lostBytes: 0, unexpectedCloses: {} };
    for (const h of this.streams) {
      f.sentBytes += h.sent;
      f.ackedBytes += h.acked;
      f.lostBytes += Math.max(0, h.sent - h.acked);
      if (h.closedBy) f.unexpectedCloses[h.closedBy] = (f.unexpectedCloses[h.closedBy] ?? 0) + 1;
    }
    return f;
  }
}

/** The figures as the scripts print them. */
export function formatFuzz(f: FuzzFigures, h: HonestFigures, crashes: number): string {
  const lines = [
    `inputs sent:         ${f.cases} connections (handshake ${f.byFamily.handshake}, frames ${f.byFamily.frames}, messages ${f.byFamily.messages}), ${f.writes} writes, ${(f.bytes / 2 ** 20).toFixed(1)} MiB, ${f.seconds.toFixed(1)} s`,
    `crashes:             ${crashes}`,
    `hung connections:    ${f.hung}`,
    `honest frames lost:  ${h.lostBytes} bytes (${h.sessions} ack=1 sessions sent ${h.sentBytes} bytes of audio, ${h.ackedBytes} acknowledged)`,
    `honest closed early: ${JSON.stringify(h.unexpectedCloses)}`,
    'outcomes (HTTP status before the upgrade, close code after):',
    ...Object.entries(f.outcomes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `  ${k.padEnd(30)} ${v}`),
  ];
  return lines.join('\n');
}
