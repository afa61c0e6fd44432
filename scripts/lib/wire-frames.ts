// WebSocket at the byte level, for the wire fuzzer and the flood (below the ws library, which
// would refuse to send most of what these tools need to send): client handshakes with any header
// wrong, frames with any bit wrong (RSV, opcode, mask, a length that lies), and a reader for what
// the server answers (HTTP status, then its frames: close code and reason).
import { randomBytes } from 'node:crypto';

export interface FrameSpec {
  fin?: boolean;
  /** The three RSV bits (0..7); anything but 0 is a protocol error without an extension. */
  rsv?: number;
  opcode: number;
  /** Clients must mask (RFC 6455 §5.1); false sends an unmasked client frame. */
  masked?: boolean;
  payload?: Uint8Array;
  /** Force the 16- or 64-bit length form (a non-minimal length), or declare this length instead of the payload's. */
  lengthForm?: 'auto' | '16' | '64';
  declaredLength?: number | bigint;
}

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/** One frame as a client would send it (or, with the spec's knobs, as no client may). */
export function encodeFrame(f: FrameSpec): Buffer {
  const payload = f.payload ?? new Uint8Array(0);
  const masked = f.masked ?? true;
  const len = f.declaredLength ?? payload.length;
  const n = typeof len === 'bigint' ? len : BigInt(len);
  const form = f.lengthForm && f.lengthForm !== 'auto' ? f.lengthForm : n < 126n ? '7' : n < 65536n ? '16' : '64';
  const extra = form === '7' ? 0 : form === '16' ? 2 : 8;
  const head = Buffer.alloc(2 + extra + (masked ? 4 : 0));
  head[0] = ((f.fin ?? true) ? 0x80 : 0) | (((f.rsv ?? 0) & 7) << 4) | (f.opcode & 0x0f);
  const m = masked ? 0x80 : 0;
  if (form === '7') head[1] = m | Number(n);
  else if (form === '16') {
    head[1] = m | 126;
    head.writeUInt16BE(Number(n & 0xffffn), 2);
  } else {
    head[1] = m | 127;
    head.writeBigUInt64BE(n & 0xffffffffffffffffn, 2);
  }
  if (!masked) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  key.copy(head, 2 + extra);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([head, body]);
}

/** A close frame's payload: u16 code + UTF-8 reason (raw bytes allowed: invalid UTF-8 on purpose). */
export function closePayload(code: number, reason: Uint8Array | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : Buffer.from(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code & 0xffff, 0);
  r.copy(b, 2);
  return b;
}

export interface HandshakeSpec {
  path: string;
  method?: string;
  httpVersion?: string;
  host?: string | null;
  key?: string | null;
  version?: string | null;
  upgrade?: string | null;
  connection?: string | null;
  headers?: [string, string][];
}

/** The client's opening handshake (RFC 6455 §4.1); null drops a header, a string replaces it. */
export function handshakeRequest(h: HandshakeSpec): string {
  const lines = [`${h.method ?? 'GET'} ${h.path} ${h.httpVersion ?? 'HTTP/1.1'}`];
  const add = (name: string, v: string | null | undefined, dflt: string) => {
    if (v !== null) lines.push(`${name}: ${v ?? dflt}`);
  };
  add('Host', h.host, '127.0.0.1');
  add('Upgrade', h.upgrade, 'websocket');
  add('Connection', h.connection, 'Upgrade');
  add('Sec-WebSocket-Key', h.key, randomBytes(16).toString('base64'));
  add('Sec-WebSocket-Version', h.version, '13');
  for (const [k, v] of h.headers ?? []) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** What the server answered on one connection, as far as it got. */
export interface ServerReply {
  /** HTTP status of the handshake answer (101 when upgraded), 0 before a whole status line. */
  status: number;
  /** Close code the server sent (1005 for a close frame without one), 0 when it sent none. */
  closeCode: number;
  closeReason: string;
  /** Binary/text messages received after the upgrade (202 acks and 201 replies in this protocol). */
  messages: Buffer[];
}

/**
 * An incremental reader of a server's bytes: the HTTP response head, then unmasked frames.
 * Feed it every chunk; it never throws on what a (buggy) server might send, it stops parsing.
 */
export class ServerReader {
  readonly reply: ServerReply = { status: 0, closeCode: 0, closeReason: '', messages: [] };
  private buf: Buffer = Buffer.alloc(0);
  private headDone = false;
  private broken = false;

  push(chunk: Buffer): void {
    if (this.broken) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.headDone) {
      const end = this.buf.indexOf('\r\n\r\n');
      const firstLine = /^HTTP\/1\.[01] (\d{3})/.exec(this.buf.subarray(0, Math.min(this.buf.length, 64)).toString('latin1'));
      if (firstLine) this.reply.status = Number(firstLine[1]);
      if (end < 0) return;
      this.headDone = true;
      this.buf = this.buf.subarray(end + 4);
      if (this.reply.status !== 101) {
        this.broken = true; // a refusal: the rest is its body
        return;
      }
    }
    this.frames();
  }

  private frames(): void {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const op = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b[1]! & 0x80 || len > 1 << 26) {
        this.broken = true; // servers never mask; not something to parse further
        return;
      }
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      if (op === OP.CLOSE) {
        this.reply.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.reply.closeReason = payload.subarray(2).toString('utf8');
      } else if (op === OP.BINARY || op === OP.TEXT) this.reply.messages.push(Buffer.from(payload));
    }
  }
}
