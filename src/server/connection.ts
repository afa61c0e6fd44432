// One WebSocket session on the main thread: parses only the message header, writes each
// message as a record into the session's ring slot, pauses the socket when the ring is full
// (TCP backpressure — never a drop), and on close hands everything accepted to the shard
// before releasing the slot.
//
// A message larger than one record (a 101 of 1 s of 16 kHz PCM is 32 KB; after a reconnect the
// Omi client sends everything it buffered, up to 10 MiB, at once) is written in pieces as the
// ring drains: audio at sample or frame boundaries, each piece stamped with its own first-sample
// time; JSON as PART records the shard joins. Memory per connection stays bounded by what ws
// has assembled (one message, ≤ MAX_MESSAGE_BYTES) plus one socket read: the socket is paused
// while a message is still being written.
import type { WebSocket } from 'ws';
import { Code, PART } from '../shard/ring.js';
import type { ShardHandle } from '../shard/supervisor.js';
import { CONVERSATION_RE, type SessionInit } from '../session/protocol.js';
import { plausibleTimestamp, SessionRate, type LimitSettings } from './limits.js';

export interface ConnectionHooks {
  reject(reason: string): void;
  audioBytes(n: number): void;
  pausedDelta(d: number): void;
  /** Bytes of messages read from sockets and not yet all in a ring (pusher_pending_message_bytes). */
  heldDelta(d: number): void;
  closed(c: Connection): void;
  /** True while the spool is full: no new record may enter a ring. */
  spoolFull(): boolean;
  /** Call flush() on this connection once the spool has room again. */
  waitSpool(c: Connection): void;
  /** The server's idle-sweep counter (stamped per message; cheaper than reading the clock). */
  now(): number;
  /** A 101's timestamp was not within MAX_CLOCK_SKEW_S and was replaced by the arrival time. */
  timestampReplaced?(): void;
}

export interface ConnectionLimits {
  /** Payload bytes per record when a message is split (pieceBytes(RING_BYTES)). */
  piece: number;
  /** The largest record (maxRecordPayload(RING_BYTES)): a message up to this size goes whole while the ring has room. */
  record: number;
  /** MAX_JSON_BYTES: a larger 102/103/104/105 or device text message is closed with 1009. */
  maxJsonBytes: number;
  /** SEND_BUFFER_BYTES: replies a client leaves unread past this close it with 1008. */
  sendBufferBytes: number;
  /** Per-connection rates and the clock-skew bound (src/server/limits.ts); unset: none. */
  rate?: Pick<LimitSettings, 'MAX_MESSAGES_PER_S' | 'MAX_AUDIO_S_PER_S' | 'MAX_MESSAGE_BYTES' | 'MAX_CLOCK_SKEW_S'>;
}

/** A message (or what is left of it) waiting to be written into the ring. */
interface Pending {
  code: number;
  arrival: number;
  buf: Uint8Array;
  /** Next byte to write, and the end of the message. */
  off: number;
  end: number;
  /** Most bytes per record (a multiple of the audio's sample or frame size). */
  step: number;
  /** Audio pieces: first-sample time (unix s) of byte `stampOff`; NaN when records carry no stamp. */
  stamp: number;
  stampOff: number;
  bytesPerSecond: number;
  /** JSON split into parts: every record but the last carries PART. */
  parts: boolean;
}

/** After a 1008 for unread replies, the socket is destroyed this long after the close frame was queued. */
const NOT_READING_KILL_MS = 1000;

export class Connection {
  readonly ws: WebSocket;
  readonly shard: ShardHandle;
  readonly slot: number;
  readonly init: SessionInit;
  readonly generation: number;
  lastSeen: number;
  /** For the session's open and close log lines (src/server/session-log.ts): integer counters only. */
  readonly openedAt = Date.now();
  messages = 0;
  audioBytesIn = 0;
  /** Set by the first close this side starts: why (a rejection reason, 'drain'…), code, reason. */
  closing: { by: string; code: number; reason: string } | undefined;
  /** Messages read from the socket while the ring was full (bounded: the socket is paused). */
  private pending: Pending[] = [];
  private paused = false;
  /** Sweep tick at which the socket was paused (see rescue()). */
  private pausedAt = 0;
  private ended = false;
  private released = false;
  private readonly hooks: ConnectionHooks;
  private readonly limits: ConnectionLimits;
  /** Bytes of one audio sample (PCM16) or frame (LC3): pieces of audio are whole units. */
  private readonly unit: number;
  /** From `init`, read per message: own fields, so the hot path never loads through the init object. */
  private readonly device: boolean;
  private readonly lc3: boolean;
  private readonly bytesPerSecond: number;
  private readonly rate: SessionRate | undefined;
  /** Closed for exceeding a rate: what it still sends is not accepted. */
  private limited = false;
  /** Date.now() of the message being handled: read once per message, for the rates and every record's arrival. */
  private nowMs = 0;

