// The wire fuzzer's inputs, as fast-check arbitraries (seeded, so a run can be repeated): one
// case is one TCP connection's bytes and how they are cut into writes. Three families:
//   handshake  mutated opening handshakes (methods, versions, keys, headers, paths and queries,
//              truncations, oversized headers, random bytes)
//   frames     a valid handshake, then frame-level violations (reserved opcodes, RSV bits,
//              unmasked client frames, oversized or fragmented control frames, continuations
//              without a start, data frames inside a fragmented message, lengths that lie, bad
//              close frames, invalid UTF-8 in text)
//   messages   a valid handshake, then well-formed frames (often fragmented, pings interleaved)
//              carrying message-level mutations of the pusher and device protocols
import fc from 'fast-check';
import { closePayload, encodeFrame, handshakeRequest, OP, type HandshakeSpec } from './wire-frames.js';

export type Family = 'handshake' | 'frames' | 'messages';

export interface WireCase {
  family: Family;
  /** What the case does, for the summary (e.g. "frames/reserved-opcode"). */
  kind: string;
  /** Whether the bytes end with a complete, valid handshake (then we close politely if the server did not). */
  upgraded: boolean;
  bytes: Buffer;
  /** The last frame declares more bytes than are sent: the server is right to wait for them. */
  stallsMidFrame?: boolean;
  /** Offsets at which the bytes are cut into separate writes (TCP-level fragmentation). */
  cuts: number[];
}

const UIDS = 200;
const uid = fc.integer({ min: 0, max: UIDS - 1 }).map((i) => `fz${i}`);

type Endpoint = { path: string; device: boolean; frameBytes: number };
const endpoint: fc.Arbitrary<Endpoint> = fc.oneof(
  uid.map((u) => ({ path: `/v1/trigger/listen?uid=${u}&sample_rate=8000&codec=pcm16`, device: false, frameBytes: 2 })),
  uid.map((u) => ({ path: `/v1/trigger/listen?uid=${u}&sample_rate=16000&codec=lc3&frame_bytes=40`, device: false, frameBytes: 40 })),
  uid.map((u) => ({ path: `/v1/audio/stream?uid=${u}`, device: true, frameBytes: 30 })),
);

const badQuery = fc.constantFrom(
  '/v1/audio/stream',
  '/v1/audio/stream?uid=',
  '/v1/audio/stream?uid=../../etc',
  '/v1/audio/stream?uid=%00',
  `/v1/audio/stream?uid=${'a'.repeat(200)}`,
  '/v1/audio/stream?uid=a&codec=opus',
  '/v1/trigger/listen?uid=a&sample_rate=-1',
  '/v1/trigger/listen?uid=a&sample_rate=1e9',
  '/v1/trigger/listen?uid=a&codec=lc3&frame_bytes=9999',
  '/v1/trigger/listen?uid=a&codec=lc3&frame_us=1',
  '/v1/trigger/listen?uid=a&ack=2',
  '/v1/trigger/listen?uid=a&conversation_id=../x',
  '/v1/nowhere?uid=a',
  '/%2e%2e/v1/audio/stream?uid=a',
  '*',
  'http://evil/v1/audio/stream?uid=a',
);

