// One session inside a shard: stores its audio, decodes it for its PCM consumers (webhooks, apps),
// indexes its transcripts, turns 104/105 into jobs, owns its tasks (TaskScope). Records arrive in
// order from the session's ring slot; payloads are views into shared memory valid only during the
// call.
//
// LC3 is decoded only while someone listens to PCM (the audio-bytes webhook, audio apps, the
// tests' PCM tap): the durable path stores the frames as sent, and speaker samples decode stored
// chunks later, so a storage-only session checks frame sizes and hands the frames on — no decoder
// state at all. The decoder is created at the first audio record that has a listener (and freed
// when none is left); a decoder started mid-stream is in the state of a fresh session's, its first
// frame overlapping silence, which is what packet-loss concealment produces for a lost frame.
import { checkFrameBytes, checkParams, Lc3Decoder, type Lc3Module } from '../../wasm/lc3.js';
import type { HttpClient } from '../http/client.js';
import { SessionConsumers, type QueueCounters, type SharedPool } from '../consumers/session-consumers.js';
import { UNNAMED_CONVERSATION } from '../spool/names.js';
import { Code, PART } from '../shard/ring.js';
import {
  checkConversationId,
  decodeUtf8,
  parseProcess,
  parseSpeakerSample,
  parseTranscript,
  ProtocolError,
  type SessionInit,
  type ShardEvent,
} from './protocol.js';
import { SegmentIndex, type ConversationClock } from './segment-index.js';
import { TaskScope } from './task-scope.js';

/** Where a session's audio goes (the spool; later webhooks and audio apps). */
export interface SessionSink {
  /** Raw audio as received (LC3 frames back to back, or PCM16LE); copy what you keep. */
  audio(data: Uint8Array, off: number, len: number, frames: number, firstSampleUnixMs: number): void;
  conversation(id: string, atUnixMs: number): void;
  close(): Promise<void>;
}

/** Decoded PCM consumers (realtime audio apps, audio-bytes webhooks; tests). */
export type PcmTap = (session: SessionInit, pcm: Int16Array) => void;

export interface SessionCounters {
  /** LC3 frames that reached the shard (every audio record of an LC3 session). */
  framesReceived: number;
  /** LC3 frames handed to the durable sink (sessions with private cloud sync). */
  framesStored: number;
  /** LC3 frames decoded (only while the session has a PCM consumer). */
  framesDecoded: number;
  decodeErrors: number;
  plcFrames: number;
  audioBytes: number;
  records: number;
  transcripts: number;
  speakerRequests: number;
  /** 105s whose segments could not be placed in the session's audio (unknown ids, no audio yet). */
  speakerUnresolved: number;
  /** Latency from arrival on the main thread to decoded, histogram of log2(ms) buckets. */
  latency: Uint32Array;
  /** Sum of those latencies, ms (the histogram's _sum). */
  latencySumMs: number;
}

export function newCounters(): SessionCounters {
  return { framesReceived: 0, framesStored: 0, framesDecoded: 0, decodeErrors: 0, plcFrames: 0, audioBytes: 0, records: 0, transcripts: 0, speakerRequests: 0, speakerUnresolved: 0, latency: new Uint32Array(LATENCY_BUCKETS), latencySumMs: 0 };
}

// Scratch to read the f64 timestamp without a per-message DataView (little-endian hosts only,
// as are all Node.js targets this runs on).
const tsScratch = new Float64Array(1);
const tsBytes = new Uint8Array(tsScratch.buffer);

/** Bucket i counts latencies < 2^i ms (last bucket: everything slower). */
export const LATENCY_BUCKETS = 16;

export interface SessionDeps {
  lc3: Lc3Module;
  emit: (ev: ShardEvent) => void;
  counters: SessionCounters;
  sink?: SessionSink | undefined;
  pcmTap?: PcmTap | undefined;
  /** The shard's outgoing HTTP pool and queue figures (webhooks and apps; absent: no consumers). */
  consumers?: { http: HttpClient; counters: QueueCounters; budgetBytes: number; pool?: SharedPool | undefined } | undefined;
}

export class Session {
  readonly init: SessionInit;
  readonly slot: number;
  readonly scope = new TaskScope();
  /** Created at the first audio with a PCM listener, freed when none is left (see the top). */
  private decoder: Lc3Decoder | undefined;
  private pcmTap: PcmTap | undefined;
  private readonly deps: SessionDeps;
  /** Webhooks and apps of this uid (undefined: none, and nothing is collected for them). */
  private readonly consumers: SessionConsumers | undefined;
  private readonly segments = new SegmentIndex();
  /** The conversation the audio is filed under now, and when its first sample was. */
  private clock: ConversationClock;
  /** Parts of a message too large for one record (PART records), joined at its last record. */
  private parts: Buffer[] | undefined;
  /** Set once a protocol error closed the session: later records are ignored. */
  failed = false;
  frames = 0;
  private startMs: number | undefined;
  /** Duration of one "frame": an LC3 frame, or one PCM sample. */
  private readonly frameMs: number;

