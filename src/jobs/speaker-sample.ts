// Speaker sample extraction (DESIGN §3.4): read a conversation's stored chunks back, decode the
// wanted time range and store it as a mono PCM16 WAV at `{uid}/people_profiles/{person}/{id}.wav`.
// Stateless and CPU-bound: it runs on a piscina thread (workers/speaker-sample-job.ts), and the
// tests call it directly.
//
// Timeline. A chunk `chunks/{uid}/{conv}/{start}.{ext}` starts at the wall-clock time in its name:
// its sample j plays at start + j / rate. A WAV chunk holds `frames` samples. An LC3 chunk of F
// frames covers F × frame duration: it is decoded the way dlc3 does it (one decoder from its first
// frame, the codec delay trimmed from the front), plus one packet-loss-concealment frame
// (decode(null)) at the end, which yields the codec-delay samples the last real frame leaves
// pending — so consecutive chunks of a session join without a hole. Durations come from the
// uploader's metadata (frames with frame_us or sample_rate; else `duration`), and only when that
// is missing from the chunk itself.
//
// Coverage. The range must be covered by stored chunks, allowing a hole of up to one frame plus
// a millisecond of name rounding (a chunk name is rounded to the millisecond and may have been
// stepped by 1 ms when taken); anything less is "not uploaded yet" (ready: false) and the caller
// retries. A chunk that starts within that tolerance of where the previous one ended is placed
// right after it (no sample lost or doubled at a join); otherwise at its own start, the hole
// left silent. Where chunks overlap, the earlier one's audio is kept.
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { Lc3Decoder, Lc3Error, loadLc3 } from '../../wasm/lc3.js';
import { parseLc3File, type Lc3Frames } from '../formats/lc3file.js';
import { encodeWav, parseWav, WavFormatError } from '../formats/wav.js';
import { inspectChunk } from '../spool/format.js';
import { ID_PATTERN, parseObjectName, SpoolInputError, type ChunkExt } from '../spool/names.js';
import { ObjectNotFoundError, type ObjectStore, type StoredObject } from '../store/types.js';

export interface SpeakerSampleRequest {
  uid: string;
  /** The conversation id the audio is STORED under (may be '_'). */
  storageConversationId: string;
  personId: string;
  requestId: string;
  /** Absolute unix ms of the wanted range. */
  startMs: number;
  endMs: number;
  /** The conversation the sample belongs to (object metadata only; default storageConversationId). */
  conversationId?: string;
}

export type ExtractResult =
  | { ready: true; object: string; samples: number; sampleRate: number; startMs: number; endMs: number }
  | { ready: false; reason: string }
  | { failed: true; reason: string };

export interface ExtractOptions {
  /** Longest sample in seconds (default 10): a longer range is cut to this, centred on its middle. */
  maxSeconds?: number;
  /** Where the WAV is written before the upload (default the OS temp directory). */
  tmpDir?: string;
}

export const DEFAULT_MAX_SECONDS = 10;

/** The object a speaker sample is stored as. */
export function speakerSampleObjectName(uid: string, personId: string, requestId: string): string {
  return `${uid}/people_profiles/${personId}/${requestId}.wav`;
}

/** A chunk as listed, with its place on the timeline (ms). */
interface ChunkRef {
  name: string;
  ext: ChunkExt;
  startMs: number;
  endMs: number;
  /** From the metadata; undefined when it has none. */
  sampleRate: number | undefined;
  /** Hole allowed next to it: one frame + 1 ms of name rounding. */
  tolMs: number;
  /** The bytes, when they had to be read to learn the duration. */
  data?: Buffer;
}

class Failed extends Error {}
class NotReady extends Error {}

function posInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,12}$/.test(v)) return undefined;
  const n = Number(v);
  return n > 0 ? n : undefined;
}

