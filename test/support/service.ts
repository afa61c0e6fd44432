// Starts the real service in-process on a free loopback port, with temporary directories.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { loadConfig, type Config } from '../../src/config.js';
import { startService, type Service } from '../../src/serve.js';

export interface TestService extends Service {
  dir: string;
  url(path: string): string;
  ws(path: string, headers?: Record<string, string>): Promise<WebSocket>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  metricSum(name: string): Promise<number>;
  close(): Promise<void>;
}

export async function startTestService(over: Partial<Record<keyof Config, string>> = {}, env: Record<string, string> = {}): Promise<TestService> {
  const dir = mkdtempSync(join(tmpdir(), 'lc3p-'));
  const cfg = loadConfig({}, { PORT: '0', HOST: '127.0.0.1', SHARDS: '2', SLOTS_PER_SHARD: '512', SPOOL_DIR: join(dir, 'spool'), STORE_DIR: join(dir, 'store'), LOG_LEVEL: 'warn', ...over });
  const svc = await startService(cfg, env);
  const base = `127.0.0.1:${svc.port}`;
  const scrape = async () => (await fetch(`http://${base}/metrics`)).text();
  let closed = false;
  return {
    ...svc,
    dir,
    url: (p) => `http://${base}${p}`,
    ws: (p, headers) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${base}${p}`, { headers: headers ?? {} });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      }),
    metric: async (name, labels = {}) => {
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      for (const line of (await scrape()).split('\n')) {
        if (!line.startsWith(name)) continue;
        const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m && m[1] === name && want.every((w) => (m[2] ?? '').includes(w))) return Number(m[3]);
      }
      return 0;
    },
    metricSum: async (name) => {
      let sum = 0;
      for (const line of (await scrape()).split('\n')) {
        const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m && m[1] === name) sum += Number(m[3]);
      }
      return sum;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await svc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `fn` until it returns true (or fails after `ms`). */
export async function until(fn: () => Promise<boolean> | boolean, ms = 10000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

/** A pusher-protocol message: u32 LE header + payload. */
export function pusherMsg(header: number, payload: Uint8Array | string = new Uint8Array(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32LE(header, 0);
  body.copy(out, 4);
  return out;
}

export function audioMsg(unixSeconds: number, audio: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + audio.length);
  out.writeUInt32LE(101, 0);
  out.writeDoubleLE(unixSeconds, 4);
  Buffer.from(audio).copy(out, 12);
  return out;
}
