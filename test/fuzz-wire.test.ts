// The wire fuzzer in CI (short): a few thousand raw-TCP cases against a live service while honest
// ack=1 sessions stream. Nothing crashes or hangs, no honest byte goes unacknowledged, each kind
// of violation gets the close code or HTTP status RFC 6455 and our contract give it, and every
// fuzzed session is gone afterwards. The long run is scripts/fuzz-wire.ts (10^5 cases).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { endsMidFrame, wireCases } from '../scripts/lib/wire-cases.js';
import { encodeFrame, OP, ServerReader } from '../scripts/lib/wire-frames.js';
import { HonestStreams, runWireFuzz } from '../scripts/lib/wire-fuzz.js';
import { startTestService, until } from './support/service.js';

const CASES = 2500;

t.test('the generators: deterministic per seed, all three families, frames as RFC 6455 lays them out', async (t) => {
  // Mask keys and Sec-WebSocket-Keys are random on purpose; kinds, lengths and cuts follow the seed.
  const shape = (seed: number) => [...wireCases(300, seed)].map((c) => `${c.kind}:${c.bytes.length}:${c.cuts.join(',')}`);
  t.same(shape(7), shape(7), 'same seed, same cases');
  t.not(shape(7).join(), shape(9).join(), 'another seed, other cases');
  const fams = new Set([...wireCases(300, 8)].map((c) => c.family));
  t.same([...fams].sort(), ['frames', 'handshake', 'messages']);
  const f = encodeFrame({ opcode: OP.BINARY, payload: Buffer.from('abc'), masked: false });
  t.same([...f], [0x82, 3, 0x61, 0x62, 0x63], 'an unmasked 3-byte binary frame');
  t.equal(encodeFrame({ opcode: OP.BINARY, payload: Buffer.alloc(200) }).length, 2 + 2 + 4 + 200, '16-bit length, mask key');
  t.equal(encodeFrame({ opcode: OP.BINARY, declaredLength: 2n ** 40n, lengthForm: '64' }).length, 2 + 8 + 4, 'a declared length with nothing behind it');
  t.ok(endsMidFrame(encodeFrame({ opcode: OP.BINARY, declaredLength: 50, payload: Buffer.alloc(10) })), 'a short frame is waited for');
  t.notOk(endsMidFrame(encodeFrame({ opcode: OP.BINARY, payload: Buffer.alloc(10) })), 'a whole frame is not');
  t.notOk(endsMidFrame(encodeFrame({ opcode: 5, declaredLength: 50 })), 'a reserved opcode is refused, not waited for');
  const r = new ServerReader();
  const close = Buffer.from([0x88, 4, 0x03, 0xf0, 0x6f, 0x6b]);
  r.push(Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'));
  r.push(Buffer.concat([Buffer.from([0x82, 1, 7]), close.subarray(0, 3)]));
  r.push(close.subarray(3));
  t.same(r.reply, { status: 101, closeCode: 1008, closeReason: 'ok', messages: [Buffer.from([7])] }, 'the reader reassembles frames split across reads');
});

t.test(`${CASES} raw-TCP cases against a live service, honest ack=1 sessions streaming alongside`, async (t) => {
  const dir = t.testdir({});
  const settings = join(dir, 'settings.json');
  writeFileSync(settings, JSON.stringify({ default: { private_cloud_sync: false }, users: Object.fromEntries([0, 1, 2].map((i) => [`honest${i}`, { private_cloud_sync: true }])) }));
  const svc = await startTestService({ SETTINGS_FILE: settings, HANDSHAKE_TIMEOUT_MS: '1000' });
  t.teardown(() => svc.close());
  const honest = new HonestStreams(svc.port, 3);
  await honest.start();
  const f = await runWireFuzz({ port: svc.port, cases: CASES, seed: 20261201, concurrency: 16, closeWaitMs: 5000 });
  const h = await honest.stop();
  t.equal(f.cases, CASES);
  t.equal(f.hung, 0, `no connection hung (${JSON.stringify(f.hungSamples.map((s) => s.kind))})`);
  t.equal(await svc.metricSum('pusher_shard_restarts_total'), 0, 'no shard crashed');
  t.equal((await fetch(svc.url('/healthz'))).status, 200, 'the service is up');
  t.ok(h.sentBytes > 0, `honest sessions streamed (${h.sentBytes} bytes)`);
  t.equal(h.lostBytes, 0, `every honest byte acknowledged (${h.ackedBytes} of ${h.sentBytes})`);
  t.same(h.unexpectedCloses, {}, 'no honest session was closed by the server');
  const only = (kind: string, outcome: string) => {
    const o = f.byKind[kind];
    if (!o) return t.comment(`${kind}: not generated with this seed`);
    t.same(Object.keys(o), [outcome], `${kind} → ${outcome} (${JSON.stringify(o)})`);
  };
  for (const k of ['reserved-opcode', 'rsv-bits', 'unmasked', 'oversized-control', 'fragmented-control', 'orphan-continuation', 'interleaved-data', 'close-bad-code', 'close-one-byte']) only(`frames/${k}`, 'close 1002');
  for (const k of ['text-invalid-utf8', 'fragmented-text-invalid-utf8', 'close-invalid-utf8']) only(`frames/${k}`, 'close 1007');
  only('frames/length-lies-huge', 'close 1009');
  only('frames/length-lies-short', 'client stalled mid-frame (server waits)');
  only('handshake/bigHeader', 'http 431');
  only('handshake/key', 'http 400');
  only('handshake/lfOnly', 'http 400');
  t.ok((f.byKind['handshake/truncated'] ?? { 'http 408': 1 })['http 408'], 'truncated handshakes end with 408');
  t.ok((f.outcomes['close 1000'] ?? 0) > CASES / 20, 'plenty of cases were acceptable input (closed by us, 1000)');
  t.ok((f.outcomes['close 1003'] ?? 0) + (f.outcomes['close 1007'] ?? 0) > CASES / 20, 'message-level mutations met 1003/1007');
  t.comment(JSON.stringify(f.outcomes));
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 20000, 'every session closed');
  t.equal(svc.server.connections.size, 0, 'no connection left on the main thread');
});