const handshakeCase: fc.Arbitrary<WireCase> = fc.oneof(
  { weight: 10, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ family: 'handshake' as const, kind: 'handshake/random-bytes', upgraded: false, bytes: Buffer.concat([Buffer.from(b), Buffer.from('\r\n\r\n')]), cuts: [] })) },
  { weight: 40, arbitrary: fc
    .record({
      ep: endpoint,
      field: fc.constantFrom('method', 'httpVersion', 'key', 'version', 'upgrade', 'connection', 'host', 'path', 'header', 'bigHeader', 'lfOnly'),
      method: fc.constantFrom('POST', 'PUT', 'G ET', 'get', 'CONNECT'),
      httpVersion: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', 'HTTP/9'),
      key: fc.constantFrom(null, '', 'short', 'not base64 at all!!!!!!', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
      version: fc.constantFrom(null, '8', '14', 'abc', ''),
      upgrade: fc.constantFrom(null, 'h2c', 'websocket2', ''),
      connection: fc.constantFrom(null, 'close', 'keep-alive'),
      path: badQuery,
      header: fc.tuple(fc.constantFrom('X-A', 'Bad Header', 'X\u0001', 'Content-Length', 'Transfer-Encoding'), fc.constantFrom('1', 'chunked', '\u00ff\u00fe', 'x'.repeat(100))),
    })
    .map((r) => {
      const h: HandshakeSpec = { path: r.ep.path };
      if (r.field === 'method') h.method = r.method;
      else if (r.field === 'httpVersion') h.httpVersion = r.httpVersion;
      else if (r.field === 'key') h.key = r.key;
      else if (r.field === 'version') h.version = r.version;
      else if (r.field === 'upgrade') h.upgrade = r.upgrade;
      else if (r.field === 'connection') h.connection = r.connection;
      else if (r.field === 'host') h.host = null;
      else if (r.field === 'path') h.path = r.path;
      else if (r.field === 'header') h.headers = [r.header];
      else if (r.field === 'bigHeader') h.headers = [['X-Big', 'b'.repeat(40_000)]];
      let text = handshakeRequest(h);
      if (r.field === 'lfOnly') text = text.replace(/\r\n/g, '\n');
      return { family: 'handshake' as const, kind: `handshake/${r.field}`, upgraded: false, bytes: Buffer.from(text, 'latin1'), cuts: [] };
    }) },
  // A request cut short: the server's handshake deadline has to end it (kept rare: each holds a connection until then).
  { weight: 1, arbitrary: fc.tuple(endpoint, fc.double({ min: 0.05, max: 0.95, noNaN: true })).map(([ep, at]) => {
    const text = Buffer.from(handshakeRequest({ path: ep.path }));
    return { family: 'handshake' as const, kind: 'handshake/truncated', upgraded: false, bytes: text.subarray(0, Math.max(1, Math.floor(text.length * at))), cuts: [] };
  }) },
);

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const invalidUtf8 = fc.constantFrom(Buffer.from([0xc3, 0x28]), Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from('ok\xc0\xaf', 'latin1'));

const frameViolation: fc.Arbitrary<{ kind: string; frames: Buffer[] }> = fc.oneof(
  fc.record({ op: fc.constantFrom(3, 4, 5, 6, 7, 11, 12, 13, 14, 15), p: bytes(20) }).map(({ op, p }) => ({ kind: 'reserved-opcode', frames: [encodeFrame({ opcode: op, payload: p })] })),
  fc.record({ rsv: fc.integer({ min: 1, max: 7 }), p: bytes(20) }).map(({ rsv, p }) => ({ kind: 'rsv-bits', frames: [encodeFrame({ opcode: OP.BINARY, rsv, payload: p })] })),
  bytes(40).map((p) => ({ kind: 'unmasked', frames: [encodeFrame({ opcode: OP.BINARY, masked: false, payload: p })] })),
  fc.record({ op: fc.constantFrom(OP.PING, OP.PONG, OP.CLOSE), n: fc.integer({ min: 126, max: 4000 }) }).map(({ op, n }) => ({ kind: 'oversized-control', frames: [encodeFrame({ opcode: op, payload: Buffer.alloc(n, 1) })] })),
  bytes(10).map((p) => ({ kind: 'fragmented-control', frames: [encodeFrame({ opcode: OP.PING, fin: false, payload: p })] })),
  bytes(10).map((p) => ({ kind: 'orphan-continuation', frames: [encodeFrame({ opcode: OP.CONT, payload: p })] })),
  fc.tuple(bytes(10), bytes(10)).map(([a, b]) => ({ kind: 'interleaved-data', frames: [encodeFrame({ opcode: OP.BINARY, fin: false, payload: a }), encodeFrame({ opcode: OP.BINARY, payload: b })] })),
  invalidUtf8.map((p) => ({ kind: 'text-invalid-utf8', frames: [encodeFrame({ opcode: OP.TEXT, payload: p })] })),
  invalidUtf8.map((p) => ({ kind: 'fragmented-text-invalid-utf8', frames: [encodeFrame({ opcode: OP.TEXT, fin: false, payload: Buffer.from('{"a":') }), encodeFrame({ opcode: OP.CONT, payload: p })] })),
  fc.constantFrom(2n ** 63n + 5n, 2n ** 62n, 2n ** 40n, BigInt(64 << 20)).map((n) => ({ kind: 'length-lies-huge', frames: [encodeFrame({ opcode: OP.BINARY, declaredLength: n, lengthForm: '64' })] })),
  fc.record({ n: fc.integer({ min: 10, max: 2000 }), p: bytes(8) }).map(({ n, p }) => ({ kind: 'length-lies-short', frames: [encodeFrame({ opcode: OP.BINARY, declaredLength: p.length + n, payload: p })] })),
  // A heartbeat whose length is spelled in the 16- or 64-bit form (not minimal; RFC 6455 says MUST be).
  fc.constantFrom('16' as const, '64' as const).map((form) => ({ kind: 'non-minimal-length', frames: [encodeFrame({ opcode: OP.BINARY, lengthForm: form, payload: Buffer.from([100, 0, 0, 0]) })] })),
  fc.constantFrom(0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535).map((code) => ({ kind: 'close-bad-code', frames: [encodeFrame({ opcode: OP.CLOSE, payload: closePayload(code) })] })),
  fc.constant(0).map(() => ({ kind: 'close-one-byte', frames: [encodeFrame({ opcode: OP.CLOSE, payload: Buffer.from([3]) })] })),
  invalidUtf8.map((r) => ({ kind: 'close-invalid-utf8', frames: [encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000, r) })] })),
  bytes(64).map((b) => ({ kind: 'random-frame-bytes', frames: [b] })),
);

