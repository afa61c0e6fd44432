// End to end over loopback: real ws clients → main thread → SAB rings → shard workers → LC3 wasm.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { wavToLc3 } from '../src/codec/transcode.js';
import { parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav, parseWav } from '../src/formats/wav.js';
import { pickShard } from '../src/shard/rendezvous.js';
import { loadLc3 } from '../wasm/lc3.js';
import { testSignal } from './support/audio.js';
import { pcmDiff, tool } from './support/reference.js';
import { closed, startTestService, until } from './support/service.js';

const SESSIONS = 200;

t.test('hundreds of sessions over all shards: every frame decoded, PCM matches dlc3', async (t) => {
  const dir = t.testdir();
  const pcmDir = join(dir, 'pcm');
  const svc = await startTestService({}, { LC3_PUSHER_TEST_PCM_DIR: pcmDir });
  t.teardown(() => svc.close());

  // 0.5 s of test audio as lc3_fs1030 frames (16 kHz, 10 ms, 30 bytes), plus dlc3's decoding.
  const lc3Path = join(dir, 'ref.lc3');
  const lc3 = wavToLc3(encodeWav(16000, 1, testSignal(16000, 0.5)), { bitrate: 24000, frameUs: 10000 });
  writeFileSync(lc3Path, lc3);
  execFileSync(tool('dlc3', 'source'), [lc3Path, join(dir, 'ref.wav')], { stdio: 'ignore' });
  const ref = parseWav(readFileSync(join(dir, 'ref.wav'))).samples;
  const { header, frames } = parseLc3File(lc3);
  t.equal(frames[0]!.length, 30);

  const clients = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => svc.ws(`/v1/audio/stream?uid=user${i}`)));
  await Promise.all(
    clients.map(async (ws) => {
      for (const f of frames) ws.send(f);
      await new Promise<void>((r) => ws.send(Buffer.alloc(0), () => r()));
    }),
  );
  const total = SESSIONS * frames.length;
  await until(async () => (await svc.metricSum('pusher_frames_decoded_total')) === total, 30000, 'all frames decoded');
  t.equal(await svc.metricSum('pusher_frames_decoded_total'), total, 'frames decoded = frames sent, exactly');
  t.equal(await svc.metric('pusher_audio_bytes_received_total'), total * 30);
  t.equal(await svc.metricSum('pusher_decode_errors_total'), 0);
  // Both shards carry sessions.
  for (const shard of ['0', '1']) t.ok((await svc.metric('pusher_sessions_active', { shard })) > 0, `shard ${shard} has sessions`);
  // One message per frame: the latency histogram counts every one, and its +Inf bucket is its count.
  t.equal(await svc.metricSum('pusher_decode_latency_seconds_count'), total, 'decode latency histogram: one observation per message');
  const inf = (await svc.metric('pusher_decode_latency_seconds_bucket', { shard: '0', le: '+Inf' })) + (await svc.metric('pusher_decode_latency_seconds_bucket', { shard: '1', le: '+Inf' }));
  t.equal(inf, total);
  t.ok((await svc.metricSum('pusher_decode_latency_seconds_sum')) >= 0);
  // Sync is on by default: every session has an open spool chunk, committed by the shards.
  t.equal(await svc.metricSum('pusher_spool_open_chunks'), SESSIONS, 'one open chunk per session');
  t.ok((await svc.metricSum('pusher_spool_commits_total')) > 0);
  t.ok((await svc.metricSum('pusher_spool_journal_bytes')) > 0);

  await Promise.all(clients.map((ws) => { const c = closed(ws); ws.close(1000); return c; }));
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 10000, 'sessions closed');
  await until(async () => (await svc.metricSum('pusher_spool_open_chunks')) === 0, 10000, 'chunks sealed');
  t.equal(await svc.metricSum('pusher_spool_seal_backlog'), 0);
  t.equal(await svc.metricSum('pusher_spool_oldest_open_chunk_seconds'), 0);

  // Decoded PCM of every session equals dlc3's for the same frames (delay-trimmed as dlc3 does).
  const delay = loadLc3().delaySamples(header);
  const taps = readdirSync(pcmDir);
  let worst = 0;
  let wrongLength = 0;
  for (let i = 0; i < SESSIONS; i++) {
    const name = taps.find((n) => n.startsWith(`user${i}-`));
    const raw = readFileSync(join(pcmDir, name!));
    const pcm = new Int16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
    if (pcm.length !== frames.length * 160) wrongLength++;
    worst = Math.max(worst, pcmDiff(pcm.subarray(delay, delay + header.nsamples), ref).max);
  }
  t.equal(taps.length, SESSIONS, 'one decoded stream per session');
  t.equal(wrongLength, 0, 'every session decoded every frame exactly once');
  t.ok(worst <= 1, `every session within ±1 LSB of dlc3 (worst ${worst})`);
});

t.test('sessions of one uid land on one shard', async (t) => {
  const svc = await startTestService({ SHARDS: '2' });
  t.teardown(() => svc.close());
  for (const uid of ['alice', 'bob', 'carol']) {
    const want = String(pickShard(uid, 2));
    const other = want === '0' ? '1' : '0';
    const before = { want: await svc.metric('pusher_sessions_active', { shard: want }), other: await svc.metric('pusher_sessions_active', { shard: other }) };
    const socks = await Promise.all([1, 2, 3, 4].map(() => svc.ws(`/v1/audio/stream?uid=${uid}`)));
    for (const s of socks) s.send(Buffer.alloc(30));
    await until(async () => (await svc.metric('pusher_sessions_active', { shard: want })) === before.want + 4, 5000, 'sessions open');
    t.equal(await svc.metric('pusher_sessions_active', { shard: other }), before.other, `${uid}: nothing on the other shard`);
    await Promise.all(socks.map((s) => { const c = closed(s); s.close(); return c; }));
    await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 5000, 'closed');
  }
});