/** Duration (ms), sample rate and frame length (ms) from the uploader's metadata, or null. */
function fromMetadata(ext: ChunkExt, md: Record<string, string>): { durMs: number; sampleRate: number | undefined; frameMs: number } | null {
  const sampleRate = posInt(md.sample_rate);
  const frames = md.frames !== undefined && /^\d{1,12}$/.test(md.frames) ? Number(md.frames) : undefined;
  const frameUs = posInt(md.frame_us);
  const frameMs = ext === 'lc3' ? (frameUs ?? 10_000) / 1000 : sampleRate ? 1000 / sampleRate : 0;
  if (ext === 'lc3' && md.codec === 'lc3' && frames !== undefined && frameUs !== undefined) {
    return { durMs: (frames * frameUs) / 1000, sampleRate, frameMs };
  }
  if (ext === 'wav' && md.codec === 'pcm16' && frames !== undefined && sampleRate !== undefined) {
    return { durMs: (frames * 1000) / sampleRate, sampleRate, frameMs };
  }
  const d = md.duration !== undefined && /^\d+(\.\d+)?$/.test(md.duration) ? Number(md.duration) : NaN;
  if ((md.codec === 'lc3' || md.codec === 'pcm16') && Number.isFinite(d)) return { durMs: d * 1000, sampleRate, frameMs };
  return null;
}

async function readChunk(store: ObjectStore, name: string): Promise<Buffer> {
  try {
    return await store.read(name);
  } catch (e) {
    if (e instanceof ObjectNotFoundError) throw new NotReady(`chunk ${name} disappeared while being read`);
    throw e; // a store error: the caller retries
  }
}

async function toRef(store: ObjectStore, o: StoredObject): Promise<ChunkRef | null> {
  const p = parseObjectName(o.name);
  if (!p) return null;
  const m = fromMetadata(p.ext, o.metadata);
  if (m) {
    return { name: o.name, ext: p.ext, startMs: p.startMs, endMs: p.startMs + m.durMs, sampleRate: m.sampleRate, tolMs: m.frameMs + 1 };
  }
  // No usable metadata: look at the chunk itself (an unreadable one counts as absent).
  const data = await readChunk(store, o.name);
  try {
    const info = inspectChunk(data, p.ext);
    const frameMs = info.format?.kind === 'lc3' ? info.format.frameUs / 1000 : 1000 / info.sampleRate;
    return {
      name: o.name,
      ext: p.ext,
      startMs: p.startMs,
      endMs: p.startMs + info.duration * 1000,
      sampleRate: info.sampleRate,
      tolMs: frameMs + 1,
      data,
    };
  } catch {
    return null;
  }
}

/**
 * Samples [a, b) (chunk coordinates, b ≤ frames × frame samples) of a parsed mono LC3 chunk, as
 * one decoder from the first frame gives them (bit-exact with decoding the whole chunk).
 */
function decodeLc3Range(lc3: Lc3Frames, a: number, b: number): Int16Array {
  const { header, frames } = lc3;
  const mod = loadLc3();
  const dec = new Lc3Decoder(header, mod);
  try {
    const fs = dec.frameSamples;
    const delay = mod.delaySamples(header);
    const pcm = new Int16Array(Math.max(0, b - a));
    // Decoded output position d is chunk sample d − delay; frames past the end are concealed.
    const count = b > a ? Math.ceil((b + delay) / fs) : 0;
    for (let i = 0; i < count; i++) {
      const out = dec.decode(i < frames.length ? frames[i]! : null);
      const s0 = i * fs - delay;
      const lo = Math.max(a, s0);
      const up = Math.min(b, s0 + fs);
      if (up > lo) pcm.set(out.subarray(lo - s0, up - s0), lo - a);
    }
    return pcm;
  } finally {
    dec.close();
  }
}

function failed(reason: string): ExtractResult {
  return { failed: true, reason };
}