  constructor(slot: number, init: SessionInit, deps: SessionDeps) {
    this.slot = slot;
    this.init = init;
    this.deps = deps;
    this.frameMs = init.codec === 'lc3' ? init.frameUs / 1000 : 1000 / init.sampleRate;
    this.clock = { id: init.conversationId ?? UNNAMED_CONVERSATION, firstAudioMs: undefined };
    this.pcmTap = deps.pcmTap;
    if (init.codec === 'lc3') {
      // Refuse parameters no decoder could take now, not at the first listener's first frame.
      checkParams({ frameUs: init.frameUs, sampleRate: init.sampleRate });
      checkFrameBytes(init.frameBytes);
    }
    const c = deps.consumers;
    if (c && init.consumers) {
      this.consumers = new SessionConsumers({
        uid: init.uid,
        sampleRate: init.sampleRate,
        settings: init.consumers,
        scope: this.scope,
        http: c.http,
        counters: c.counters,
        budgetBytes: c.budgetBytes,
        pool: c.pool,
        onError: (msg) => deps.emit({ t: 'log', msg: `session ${init.id}: ${msg}` }),
      });
    }
  }

  get hasDecoder(): boolean {
    return this.decoder !== undefined && !this.decoder.closed;
  }

  /** Someone takes this session's PCM now: its decoded LC3 (or its PCM16 as received). */
  get wantsPcm(): boolean {
    return this.pcmTap !== undefined || this.consumers?.wantsPcm === true;
  }

  /**
   * Switches the session's PCM tap on or off mid-session (settings are read once at the handshake
   * today, so the consumers themselves do not change; the tap can). Decoding starts or stops at
   * the next audio record.
   */
  setPcmTap(tap: PcmTap | undefined): void {
    this.pcmTap = tap;
  }

  handle(code: number, arrival: number, data: Uint8Array, off: number, len: number): void {
    if (this.failed) return;
    this.deps.counters.records++;
    if (code & PART) {
      // A JSON message larger than one record (the main thread bounds it by MAX_JSON_BYTES).
      (this.parts ??= []).push(Buffer.from(data.subarray(off, off + len)));
      return;
    }
    if (this.parts) {
      this.parts.push(Buffer.from(data.subarray(off, off + len)));
      const whole = Buffer.concat(this.parts);
      this.parts = undefined;
      data = whole;
      off = 0;
      len = whole.length;
    }
    try {
      switch (code) {
        case Code.FRAMES:
          // Devices send no timestamps: place the audio on the session's own timeline (start of
          // the session + audio so far), so chunk names follow the audio, not network jitter.
          this.startMs ??= arrival;
          this.audio(arrival, data, off, len, this.startMs + this.frames * this.frameMs);
          break;
        case Code.AUDIO: {
          // f64 LE unix seconds of the first sample, then audio. (Main checked len >= 8.)
          for (let i = 0; i < 8; i++) tsBytes[i] = data[off + i]!;
          const ts = tsScratch[0]!;
          this.audio(arrival, data, off + 8, len - 8, Number.isFinite(ts) && ts > 0 ? ts * 1000 : arrival);
          break;
        }
        case Code.CONVERSATION: {
          const id = checkConversationId(decodeUtf8(data.subarray(off, off + len), 'conversation id (103)'));
          this.deps.sink?.conversation(id, arrival);
          if (id !== this.clock.id) this.clock = { id, firstAudioMs: undefined };
          break;
        }
        case Code.TRANSCRIPT: {
          // memory_id is validated but never rebinds the conversation: that filed audio under stale ids in the Omi service.
          const tr = parseTranscript(data.subarray(off, off + len));
          this.deps.counters.transcripts++;
          this.segments.add(tr.segments, this.clock);
          this.consumers?.transcript(tr.segments);
          break;
        }
        case Code.PROCESS:
          this.deps.emit({ t: 'job', slot: this.slot, session: this.init.id, uid: this.init.uid, kind: 'process', msg: parseProcess(data.subarray(off, off + len)) });
          break;
        case Code.SPEAKER_SAMPLE:
          this.speakerSample(parseSpeakerSample(data.subarray(off, off + len)));
          break;
        default:
          throw new ProtocolError(1003, `unknown record code ${code}`);
      }
    } catch (err) {
      /* c8 ignore next */
      if (!(err instanceof ProtocolError)) throw err;
      this.failed = true;
      this.deps.emit({ t: 'close', slot: this.slot, code: err.closeCode, reason: err.message });
    }
  }

