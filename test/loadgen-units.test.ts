// The load generator's parts: WebSocket framing, the timer wheel, workload/churn parsing, the
// test signal, and client behaviour against scripted servers (acks, replies, server closes,
// refused and hanging connects, full sockets, abrupt kills).
import t from 'tap';
import { createServer, type Socket } from 'node:net';
import * as wsModule from 'ws';
import { WebSocketServer, type WebSocket } from 'ws';
import { clientFrame, LoadGen, parseChurn, parseGroups, pusherPayload, runLoad, TimerWheel, unsentAudio } from '../scripts/lib/loadgen.js';
import { lc3Frames, pcmChunks, synthPcm } from '../scripts/lib/signal.js';

/** Polls until `fn` holds (generous: the machine may be busy); fails the test if it never does. */
async function until(t: { fail(msg: string): void }, what: string, fn: () => boolean, ms = 60000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Decodes client frames with ws's own parser (which insists on the mask bit). */
function parse(frames: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const Receiver = (wsModule as unknown as { Receiver: new (o: object) => NodeJS.WritableStream & NodeJS.EventEmitter }).Receiver;
  const r = new Receiver({ isServer: true, maxPayload: 1 << 20 });
  r.on('message', (d: Buffer) => out.push(Buffer.from(d)));
  r.write(frames);
  return out;
}

t.test('client frames: masked, binary, every length encoding', async (t) => {
  for (const n of [0, 30, 125, 126, 16012, 65535, 65536, 70000]) {
    const payload = Buffer.alloc(n, 7);
    const f = clientFrame(payload);
    t.equal(f[0], 0x82, `${n}: FIN + binary`);
    t.equal(f[1]! & 0x80, 0x80, `${n}: masked`);
    t.same(parse(f), [payload], `${n}: ws parses it back`);
  }
  t.equal(clientFrame(Buffer.from('x'), 1)[0], 0x81, 'text opcode');
  const p = pusherPayload(104, '{"a":1}');
  t.equal(p.readUInt32LE(0), 104);
  t.equal(p.subarray(4).toString(), '{"a":1}');
  t.same(pusherPayload(101, new Uint8Array([1, 2])), Buffer.from([101, 0, 0, 0, 1, 2]));
});

t.test('timer wheel: due items only, rounds beyond the horizon, catch-up', async (t) => {
  const w = new TimerWheel<string>(10, 8, 0);
  const ran: string[] = [];
  const run = (x: string, token: number) => ran.push(`${x}:${token}`);
  w.schedule('a', 5, 1);
  w.schedule('b', 15);
  w.schedule('far', 10 * 8 * 3 + 5); // three rounds later, same bucket as 'a'
  w.schedule('past', -100);
  t.equal(w.size, 4);
  t.equal(w.advance(4, run), 1, 'only what is due: the past item');
  t.same(ran, ['past:0']);
  t.equal(w.advance(5, run), 1, 'the current tick is looked at again');
  t.same(ran, ['past:0', 'a:1']);
  w.advance(100, run);
  t.same(ran, ['past:0', 'a:1', 'b:0'], 'far item still waiting its round');
  w.schedule('soon', 50); // already past: runs on the next advance
  t.equal(w.advance(100, run), 1);
  t.equal(w.advance(10_000, run), 1, 'a long gap: every bucket visited once');
  t.same(ran.slice(-2), ['soon:0', 'far:0']);
  t.equal(w.size, 0);
  // Items scheduled from inside run() for "now" wait for the next advance (no endless loop).
  let n = 0;
  const again = (x: string) => {
    n++;
    if (n < 3) w.schedule(x, 0);
  };
  w.schedule('loop', 10_000);
  w.advance(10_000, again);
  t.equal(n, 1);
  w.advance(10_000, again);
  w.advance(10_001, again);
  t.equal(n, 3);
});

t.test('workload and churn specs', async (t) => {
  t.same(parseGroups('device:10, omi-leak1 ,omi-leak2:3,idle,device+ack:2@50,device-pcm@max'), [
    { workload: 'device', clients: 10 },
    { workload: 'omi-leak1', clients: 30 },
    { workload: 'omi-leak2', clients: 3 },
    { workload: 'idle', clients: 100 },
    { workload: 'device', clients: 2, ack: true, rate: 50 },
    { workload: 'device-pcm', clients: 100, rate: Infinity },
  ]);
  t.same(parseGroups('omi-leak2'), [{ workload: 'omi-leak2', clients: 15 }]);
  t.throws(() => parseGroups('nope:3'), /bad workload "nope:3"/);
  t.throws(() => parseGroups('device:x'), /bad workload/);
  t.equal(parseChurn(undefined, 0.2), undefined);
  t.equal(parseChurn('off', 0.2), undefined);
  t.equal(parseChurn('0', 0.2), undefined);
  t.same(parseChurn('20-60', 0.2), { minS: 20, maxS: 60, killFraction: 0.2 });
  t.same(parseChurn('2.5', 1), { minS: 2.5, maxS: 2.5, killFraction: 1 });
  t.throws(() => parseChurn('soon', 0), /bad churn/);
});

t.test('test signal and its encodings', async (t) => {
  const pcm = synthPcm(8000, 0.5);
  t.equal(pcm.length, 4000);
  t.same(synthPcm(8000, 0.5), pcm, 'deterministic');
  t.ok(pcm.some((x) => Math.abs(x) > 5000), 'not silence');
  const frames = lc3Frames({ frameUs: 10000, sampleRate: 16000, frameBytes: 30 }, 0.5);
  t.equal(frames.length, 50);
  t.ok(frames.every((f) => f.length === 30));
  const chunks = pcmChunks(8000, 1, 4000);
  t.equal(chunks.length, 4);
  t.equal(chunks[0]!.length, 4000);
});

t.test('refuses non-loopback targets and bad churn', async (t) => {
  t.throws(() => new LoadGen({ host: '10.0.0.1', port: 1, groups: [] }), /loopback only/);
  const idle = new LoadGen({ port: 1, groups: [{ workload: 'idle', clients: 2 }] }).stats();
  t.same([idle.clients, idle.loopDelayP99Ms, idle.loopDelayMaxMs], [2, 0, 0], 'stats before start');
  t.throws(() => new LoadGen({ port: 1, groups: [], churn: { minS: 0, maxS: 1, killFraction: 0 } }), /churn needs/);
  t.throws(() => new LoadGen({ port: 1, groups: [], churn: { minS: 2, maxS: 1, killFraction: 0 } }), /churn needs/);
  t.throws(() => new LoadGen({ port: 1, groups: [], churn: { minS: 1, maxS: 1, killFraction: 2 } }), /churn needs/);
});

interface Scripted {
  port: number;
  wss: WebSocketServer;
  sockets: WebSocket[];
  close(): Promise<void>;
}

/** A ws server whose behaviour per connection is `onConn(ws, uid)`. */
async function scripted(onConn: (ws: WebSocket, uid: string, path: string) => void): Promise<Scripted> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', r));
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws, req) => {
    sockets.push(ws);
    ws.on('error', () => {});
    const url = new URL(req.url!, 'http://x');
    onConn(ws, url.searchParams.get('uid')!, url.pathname);
  });
  return {
    port: (wss.address() as { port: number }).port,
    wss,
    sockets,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

function msg(header: number, body: string): Buffer {
  return pusherPayload(header, body);
}

t.test('acks, replies and server closes are counted', async (t) => {
  const srv = await scripted((ws, uid) => {
    ws.send(Buffer.from([1, 2])); // too short for a header: ignored
    ws.send(msg(999, 'x')); // unknown header: ignored
    if (uid.startsWith('ack')) ws.send(msg(202, JSON.stringify({ frames: 7, bytes: 210 })));
    if (uid.startsWith('rep')) ws.send(msg(201, JSON.stringify({ conversation_id: 'c', success: true })));
    if (uid.startsWith('full')) setTimeout(() => ws.close(1013, 'server overloaded'), 30);
    if (uid.startsWith('bye')) setTimeout(() => ws.close(4000, ''), 30);
  });
  t.teardown(() => srv.close());
  const gen = new LoadGen({
    port: srv.port,
    rampS: 0,
    reconnectMs: [10, 20],
    groups: [
      { workload: 'device', clients: 2, ack: true, uidPrefix: 'ack', conversation: 'conv1' },
      { workload: 'omi-leak1', clients: 1, uidPrefix: 'rep' },
      { workload: 'idle', clients: 1, uidPrefix: 'full' },
      { workload: 'device-pcm', clients: 1, uidPrefix: 'bye' },
      { workload: 'omi-leak2', clients: 1 },
    ],
  }).start();
  await until(t, 'acks, replies, server closes and audio', () => {
    const x = gen.stats();
    return x.acks.messages >= 2 && x.replies >= 1 && x.serverCloses['1013']! >= 1 && x.serverCloses['4000']! >= 1 && x.perKey['ack0/conv1'] !== undefined && x.perKey['bye0/_'] !== undefined && x.controlMessages > 1;
  });
  const s = await gen.stop();
  t.equal(gen.stop(), gen.stop(), 'stop is idempotent');
  t.ok(s.acks.messages >= 2, `acks received (${s.acks.messages})`);
  t.ok(s.acks.frames >= 14 && s.acks.frames % 7 === 0, `last acked count per session summed (${s.acks.frames})`);
  t.ok(s.replies >= 1);
  t.ok(s.serverCloses['1013']! >= 1, '1013 counted');
  t.equal(s.closeReasons['1013'], 'server overloaded');
  t.ok(s.serverCloses['4000']! >= 1, 'a close without reason');
  t.equal(s.closeReasons['4000'], undefined);
  t.ok(s.perKey['ack0/conv1']!.frames > 0, 'device audio counted under its conversation');
  t.equal(s.perKey['bye0/_']!.kind, 'pcm', 'device-pcm counts PCM');
  t.ok(s.controlMessages > 1, '103 and 104s');
  t.equal(s.connected, 0);
  t.ok(srv.sockets.some((ws) => ws.protocol === ''), 'server saw the connections');
});

t.test('refused connects back off; hanging connects end on stop; a full socket blocks', async (t) => {
  // Nothing listens on ::1 at this port.
  const hang = createServer(() => {}); // accepts, never answers the upgrade
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  const held: Socket[] = [];
  hang.on('connection', (s) => held.push(s));
  t.teardown(() => {
    for (const s of held) s.destroy();
    hang.close();
  });
  const port = (hang.address() as { port: number }).port;
  const refused = new LoadGen({ host: '::1', port, rampS: 0, reconnectMs: [1, 2], groups: [{ workload: 'device', clients: 2 }] }).start();
  const hanging = new LoadGen({ host: 'localhost', port, rampS: 0, groups: [{ workload: 'device', clients: 2 }] }).start();
  await until(t, 'refused connects', () => refused.stats().connectFailures >= 2);
  await until(t, 'hanging connects', () => held.length >= 2);
  const r1 = await refused.stop();
  t.ok(r1.connectFailures >= 2, `refused connects counted (${r1.connectFailures})`);
  t.ok(Object.keys(r1.errors).length > 0, `errors by code ${JSON.stringify(r1.errors)}`);
  t.equal(r1.connects, 0);
  const r2 = await hanging.stop();
  t.equal(r2.connects, 0, 'never connected');
  t.equal(r2.connectFailures, 0, 'ended by stop: not a failure');

  // highWaterBytes 0: every write is "blocked"; the due messages count as late at the end.
  const srv = await scripted(() => {});
  t.teardown(() => srv.close());
  const blocked = new LoadGen({ port: srv.port, rampS: 0, highWaterBytes: 0, groups: [{ workload: 'device', clients: 1 }] }).start();
  await until(t, 'a blocked tick', () => blocked.stats().blockedTicks > 0);
  const r3 = await blocked.stop();
  t.ok(r3.blockedTicks > 0, 'blocked ticks');
  t.ok(r3.lateMessages > 0, 'late messages');
  t.equal(r3.lc3Frames, 0);
  // A burst cap of 1 message per tick at 1,000 msgs/s: behind, but sending.
  const capped = new LoadGen({ port: srv.port, rampS: 0, maxBurst: 1, tickMs: 5, groups: [{ workload: 'device', clients: 1, rate: 1000 }] }).start();
  await until(t, 'capped sends', () => capped.stats().lc3Frames >= 3);
  const r4 = await capped.stop();
  t.ok(r4.lc3Frames > 0 && r4.lateMessages > 0, `capped: ${r4.lc3Frames} sent, ${r4.lateMessages} late`);
});

t.test('unsent audio in a socket buffer, per workload', async (t) => {
  t.same(unsentAudio('device', 36 * 3, 100), { kind: 'lc3', frames: 3, bytes: 90, lc3Frames: 3 });
  t.same(unsentAudio('device', 37, 100), { kind: 'lc3', frames: 2, bytes: 60, lc3Frames: 2 }, 'a partial message counts');
  t.same(unsentAudio('device', 36 * 50, 4), { kind: 'lc3', frames: 4, bytes: 120, lc3Frames: 4 }, 'never more than was written');
  t.same(unsentAudio('device-pcm', 36 * 2, 100), { kind: 'pcm', frames: 30, bytes: 60, lc3Frames: 0 });
  t.same(unsentAudio('omi-leak2', 16020 + 1, 100), { kind: 'pcm', frames: 16000, bytes: 32000, lc3Frames: 0 });
  t.same(unsentAudio('omi-leak1', 500, 100), { kind: 'pcm', frames: 0, bytes: 0, lc3Frames: 0 }, 'control messages hold no audio');
  t.same(unsentAudio('idle', 0, 0), { kind: 'pcm', frames: 0, bytes: 0, lc3Frames: 0 });
});

t.test('kills and stuck closes on a server that stops reading: unsent audio is "uncertain"', async (t) => {
  // Completes the handshake, then never reads again: the clients' buffers fill up (16 KB
  // messages fill the kernel's few MB at once).
  const srv = await scripted((ws) => (ws as unknown as { _socket: Socket })._socket.pause());
  t.teardown(() => srv.close());
  let seed = 1;
  const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  const gen = new LoadGen({
    port: srv.port,
    rampS: 0,
    random,
    reconnectMs: [5, 10],
    churn: { minS: 0.3, maxS: 0.3, killFraction: 1 },
    groups: [
      { workload: 'omi-leak2', clients: 1, rate: Infinity },
      { workload: 'omi-leak1', clients: 1 },
      { workload: 'idle', clients: 1 },
    ],
  }).start();
  await until(t, 'kills with unsent audio', () => {
    const x = gen.stats();
    return x.kills >= 4 && x.reconnects > 0 && (x.uncertain.perKey['omi-leak20/conv-omi-leak20']?.bytes ?? 0) > 0;
  });
  const s = await gen.stop(100);
  t.ok(s.kills >= 4, `kills (${s.kills})`);
  t.ok(s.uncertain.perKey['omi-leak20/conv-omi-leak20']!.bytes > 0, 'omi-leak2 uncertain bytes');
  t.equal(s.uncertain.frames, 0, 'no LC3 in PCM');
  t.equal(s.uncertain.perKey['omi-leak10/conv-omi-leak10'], undefined, 'control messages: nothing uncertain');
  t.ok(s.reconnects > 0);

  // Graceful stop against the same server: the close handshake never completes, stragglers
  // are terminated after the grace and what they still held is uncertain.
  const stuck = new LoadGen({ port: srv.port, rampS: 0, groups: [{ workload: 'omi-leak2', clients: 1, rate: Infinity }] }).start();
  // Wait until its buffers are full: nothing more is written for a while.
  let last = -1;
  await until(t, 'a full socket', () => {
    const m = stuck.stats().messages;
    const full = m > 10 && m === last;
    last = m;
    return full;
  });
  const r = await stuck.stop(50);
  t.equal(r.closes, 1);
  t.ok(r.uncertain.bytes > 0, `straggler's buffer is uncertain (${r.uncertain.bytes} bytes)`);
});

t.test('runLoad: bounded run', async (t) => {
  const srv = await scripted(() => {});
  t.teardown(() => srv.close());
  const t0 = Date.now();
  const r = await runLoad({ port: srv.port, seconds: 1.3, groups: [{ workload: 'device', clients: 3 }] });
  t.ok(Date.now() - t0 >= 1300, 'ran its time');
  t.equal(r.clients, 3);
  t.equal(r.connected, 0, 'and stopped');
  // The hard bound stops a generator nobody stops.
  const lone = new LoadGen({ port: srv.port, rampS: 0, maxSeconds: 0.2, groups: [{ workload: 'idle', clients: 1 }] }).start();
  t.notOk(lone.stopped);
  await until(t, 'the hard stop', () => lone.stopped);
  t.equal((await lone.stop()).connected, 0, 'stopped by itself');
});
