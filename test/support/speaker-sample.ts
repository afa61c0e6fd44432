// Helpers of the speaker-sample tests: real chunks made by the real spool and uploaded by the
// real uploader into a local store, and a reference decode of whole chunks.
import { createHash } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lc3Decoder, Lc3Encoder, loadLc3 } from '../../wasm/lc3.js';
import { parseLc3File } from '../../src/formats/lc3file.js';
import { parseWav } from '../../src/formats/wav.js';
import { SpoolQuota } from '../../src/spool/quota.js';
import { ShardSpool } from '../../src/spool/shard-spool.js';
import { Uploader } from '../../src/spool/uploader.js';
import type { ObjectStore } from '../../src/store/types.js';

/** Deterministic, never-silent mono PCM16: two tones, a slow sweep and a little noise. */
export function signal(rate: number, seconds: number, seed = 7): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    s = (s * 1103515245 + 12345) >>> 0;
    const v =
      6000 * Math.sin(2 * Math.PI * 440 * t) +
      3000 * Math.sin(2 * Math.PI * (300 + 40 * t) * t) +
      2000 * Math.sin(2 * Math.PI * 1250 * t) +
      ((s >>> 16) / 65536 - 0.5) * 1500;
    out[i] = Math.round(v);
  }
  return out;
}

export interface SessionSpec {
  uid: string;
  conversationId: string;
  /** First sample, unix ms. */
  t0: number;
  pcm: Int16Array;
  chunkSeconds: number;
  /** LC3 format; omitted: a PCM16 session (WAV chunks). */
  lc3?: { frameUs: number; sampleRate: number; frameBytes: number };
  /** PCM sample rate (PCM sessions). */
  sampleRate?: number;
}

/** Encodes the PCM frame by frame, as a device does (frame i is samples [i·fs, (i+1)·fs)). */
export function encodeFrames(pcm: Int16Array, f: { frameUs: number; sampleRate: number; frameBytes: number }): Buffer {
  const enc = new Lc3Encoder(f);
  try {
    const count = Math.ceil(pcm.length / enc.frameSamples);
    const out = Buffer.alloc(count * f.frameBytes);
    for (let i = 0; i < count; i++) enc.encodeInto(pcm, out.subarray(i * f.frameBytes), i * enc.frameSamples);
    return out;
  } finally {
    enc.close();
  }
}

/**
 * Writes a session through a real ShardSpool into a spool under `dir`, seals it, and uploads the
 * chunks with the real Uploader. Returns the sealed chunk names (= object names), sorted.
 */
export async function storeSession(dir: string, store: ObjectStore, s: SessionSpec): Promise<string[]> {
  const spoolDir = join(dir, `spool-${s.uid}-${s.conversationId}-${s.t0}`);
  const quota = new SpoolQuota(1 << 30);
  const sealed: string[] = [];
  const sp = new ShardSpool({ dir: spoolDir, shard: 0, quota, fsyncMs: 20, chunkSeconds: s.chunkSeconds, onSealed: (c) => sealed.push(c.name) });
  const ses = sp.openSession({
    sessionId: 1,
    uid: s.uid,
    conversationId: s.conversationId,
    format: s.lc3 ? { kind: 'lc3', ...s.lc3 } : { kind: 'pcm16', sampleRate: s.sampleRate ?? 16000 },
  });
  if (s.lc3) {
    const frames = encodeFrames(s.pcm, s.lc3);
    ses.append(frames, frames.length / s.lc3.frameBytes, s.t0);
  } else {
    ses.append(Buffer.from(s.pcm.buffer, s.pcm.byteOffset, s.pcm.byteLength), s.pcm.length, s.t0);
  }
  await sp.close();
  const up = new Uploader({ dir: spoolDir, store, rescanMs: 0 });
  await up.start();
  const res = await up.drain(30_000);
  await up.close();
  if (res.remaining !== 0) throw new Error(`upload did not finish: ${JSON.stringify(res)} (${readdirSync(spoolDir).join(',')})`);
  return sealed.sort();
}

/** Copies an object (bytes and metadata) from one store to another: "uploads" it to `to` later. */
export async function copyObject(from: ObjectStore, to: ObjectStore, name: string, tmpDir: string): Promise<void> {
  const o = await from.stat(name);
  if (!o) throw new Error(`no object ${name}`);
  const buf = await from.read(name);
  const path = join(tmpDir, `copy-${createHash('sha256').update(name).digest('hex').slice(0, 16)}`);
  writeFileSync(path, buf);
  await to.putFile(name, path, { contentType: o.contentType ?? 'application/octet-stream', metadata: o.metadata, size: buf.length, sha256: o.metadata.sha256! });
}

/** A whole LC3 chunk decoded (one decoder, codec delay trimmed, one concealed frame for the tail): frames × fs samples. */
export function decodeWholeLc3(buf: Uint8Array): { pcm: Int16Array; sampleRate: number } {
  const { header, frames } = parseLc3File(buf);
  const mod = loadLc3();
  const dec = new Lc3Decoder(header, mod);
  try {
    const fs = dec.frameSamples;
    const delay = mod.delaySamples(header);
    const all = new Int16Array((frames.length + 1) * fs);
    frames.forEach((f, i) => all.set(dec.decode(f), i * fs));
    all.set(dec.decode(null), frames.length * fs);
    return { pcm: all.slice(delay, delay + frames.length * fs), sampleRate: header.sampleRate };
  } finally {
    dec.close();
  }
}

/** A whole stored chunk's PCM (LC3 decoded as above, WAV as is). */
export async function chunkPcm(store: ObjectStore, name: string): Promise<Int16Array> {
  const buf = await store.read(name);
  return name.endsWith('.lc3') ? decodeWholeLc3(buf).pcm : parseWav(buf).samples.slice();
}

export function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Rejects when `p` takes longer than `ms`. */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