/** Pusher messages: valid, odd and wrong. Fatal ones end the session; the rest are accepted. */
function pusherMessage(frameBytes: number): fc.Arbitrary<{ opcode: number; payload: Buffer }> {
  const msg = (h: number, body: Buffer) => {
    const b = Buffer.alloc(4 + body.length);
    b.writeUInt32LE(h >>> 0, 0);
    body.copy(b, 4);
    return { opcode: OP.BINARY, payload: b };
  };
  const ts = fc.oneof(fc.constant(Date.now() / 1000), fc.constantFrom(0, -1, NaN, Infinity, 1e300, 4102444800, 1), fc.double());
  const audio = fc.tuple(ts, fc.integer({ min: 0, max: 40 }), fc.boolean()).map(([t, n, odd]) => {
    const b = Buffer.alloc(8 + n * frameBytes + (odd ? 1 : 0));
    b.writeDoubleLE(t, 0);
    return msg(101, b);
  });
  const json = fc.oneof(fc.json().map((j) => Buffer.from(j)), invalidUtf8, fc.constant(Buffer.from(JSON.stringify({ segments: [{ text: 'hi', start: 0, end: 1 }] }))));
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(msg(100, Buffer.alloc(0))) },
    { weight: 5, arbitrary: audio },
    { weight: 2, arbitrary: json.map((j) => msg(102, j)) },
    { weight: 2, arbitrary: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), fc.string()).map((s) => msg(103, Buffer.from(s))) },
    { weight: 1, arbitrary: json.map((j) => msg(104, j)) },
    { weight: 1, arbitrary: json.map((j) => msg(105, j)) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), bytes(20)).map(([h, b]) => msg(h, b)) },
    { weight: 1, arbitrary: bytes(3).map((b) => ({ opcode: OP.BINARY, payload: b })) },
    { weight: 1, arbitrary: fc.string().map((s) => ({ opcode: OP.TEXT, payload: Buffer.from(s) })) },
  );
}

function deviceMessage(frameBytes: number): fc.Arbitrary<{ opcode: number; payload: Buffer }> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.integer({ min: 1, max: 20 }).map((n) => ({ opcode: OP.BINARY, payload: Buffer.alloc(n * frameBytes, 0x5a) })) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 2 }).map((n) => ({ opcode: OP.BINARY, payload: Buffer.alloc(n) })) },
    { weight: 1, arbitrary: bytes(100).map((b) => ({ opcode: OP.BINARY, payload: b })) },
    { weight: 2, arbitrary: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), fc.string()).map((id) => ({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify({ type: 'conversation', id })) })) },
    { weight: 1, arbitrary: fc.json().map((j) => ({ opcode: OP.TEXT, payload: Buffer.from(j) })) },
  );
}

