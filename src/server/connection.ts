// One WebSocket session on the main thread: parses only the message header, writes each
// message as a record into the session's ring slot, pauses the socket when the ring is full
// (TCP backpressure — never a drop), and on close hands everything accepted to the shard
// before releasing the slot.
import type { WebSocket } from 'ws';
import { Code } from '../shard/ring.js';
import type { ShardHandle } from '../shard/supervisor.js';
import { CONVERSATION_RE, type SessionInit } from '../session/protocol.js';

export interface ConnectionHooks {
  reject(reason: string): void;
  audioBytes(n: number): void;
  pausedDelta(d: number): void;
  closed(c: Connection): void;
  /** True while the spool is full: no new record may enter a ring. */
  spoolFull(): boolean;
  /** Call flush() on this connection once the spool has room again. */
  waitSpool(c: Connection): void;
  /** The server's idle-sweep counter (stamped per message; cheaper than reading the clock). */
  now(): number;
}

interface Pending {
  code: number;
  arrival: number;
  buf: Uint8Array;
  off: number;
  len: number;
}

export class Connection {
  readonly ws: WebSocket;
  readonly shard: ShardHandle;
  readonly slot: number;
  readonly init: SessionInit;
  readonly generation: number;
  lastSeen: number;
  /** Messages read from the socket while the ring was full (bounded: the socket is paused). */
  private pending: Pending[] = [];
  private paused = false;
  /** Sweep tick at which the socket was paused (see rescue()). */
  private pausedAt = 0;
  private ended = false;
  private released = false;
  private readonly hooks: ConnectionHooks;

  constructor(ws: WebSocket, shard: ShardHandle, slot: number, init: SessionInit, hooks: ConnectionHooks) {
    this.ws = ws;
    this.shard = shard;
    this.slot = slot;
    this.init = init;
    this.generation = shard.generation;
    this.hooks = hooks;
    this.lastSeen = hooks.now();
    const open = Buffer.from(JSON.stringify(init));
    // The ring is empty at lease time and the init is small: this cannot fail.
    shard.write(slot, Code.OPEN, Date.now(), open, 0, open.length);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the socket itself after these (1009 for an oversized message, 1002/1007 otherwise).
      this.hooks.reject(err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'malformed');
    });
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Closes with a code and reason, counting the rejection. */
  fail(code: number, reason: string, counted: string): void {
    this.hooks.reject(counted);
    this.close(code, reason);
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(code, reason.slice(0, 120));
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.ended) return;
    this.lastSeen = this.hooks.now();
    if (this.init.endpoint === 'device') this.onDevice(data, isBinary);
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
        this.hooks.audioBytes(audio);
        break;
      }
      case Code.TRANSCRIPT:
      case Code.CONVERSATION:
      case Code.PROCESS:
      case Code.SPEAKER_SAMPLE:
        break;
      default:
        return this.fail(1003, `unknown header ${header}`, 'unknown_header');
    }
    this.push(header, data, 4, data.length - 4);
  }

  private onDevice(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
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
      this.push(Code.CONVERSATION, id, 0, id.length);
      return;
    }
    if (data.length <= 2) return; // keep-alive
    if (!this.wholeFrames(data.length)) return;
    this.hooks.audioBytes(data.length);
    this.push(Code.FRAMES, data, 0, data.length);
  }

  private wholeFrames(bytes: number): boolean {
    if (this.init.codec === 'lc3') {
      if (bytes % this.init.frameBytes !== 0) {
        this.fail(1007, `audio is not whole ${this.init.frameBytes}-byte LC3 frames (${bytes} bytes)`, 'bad_frame_size');
        return false;
      }
    } else if (bytes % 2 !== 0) {
      this.fail(1007, `PCM16 audio has an odd byte count (${bytes})`, 'bad_frame_size');
      return false;
    }
    return true;
  }

  private push(code: number, buf: Uint8Array, off: number, len: number): void {
    const arrival = Date.now();
    if (this.pending.length === 0 && !this.hooks.spoolFull() && this.shard.write(this.slot, code, arrival, buf, off, len)) return;
    // Ring (or spool) full: keep the message (the Buffer ws gave us; no copy), stop reading the socket.
    this.pending.push({ code, arrival, buf, off, len });
    if (!this.paused) {
      this.paused = true;
      this.pausedAt = this.hooks.now();
      this.hooks.pausedDelta(1);
      this.ws.pause();
    }
    // The shard may have drained between the failed write and now.
    this.flush();
  }

  /** Called when the shard reports it drained this slot, or the spool has room again. */
  flush(): void {
    while (this.pending.length > 0) {
      if (this.hooks.spoolFull()) {
        this.hooks.waitSpool(this);
        return;
      }
      const p = this.pending[0]!;
      if (!this.shard.write(this.slot, p.code, p.arrival, p.buf, p.off, p.len)) {
        // Ask to be told when the shard drains, then try once more: the shard may have drained
        // the whole ring between the failed write and the flag, and would then never look at
        // this slot again (a lost wake-up that left a socket paused for good). If the retry still
        // fails, records remain in the ring, and the drain that consumes them sees the flag.
        this.shard.producer.markWaiting(this.slot);
        if (!this.shard.write(this.slot, p.code, p.arrival, p.buf, p.off, p.len)) return;
      }
      this.pending.shift();
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
    this.flush();
    return this.pending.length < before;
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
    this.pending = [];
    if (this.paused) this.hooks.pausedDelta(-1);
    this.paused = false;
    this.hooks.closed(this);
  }
}