  constructor(ws: WebSocket, shard: ShardHandle, slot: number, init: SessionInit, hooks: ConnectionHooks, limits: ConnectionLimits) {
    this.ws = ws;
    this.shard = shard;
    this.slot = slot;
    this.init = init;
    this.generation = shard.generation;
    this.hooks = hooks;
    this.limits = limits;
    this.unit = init.codec === 'lc3' ? init.frameBytes : 2;
    this.device = init.endpoint === 'device';
    this.lc3 = init.codec === 'lc3';
    this.bytesPerSecond = init.codec === 'lc3' ? (init.frameBytes * 1e6) / init.frameUs : init.sampleRate * 2;
    this.lastSeen = hooks.now();
    this.nowMs = Date.now(); // the OPEN record's arrival
    this.rate = limits.rate ? new SessionRate(limits.rate, this.bytesPerSecond, this.nowMs) : undefined;
    // The session parameters are the slot's first record. Usually small, but a uid with many
    // webhook and app URLs can exceed a record: then they go as PART records like large JSON.
    const open = Buffer.from(JSON.stringify(init));
    this.push(Code.OPEN, open, 0, open.length, limits.piece, true);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the socket itself after these (1009 for an oversized message, 1002/1007 otherwise).
      const reason = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'malformed';
      this.closing ??= { by: reason, code: 0, reason: err.message };
      this.hooks.reject(reason);
    });
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Closes with a code and reason, counting the rejection. */
  fail(code: number, reason: string, counted: string): void {
    this.hooks.reject(counted);
    this.close(code, reason, counted);
  }

  /** `by`: why, for the close log line ('drain', 'shard_restart', or the rejection reason). */
  close(code: number, reason: string, by = 'server'): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.closing ??= { by, code, reason };
    this.ws.close(code, reason.slice(0, 120));
  }

  /**
   * Sends a `u32 header + UTF-8 body` reply (201, 202). A client that does not read its replies
   * would grow the server's outgoing buffer without end: past SEND_BUFFER_BYTES it is closed with
   * 1008, and destroyed shortly after (it will not read the close frame either).
   */
  reply(header: number, body: string): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const n = Buffer.byteLength(body);
    if (ws.bufferedAmount + 4 + n > this.limits.sendBufferBytes) {
      this.fail(1008, `client is not reading: more than ${this.limits.sendBufferBytes} bytes of replies unread`, 'not_reading');
      setTimeout(() => ws.terminate(), NOT_READING_KILL_MS).unref();
      return;
    }
    const msg = Buffer.allocUnsafe(4 + n);
    msg.writeUInt32LE(header, 0);
    msg.write(body, 4);
    ws.send(msg, { binary: true });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.ended || this.limited) return;
    this.messages++;
    this.lastSeen = this.hooks.now();
    this.nowMs = Date.now();
    if (this.rate && !this.rate.message(this.nowMs)) return this.overRate('message');
    if (this.device) this.onDevice(data, isBinary);
    else this.onPusher(data, isBinary);
  }

  private onPusher(data: Buffer, isBinary: boolean): void {
    if (!isBinary) return this.fail(1003, 'text message where binary is required', 'text_not_binary');
    if (data.length < 4) return this.fail(1003, 'message shorter than its 4-byte header', 'malformed');
    const header = data.readUInt32LE(0);
    switch (header) {
      case Code.HEARTBEAT:
        return;
      case Code.AUDIO: {
        const audio = data.length - 12;
        if (audio < 0) return this.fail(1003, 'audio (101) needs an 8-byte timestamp', 'malformed');
        if (!this.wholeFrames(audio)) return;
        if (this.rate && !this.rate.audioBytes(audio, this.nowMs)) return this.overRate('audio');
        // The timestamp names the stored chunk: a client clock in 1970 or 2100 must not.
        if (this.limits.rate && !plausibleTimestamp(data.readDoubleLE(4), this.nowMs, this.limits.rate.MAX_CLOCK_SKEW_S)) {
          data.writeDoubleLE(this.nowMs / 1000, 4);
          this.hooks.timestampReplaced?.();
        }
        this.hooks.audioBytes(audio);
        this.audioBytesIn += audio;
        // One record while the ring has room for it (the cheapest), else pieces as the ring drains.
        if (data.length - 4 <= this.limits.record && this.writeWhole(header, data, 4, data.length)) return;
        return this.pushAudio(data);
      }
      case Code.TRANSCRIPT:
      case Code.CONVERSATION:
      case Code.PROCESS:
      case Code.SPEAKER_SAMPLE:
        if (!this.jsonFits(data.length - 4, header)) return;
        return this.push(header, data, 4, data.length, this.limits.piece, true);
      default:
        return this.fail(1003, `unknown header ${header}`, 'unknown_header');
    }
  }

  /** Over MAX_MESSAGES_PER_S or MAX_AUDIO_S_PER_S: 1008, nothing more accepted, destroyed shortly after. */
  private overRate(what: 'message' | 'audio'): void {
    const r = this.limits.rate!;
    this.limited = true;
    if (what === 'message') this.fail(1008, `more than MAX_MESSAGES_PER_S (${r.MAX_MESSAGES_PER_S}) messages per second`, 'message_rate');
    else this.fail(1008, `more than MAX_AUDIO_S_PER_S (${r.MAX_AUDIO_S_PER_S}) seconds of audio per second`, 'audio_rate');
    const ws = this.ws;
    setTimeout(() => ws.terminate(), NOT_READING_KILL_MS).unref();
  }

  private jsonFits(bytes: number, header: number | string): boolean {
    if (bytes <= this.limits.maxJsonBytes) return true;
    this.fail(1009, `message ${header} is ${bytes} bytes, more than MAX_JSON_BYTES (${this.limits.maxJsonBytes})`, 'oversized');
    return false;
  }

  private onDevice(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      if (!this.jsonFits(data.length, 'text')) return;
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        return this.fail(1007, 'text message is not valid JSON', 'invalid_json');
      }
      const m = msg as { type?: unknown; id?: unknown };
      if (m?.type !== 'conversation' || typeof m.id !== 'string') {
        return this.fail(1007, 'text message must be {"type":"conversation","id":"…"}', 'invalid_json');
      }
      if (!CONVERSATION_RE.test(m.id)) return this.fail(1007, `conversation id must match ${CONVERSATION_RE.source}`, 'bad_conversation_id');
      const id = Buffer.from(m.id);
      this.push(Code.CONVERSATION, id, 0, id.length, id.length, false);
      return;
    }
    if (data.length <= 2) return; // keep-alive
    if (!this.wholeFrames(data.length)) return;
    if (this.rate && !this.rate.audioBytes(data.length, this.nowMs)) return this.overRate('audio');
    this.hooks.audioBytes(data.length);
    this.audioBytesIn += data.length;
    this.push(Code.FRAMES, data, 0, data.length, this.audioStep(this.limits.piece), false);
  }

  private wholeFrames(bytes: number): boolean {
    if (bytes % this.unit === 0) return true;
    this.fail(1007, this.lc3 ? `audio is not whole ${this.unit}-byte LC3 frames (${bytes} bytes)` : `PCM16 audio has an odd byte count (${bytes})`, 'bad_frame_size');
    return false;
  }

  /** Whole samples or frames that fit in `room` bytes. */
  private audioStep(room: number): number {
    return Math.max(this.unit, room - (room % this.unit));
  }

  /** A 101 larger than one record: pieces of whole samples/frames, each with its first-sample time. */
  private pushAudio(data: Buffer): void {
    const ts = data.readDoubleLE(4);
    const arrival = this.nowMs;
    // The shard files audio with a bad timestamp at its arrival time; so do the pieces.
    const stamp = Number.isFinite(ts) && ts > 0 ? ts : arrival / 1000;
    this.enqueue({ code: Code.AUDIO, arrival, buf: data, off: 12, end: data.length, step: this.audioStep(this.limits.piece - 8), stamp, stampOff: 12, bytesPerSecond: this.bytesPerSecond, parts: false });
  }

  /** The fast path: the whole message as one record, now; false when it must wait or be split. */
  private writeWhole(code: number, buf: Uint8Array, off: number, end: number): boolean {
    return end - off <= this.limits.record && this.pending.length === 0 && !this.hooks.spoolFull() && this.shard.write(this.slot, code, this.nowMs, buf, off, end - off);
  }

  private push(code: number, buf: Uint8Array, off: number, end: number, step: number, parts: boolean): void {
    if (this.writeWhole(code, buf, off, end)) return;
    // Too large for one record, or the ring (or spool) is full: keep the message (the Buffer ws
    // gave us; no copy) and write it in records of at most `step` bytes as the ring drains (never
    // a whole-ring record: that could only be written into an empty ring at offset 0).
    this.enqueue({ code, arrival: this.nowMs, buf, off, end, step, stamp: NaN, stampOff: 0, bytesPerSecond: 0, parts });
  }

  private enqueue(p: Pending): void {
    this.pending.push(p);
    this.hooks.heldDelta(p.buf.byteLength);
    if (this.pending.length === 1) this.flush();
    if (this.pending.length > 0 && !this.paused) {
      // Stop reading the socket until this message is in the ring: TCP backpressure.
      this.paused = true;
      this.pausedAt = this.hooks.now();
      this.hooks.pausedDelta(1);
      this.ws.pause();
    }
  }

  /** Writes the next record of `p` (a piece of it, or all that is left); false when the ring is full. */
  private writeNext(p: Pending): boolean {
    const n = Math.min(p.end - p.off, p.step);
    const ok =
      p.stamp === p.stamp
        ? this.shard.writeStamped(this.slot, p.code, p.arrival, p.stamp + (p.off - p.stampOff) / p.bytesPerSecond, p.buf, p.off, n)
        : this.shard.write(this.slot, p.parts && p.off + n < p.end ? p.code | PART : p.code, p.arrival, p.buf, p.off, n);
    if (ok) p.off += n;
    return ok;
  }

  /** Called when the shard reports it drained this slot, or the spool has room again. */
  flush(): void {
    while (this.pending.length > 0) {
      if (this.hooks.spoolFull()) {
        this.hooks.waitSpool(this);
        return;
      }
      const p = this.pending[0]!;
      if (!this.writeNext(p)) {
        // Ask to be told when the shard drains, then try once more: the shard may have drained
        // the whole ring between the failed write and the flag, and would then never look at
        // this slot again (a lost wake-up that left a socket paused for good). If the retry still
        // fails, records remain in the ring, and the drain that consumes them sees the flag.
        this.shard.producer.markWaiting(this.slot);
        if (!this.writeNext(p)) return;
      }
      if (p.off >= p.end) {
        this.pending.shift();
        this.hooks.heldDelta(-p.buf.byteLength);
      }
    }
    if (this.paused) {
      this.paused = false;
      this.hooks.pausedDelta(-1);
      if (!this.ended) this.ws.resume();
    }
    if (this.ended) void this.finish();
  }

  /**
   * The idle sweep's safety net: a socket paused on a full ring for `minTicks` sweeps or more is
   * flushed again. The shard's "drained" event normally resumes it within milliseconds, so if this
   * moves a message, that event was lost (a bug), and without this the session would hang for
   * good (paused sockets are exempt from the idle timeout). True when it moved something.
   */
  rescue(tick: number, minTicks: number): boolean {
    if (!this.paused || this.pending.length === 0 || tick - this.pausedAt < minTicks || this.hooks.spoolFull()) return false;
    const before = this.pending.length;
    const head = this.pending[0]!;
    const at = head.off;
    this.flush();
    return this.pending.length < before || head.off > at;
  }

  private onClose(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.pending.length === 0) void this.finish();
    // else: flush() finishes once the shard has taken every pending message.
  }

  /** Everything accepted is in the ring: let the shard close the session, then free the slot. */
  private async finish(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      if (this.shard.up) await this.shard.api.close(this.slot);
    } finally {
      if (this.paused) this.hooks.pausedDelta(-1);
      this.paused = false;
      this.shard.release(this.slot, this.generation);
      this.hooks.closed(this);
    }
  }

  /** The shard died: nothing to hand over; the slot is gone with its arena. */
  abandon(): void {
    this.ended = true;
    this.released = true;
    for (const p of this.pending) this.hooks.heldDelta(-p.buf.byteLength);
    this.pending = [];
    if (this.paused) this.hooks.pausedDelta(-1);
    this.paused = false;
    this.hooks.closed(this);
  }
}