/** A message as frames: whole, or fragmented at random points with pings (and pongs) between fragments. */
function framed(m: { opcode: number; payload: Buffer }, cuts: number[], pings: boolean): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * m.payload.length)))].filter((c) => c > 0 && c < m.payload.length).sort((a, b) => a - b);
  if (at.length === 0) return [encodeFrame({ opcode: m.opcode, payload: m.payload })];
  const out: Buffer[] = [];
  let prev = 0;
  for (let i = 0; i <= at.length; i++) {
    const end = i < at.length ? at[i]! : m.payload.length;
    out.push(encodeFrame({ opcode: i === 0 ? m.opcode : OP.CONT, fin: i === at.length, payload: m.payload.subarray(prev, end) }));
    if (pings && i < at.length) out.push(encodeFrame({ opcode: i % 2 ? OP.PONG : OP.PING, payload: Buffer.from('p') }));
    prev = end;
  }
  return out;
}

/**
 * True when client bytes end inside a frame the server must wait for: walks the frames as a
 * server would, stopping at the first one it would refuse (RSV bits, reserved opcode, unmasked).
 */
export function endsMidFrame(b: Buffer, maxPayload = 16 * 2 ** 20): boolean {
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 2) return true;
    const op = b[off]! & 0x0f;
    if (b[off]! & 0x70 || (op > 2 && op < 8) || op > 10 || !(b[off + 1]! & 0x80)) return false;
    let len = b[off + 1]! & 0x7f;
    let head = 2;
    if (len === 126) {
      if (b.length - off < 4) return true;
      len = b.readUInt16BE(off + 2);
      head = 4;
    } else if (len === 127) {
      if (b.length - off < 10) return true;
      const big = b.readBigUInt64BE(off + 2);
      if (big > BigInt(maxPayload)) return false; // refused as too long (1009), not waited for
      len = Number(big);
      head = 10;
    }
    if (op >= 8 && len > 125) return false; // oversized control frame: refused
    if (len > maxPayload) return false;
    off += head + 4 + len;
    if (off > b.length) return true;
  }
  return false;
}

const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 });

function withHandshake(ep: Endpoint, frames: Buffer[], family: Family, kind: string, cuts: number[]): WireCase {
  const hs = Buffer.from(handshakeRequest({ path: ep.path }));
  const bytes = Buffer.concat([hs, ...frames]);
  return { family, kind, upgraded: true, bytes, cuts: [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b) };
}

const framesCase: fc.Arbitrary<WireCase> = fc.tuple(endpoint, frameViolation, cutsArb).map(([ep, v, cuts]) => ({
  ...withHandshake(ep, v.frames, 'frames', `frames/${v.kind}`, cuts),
  ...(endsMidFrame(Buffer.concat(v.frames)) ? { stallsMidFrame: true } : {}),
}));

const messagesCase: fc.Arbitrary<WireCase> = endpoint.chain((ep) =>
  fc
    .tuple(fc.array(fc.tuple(ep.device ? deviceMessage(ep.frameBytes) : pusherMessage(ep.frameBytes), cutsArb, fc.boolean()), { minLength: 1, maxLength: 6 }), cutsArb)
    .map(([msgs, cuts]) => withHandshake(ep, msgs.flatMap(([m, c, p]) => framed(m, c, p)), 'messages', `messages/${ep.device ? 'device' : 'pusher'}`, cuts)),
);

export const wireCase: fc.Arbitrary<WireCase> = fc.oneof({ weight: 3, arbitrary: handshakeCase }, { weight: 3, arbitrary: framesCase }, { weight: 4, arbitrary: messagesCase });

/** `n` cases from `seed`, generated in batches (the same seed gives the same cases). */
export function* wireCases(n: number, seed: number, batch = 1000): Generator<WireCase> {
  for (let done = 0, b = 0; done < n; b++) {
    const k = Math.min(batch, n - done);
    for (const c of fc.sample(wireCase, { numRuns: k, seed: seed + b })) yield c;
    done += k;
  }
}
