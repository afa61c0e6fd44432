// A full disk, for real: the spool (or the local store) on a small tmpfs that live sessions fill.
// Used by test/fault-disk-full.test.ts (short) and scripts/fault-disk-full.ts (long). Needs root
// (mount); `canMount()` says why not.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { parseWav } from '../../src/formats/wav.js';
import { parseSegment } from '../../src/spool/journal.js';
import { startService, type ChildService } from './service.js';
import { fetchWithin } from './wait.js';

/** Undefined when tmpfs can be mounted here, else the reason it cannot. */
export function canMount(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs';
  return undefined;
}

export function mountTmpfs(dir: string, bytes: number): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
}

/** Grows (or shrinks) a mounted tmpfs: the way a test "frees space". */
export function resizeTmpfs(dir: string, bytes: number): void {
  execFileSync('mount', ['-o', `remount,size=${bytes}`, dir]);
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir]);
  } catch {
    // not mounted
  }
}

/** One session's audio: PCM16 whose bytes are a function of (session, offset), 100 ms a message. */
export function pcmChunk(session: number, offset: number, bytes = 3200): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (session * 31 + ((offset + i) >> 1) * 7 + ((offset + i) & 1) * 101) & 0xff;
  return b;
}

export interface Streamer {
  ws: WebSocket;
  sent: number;
  acked: number;
  closed: { code: number; reason: string } | null;
}

export async function openStreamers(svc: ChildService, prefix: string, n: number): Promise<Streamer[]> {
  return Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<Streamer>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/v1/audio/stream?uid=${prefix}${i}&ack=1&codec=pcm16&sample_rate=16000`);
          const s: Streamer = { ws, sent: 0, acked: 0, closed: null };
          ws.on('message', (d: Buffer) => {
            if (d.readUInt32LE(0) === 202) s.acked = (JSON.parse(d.subarray(4).toString()) as { bytes: number }).bytes;
          });
          ws.on('close', (code, reason) => (s.closed = { code, reason: reason.toString() }));
          ws.once('open', () => resolve(s));
          ws.once('error', reject);
        }),
    ),
  );
}

/**
 * Sends 100 ms messages to every open streamer while its socket buffer is small (a paused server
 * stops reading: the client's buffer grows and it waits — TCP backpressure), every 20 ms, until
 * `stop()` is true or `ms` have passed.
 */
export async function pump(ss: Streamer[], ms: number, stop: () => boolean | Promise<boolean> = () => false): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !(await stop())) {
    ss.forEach((s, i) => {
      if (s.ws.readyState !== s.ws.OPEN || s.ws.bufferedAmount > 64 * 1024) return;
      s.ws.send(pcmChunk(i, s.sent));
      s.sent += 3200;
    });
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Bytes of `uid`'s audio in the local store (WAV chunks in time order), and how many match what was sent. */
export function storedPcm(storeDir: string, uid: string, session: number): { bytes: number; matching: number } {
  const root = join(storeDir, 'chunks', uid);
  const files: string[] = [];
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    // Dirents, not a stat per name: the store is written while we read it, and its temporary
    // files (.NAME.tmp) are renamed away between a readdir and a stat.
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.wav')) files.push(p);
    }
  };
  walk(root);
  const start = (p: string): number => Number(p.slice(p.lastIndexOf('/') + 1, -'.wav'.length));
  files.sort((a, b) => start(a) - start(b));
  let bytes = 0;
  let matching = 0;
  for (const f of files) {
    const s = parseWav(readFileSync(f)).samples;
    const pcm = Buffer.from(s.buffer, s.byteOffset, s.byteLength);
    const want = pcmChunk(session, bytes, pcm.length);
    for (let i = 0; i < pcm.length && pcm[i] === want[i]; i++) matching++;
    bytes += pcm.length;
  }
  return { bytes, matching };
}

/** Journal segments whose last record is torn (bytes past the last whole record). */
export function tornSegments(spoolDir: string): string[] {
  const dir = join(spoolDir, 'journal');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => {
    const buf = readFileSync(join(dir, f));
    return parseSegment(buf).validBytes !== buf.length;
  });
}

export async function readyz(svc: ChildService): Promise<{ status: number; reason?: string }> {
  const r = await fetchWithin(`${svc.baseUrl}/readyz`, 5000);
  const body = (await r.json().catch(() => ({}))) as { reason?: string };
  return body.reason ? { status: r.status, reason: body.reason } : { status: r.status };
}

/** Process CPU (cores) over `ms`, from /proc/PID/stat. */
export async function coresOver(svc: ChildService, ms: number): Promise<number> {
  const c0 = svc.cpuSeconds()!;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  return (svc.cpuSeconds()! - c0) / ((Date.now() - t0) / 1000);
}

/** Log lines at `warn` or above that mention `what` (the service logs JSON lines). */
export function warnLines(logFile: string, what: RegExp): number {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => /"level":"(warn|error)"/.test(l) && what.test(l)).length;
}

export { startService, type ChildService };
