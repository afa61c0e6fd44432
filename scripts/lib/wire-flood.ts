// The connection flood (issue 10 §7): many connection attempts with complete handshakes, the
// upgraded ones held open so the service reaches MAX_CONNECTIONS, and slow handshakes (half a
// request line, then nothing) that only the handshake deadline can end. The figures say what each
// attempt got (101, 503, 429, a close at accept…) and how long the slow ones lived.
import { connect, type Socket } from 'node:net';
import { handshakeRequest, ServerReader } from './wire-frames.js';

export interface FloodOptions {
  port: number;
  host?: string;
  /** Connection attempts with a complete handshake. */
  attempts: number;
  /** Attempts in flight at once. */
  concurrency: number;
  /** Slow handshakes, opened before the flood and left stalled. */
  slow: number;
  /** An attempt that got no answer in this long is counted as unanswered (and dropped). */
  answerTimeoutMs?: number;
  /** How long to wait for the slow handshakes to be closed by the server. */
  slowDeadlineMs: number;
  /** Called every ~250 ms during the flood (e.g. to sample the service's RSS). */
  sample?: () => void;
}

export interface FloodFigures {
  attempts: number;
  /** "101", "http 503", "closed before an answer", "connect error ECONNRESET", "no answer" → count. */
  outcomes: Record<string, number>;
  /** Upgraded sessions held open at the peak. */
  heldPeak: number;
  slow: { opened: number; closedByServer: number; answers: Record<string, number>; medianMs: number; maxMs: number };
  seconds: number;
}

function attempt(o: FloodOptions, i: number): Promise<{ outcome: string; socket?: Socket }> {
  return new Promise((resolve) => {
    const reader = new ServerReader();
    let done = false;
    const s = connect({ port: o.port, host: o.host ?? '127.0.0.1' });
    const finish = (outcome: string, keep: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!keep) s.destroy();
      resolve(keep ? { outcome, socket: s } : { outcome });
    };
    const timer = setTimeout(() => finish('no answer', false), o.answerTimeoutMs ?? 10000);
    s.on('connect', () => s.write(handshakeRequest({ path: `/v1/audio/stream?uid=flood${i}` })));
    s.on('data', (d: Buffer) => {
      reader.push(d);
      const st = reader.reply.status;
      if (st === 101) finish('101', true);
      else if (st !== 0) finish(`http ${st}`, false);
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(reader.reply.status ? `http ${reader.reply.status}` : `connect error ${e.code ?? e.message}`, false));
    s.on('close', () => finish(reader.reply.status ? `http ${reader.reply.status}` : 'closed before an answer', false));
  });
}

/** Slow handshakes: half a request line, then silence. Resolves when the server closed them all (or the deadline). */
function slowHandshakes(o: FloodOptions): { opened: Promise<void>; done: Promise<FloodFigures['slow']> } {
  const lives: number[] = [];
  const answers: Record<string, number> = {};
  let openedN = 0;
  const sockets: Socket[] = [];
  const opened = Promise.all(
    Array.from(
      { length: o.slow },
      (_, i) =>
        new Promise<void>((resolve) => {
          const t0 = Date.now();
          const reader = new ServerReader();
          const s = connect({ port: o.port, host: o.host ?? '127.0.0.1' }, () => {
            openedN++;
            s.write(`GET /v1/audio/stream?uid=slow${i}`); // …and never the rest
            resolve();
          });
          sockets.push(s);
          s.on('data', (d: Buffer) => reader.push(d));
          s.on('error', () => resolve());
          s.on('close', () => {
            lives.push(Date.now() - t0);
            const k = reader.reply.status ? `http ${reader.reply.status}` : 'closed without an answer';
            answers[k] = (answers[k] ?? 0) + 1;
            resolve();
          });
        }),
    ),
  ).then(() => undefined);
  const done = (async () => {
    await opened;
    const end = Date.now() + o.slowDeadlineMs;
    while (lives.length < o.slow && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    for (const s of sockets) s.destroy();
    const sorted = [...lives].sort((a, b) => a - b);
    return { opened: openedN, closedByServer: lives.length, answers, medianMs: sorted[Math.floor(sorted.length / 2)] ?? 0, maxMs: sorted.at(-1) ?? 0 };
  })();
  return { opened, done };
}

export async function runFlood(o: FloodOptions): Promise<FloodFigures> {
  const t0 = Date.now();
  const slow = slowHandshakes(o);
  await slow.opened;
  const outcomes: Record<string, number> = {};
  const held: Socket[] = [];
  let heldPeak = 0;
  let next = 0;
  const sampler = setInterval(() => o.sample?.(), 250);
  const worker = async () => {
    while (next < o.attempts) {
      const r = await attempt(o, next++);
      outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
      if (r.socket) {
        r.socket.on('error', () => {});
        held.push(r.socket);
        heldPeak = Math.max(heldPeak, held.length);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  clearInterval(sampler);
  o.sample?.();
  for (const s of held) s.destroy();
  const slowFigures = await slow.done;
  return { attempts: o.attempts, outcomes, heldPeak, slow: slowFigures, seconds: (Date.now() - t0) / 1000 };
}

export function formatFlood(f: FloodFigures): string {
  return [
    `connection attempts: ${f.attempts} in ${f.seconds.toFixed(1)} s, upgraded sessions held at the peak: ${f.heldPeak}`,
    ...Object.entries(f.outcomes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `  ${k.padEnd(28)} ${v}`),
    `slow handshakes:     ${f.slow.opened} opened, ${f.slow.closedByServer} closed by the server (median ${f.slow.medianMs} ms, max ${f.slow.maxMs} ms): ${JSON.stringify(f.slow.answers)}`,
  ].join('\n');
}