/**
 * Extracts the request's range (clipped to `maxSeconds`, centred) from the stored chunks and
 * stores it as a WAV. ready: false when the range is not covered by stored audio yet; failed for
 * requests that can never succeed (bad ids or range, mixed sample rates, undecodable chunks).
 * Store errors are thrown (the caller retries). Idempotent: the same request stores the same bytes.
 */
export async function extractSpeakerSample(store: ObjectStore, req: SpeakerSampleRequest, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const ids: [string, unknown][] = [
    ['uid', req?.uid],
    ['storageConversationId', req?.storageConversationId],
    ['personId', req?.personId],
    ['requestId', req?.requestId],
  ];
  if (req?.conversationId !== undefined) ids.push(['conversationId', req.conversationId]);
  for (const [what, v] of ids) {
    if (typeof v !== 'string' || !ID_PATTERN.test(v)) return failed(`invalid ${what} ${JSON.stringify(v)}: must match ${ID_PATTERN.source}`);
  }
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  if (!(maxSeconds > 0 && Number.isFinite(maxSeconds))) return failed(`invalid maxSeconds ${String(maxSeconds)}`);
  if (!Number.isFinite(req.startMs) || !Number.isFinite(req.endMs) || req.startMs < 0 || !(req.endMs > req.startMs)) {
    return failed(`invalid range ${String(req.startMs)}..${String(req.endMs)} ms`);
  }
  // Clip to maxSeconds around the middle; whole milliseconds from here on.
  let startMs = Math.round(req.startMs);
  let endMs = Math.round(req.endMs);
  const maxMs = Math.round(maxSeconds * 1000);
  if (endMs - startMs > maxMs) {
    startMs = Math.round((req.startMs + req.endMs) / 2 - maxMs / 2);
    endMs = startMs + maxMs;
  }
  if (endMs <= startMs) return failed(`range ${req.startMs}..${req.endMs} ms is shorter than a millisecond`);

  try {
    return await extract(store, req, startMs, endMs, opts);
  } catch (e) {
    if (e instanceof NotReady) return { ready: false, reason: e.message };
    if (e instanceof Failed || e instanceof Lc3Error || e instanceof WavFormatError || e instanceof SpoolInputError) {
      return failed((e as Error).message);
    }
    throw e;
  }
}