  private audio(arrival: number, data: Uint8Array, off: number, len: number, firstSampleMs: number): void {
    const c = this.deps.counters;
    c.audioBytes += len;
    this.clock.firstAudioMs ??= firstSampleMs;
    const consumers = this.consumers?.wantsPcm ? this.consumers : undefined;
    const tap = this.pcmTap;
    let frames: number;
    if (this.init.codec === 'lc3') {
      const fb = this.init.frameBytes;
      // The main thread cuts audio at frame boundaries; a record that is not whole frames would
      // misalign everything after it, decoded or stored.
      if (len % fb !== 0) throw new ProtocolError(1007, `audio is not whole ${fb}-byte LC3 frames (${len} bytes)`);
      frames = len / fb;
      c.framesReceived += frames;
      if (consumers !== undefined || tap !== undefined) this.decode(data, off, frames, consumers, tap);
      else if (this.decoder !== undefined) this.dropDecoder();
    } else {
      frames = len >> 1; // PCM16: one "frame" per sample
      if (consumers) consumers.pcm(data, off, len); // the PCM tap taps decoded LC3 only, as before
    }
    this.frames += frames;
    if (this.deps.sink) {
      this.deps.sink.audio(data, off, len, frames, firstSampleMs);
      if (this.init.codec === 'lc3') c.framesStored += frames;
    }
    const ms = Date.now() - arrival;
    const bucket = ms < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, 32 - Math.clz32(ms));
    c.latency[bucket]!++;
    c.latencySumMs += ms;
  }

  /** Every frame of one record in one call into wasm; the PCM (a view of wasm memory) to the listeners. */
  private decode(data: Uint8Array, off: number, frames: number, consumers: SessionConsumers | undefined, tap: PcmTap | undefined): void {
    const c = this.deps.counters;
    const dec = (this.decoder ??= new Lc3Decoder({ frameUs: this.init.frameUs, sampleRate: this.init.sampleRate }, this.deps.lc3));
    const before = dec.stats.errors;
    const beforePlc = dec.stats.plc;
    const pcm = dec.decodeFrames(data, off, this.init.frameBytes, frames);
    if (tap) tap(this.init, pcm);
    // Hand the consumers the bytes of the view: no copy, no new view.
    if (consumers) consumers.pcm(this.deps.lc3.heapU8(), pcm.byteOffset, pcm.byteLength);
    c.framesDecoded += frames;
    c.decodeErrors += dec.stats.errors - before;
    c.plcFrames += dec.stats.plc - beforePlc;
  }

  /** Nobody listens any more: free the decoder state (pusher_decoders_active counts it). */
  private dropDecoder(): void {
    this.decoder?.close();
    this.decoder = undefined;
  }

  /** A 105: the named segments placed in the stored audio, handed to the process-scoped job queue. */
  private speakerSample(req: { person_id: string; conversation_id: string; segment_ids: string[] }): void {
    this.deps.counters.speakerRequests++;
    const r = this.segments.resolve(req.segment_ids);
    if ('error' in r) {
      this.deps.counters.speakerUnresolved++;
      this.deps.emit({ t: 'log', msg: `session ${this.init.id}: speaker sample for ${req.person_id} not placed: ${r.error}` });
      return;
    }
    this.deps.emit({
      t: 'job',
      slot: this.slot,
      session: this.init.id,
      uid: this.init.uid,
      kind: 'speaker_sample',
      msg: { person_id: req.person_id, conversation_id: req.conversation_id, segment_ids: req.segment_ids, storage_conversation_id: r.storageConversationId, start_ms: r.startMs, end_ms: r.endMs },
    });
  }

  /**
   * The close cascade: abort tasks, free the decoder, hand the spool its seal. Returns leaked
   * tasks. The seal itself (final header, fsync, rename) is the spool's work — process-scoped
   * and durable, awaited by the shard's stop — so the slot need not wait for the disk.
   */
  async close(graceMs: number, leak = false): Promise<number> {
    const leaked = leak ? 0 : await this.scope.close(graceMs);
    if (!leak) this.consumers?.close();
    this.parts = undefined;
    if (!leak) this.decoder?.close();
    this.deps.sink?.close().catch((err: Error) => this.deps.emit({ t: 'log', msg: `session ${this.init.id}: spool close failed: ${err.message}` }));
    return leaked;
  }
}