async function extract(store: ObjectStore, req: SpeakerSampleRequest, startMs: number, endMs: number, opts: ExtractOptions): Promise<ExtractResult> {
  const { uid, storageConversationId: conv } = req;
  const range = `${startMs}..${endMs} ms`;

  // 1. Which chunks overlap the range, and do they cover it (metadata only, mostly)?
  const listed = (await store.list(`chunks/${uid}/${conv}/`)).filter((o) => {
    const p = parseObjectName(o.name);
    return p !== null && p.uid === uid && p.conversationId === conv && p.startMs < endMs;
  });
  const refs: ChunkRef[] = [];
  for (const o of listed) {
    const r = await toRef(store, o);
    if (r && r.endMs > startMs && r.endMs > r.startMs) refs.push(r);
  }
  refs.sort((x, y) => x.startMs - y.startMs || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  if (refs.length === 0) return { ready: false, reason: `no stored audio of ${uid}/${conv} overlaps ${range} yet` };
  let cursor = startMs;
  let prevTol = 0;
  for (const r of refs) {
    if (r.endMs <= cursor) continue;
    if (r.startMs > cursor + Math.max(prevTol, r.tolMs)) {
      return { ready: false, reason: `audio of ${uid}/${conv} from ${Math.round(cursor)} to ${r.startMs} ms (in ${range}) is not stored yet` };
    }
    cursor = r.endMs;
    prevTol = r.tolMs;
  }
  if (cursor < endMs - prevTol) {
    return { ready: false, reason: `audio of ${uid}/${conv} after ${Math.round(cursor)} ms (in ${range}) is not stored yet` };
  }
  const rates = new Set(refs.map((r) => r.sampleRate).filter((r) => r !== undefined));
  if (rates.size > 1) return failed(`chunks overlapping ${range} have different sample rates (${[...rates].join(', ')} Hz)`);

  // 2. Decode and place every overlapping chunk on the output timeline.
  let sampleRate = [...rates][0];
  let out: Int16Array | null = null;
  let n = 0;
  let tolSamples = 0;
  let filled = 0; // output samples [0, filled) are decided
  let prevEnd: number | undefined; // output index where the previous chunk's audio ended
  let hole = 0; // largest silent gap left between or around chunks
  for (const r of refs) {
    const data = r.data ?? (await readChunk(store, r.name));
    let length: number;
    let rate: number;
    let piece: (a: number, b: number) => Int16Array;
    if (r.ext === 'wav') {
      const w = parseWav(data);
      if (w.channels !== 1) throw new Failed(`chunk ${r.name} has ${w.channels} channels, speaker samples need mono`);
      length = w.samples.length;
      rate = w.sampleRate;
      piece = (a, b) => w.samples.subarray(a, b);
    } else {
      const lc3 = parseLc3File(data, false);
      if (lc3.header.channels !== 1) throw new Failed(`chunk ${r.name} has ${lc3.header.channels} channels, speaker samples need mono`);
      length = lc3.frames.length * loadLc3().frameSamples(lc3.header);
      rate = lc3.header.sampleRate;
      piece = (a, b) => decodeLc3Range(lc3, a, b);
    }
    sampleRate ??= rate;
    if (rate !== sampleRate) throw new Failed(`chunk ${r.name} is at ${rate} Hz, the others at ${sampleRate} Hz`);
    if (!out) {
      n = Math.round(((endMs - startMs) * sampleRate) / 1000);
      if (n === 0) return failed(`range ${range} holds no sample at ${sampleRate} Hz`);
      out = new Int16Array(n);
    }
    tolSamples = Math.max(tolSamples, Math.ceil((r.tolMs * sampleRate) / 1000));
    const nominal = Math.round(((r.startMs - startMs) * sampleRate) / 1000);
    const off = prevEnd !== undefined && Math.abs(nominal - prevEnd) <= tolSamples ? prevEnd : nominal;
    const from = Math.max(filled, off, 0);
    const to = Math.min(n, off + length);
    if (to > from) {
      hole = Math.max(hole, from - filled);
      out.set(piece(from - off, to - off), from);
      filled = to;
    }
    prevEnd = Math.max(prevEnd ?? -Infinity, off + length);
  }
  hole = Math.max(hole, n - filled);
  if (!out || hole > tolSamples + 1) {
    throw new Failed(`the stored chunks of ${uid}/${conv} hold less audio in ${range} than their metadata says`);
  }

  // 3. Store it (same request → same bytes → same object).
  const wav = encodeWav(sampleRate!, 1, out);
  const sha256 = createHash('sha256').update(wav).digest('hex');
  const object = speakerSampleObjectName(uid, req.personId, req.requestId);
  const result: ExtractResult = { ready: true, object, samples: n, sampleRate: sampleRate!, startMs, endMs };
  const existing = await store.stat(object);
  if (existing && existing.size === wav.length && existing.metadata.sha256 === sha256) return result;
  const metadata: Record<string, string> = {
    codec: 'pcm16',
    sample_rate: String(sampleRate),
    frames: String(n),
    duration: (n / sampleRate!).toFixed(3),
    person_id: req.personId,
    conversation_id: req.conversationId ?? conv,
    storage_conversation_id: conv,
    request_id: req.requestId,
    start_ms: String(startMs),
    end_ms: String(endMs),
  };
  const tmp = join(opts.tmpDir ?? tmpdir(), `.speaker-sample-${process.pid}-${threadId}-${randomBytes(6).toString('hex')}.wav`);
  try {
    await writeFile(tmp, wav);
    await store.putFile(object, tmp, { contentType: 'audio/wav', metadata, size: wav.length, sha256 });
  } finally {
    await rm(tmp, { force: true });
  }
  return result;
}
