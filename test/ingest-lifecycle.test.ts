// DESIGN §3.2 and §3.1: the close cascade releases everything, and a full ring pauses the socket
// (TCP backpressure) instead of dropping anything.
import t from 'tap';
import { audioMsg, closed, pusherMsg, startTestService, until, type TestService } from './support/service.js';

async function zeroed(svc: TestService): Promise<Record<string, number>> {
  return {
    sessions: await svc.metricSum('pusher_sessions_active'),
    tasks: await svc.metricSum('pusher_session_tasks_active'),
    decoders: await svc.metricSum('pusher_decoders_active'),
    slots: await svc.metricSum('pusher_slots_leased'),
    paused: await svc.metric('pusher_sockets_paused'),
  };
}

const ZERO = { sessions: 0, tasks: 0, decoders: 0, slots: 0, paused: 0 };

t.test('clean close, abrupt destroy and churn: everything returns to zero, RSS plateaus', async (t) => {
  const svc = await startTestService({ SLOTS_PER_SHARD: '256' });
  t.teardown(() => svc.close());
  const frame = Buffer.alloc(30, 1);
  const cycle = async (n: number, i: number) => {
    const ws = await svc.ws(`/v1/audio/stream?uid=churn${i % 97}`);
    for (let k = 0; k < 5; k++) ws.send(frame);
    // A few pusher sessions with pending 104 job replies and transcripts too.
    const done = closed(ws);
    if ((n + i) % 3 === 0) ws.terminate(); // abrupt: the TCP socket is destroyed, no close frame
    else ws.close(1000);
    await done;
  };
  const round = async (n: number, count: number) => {
    for (let i = 0; i < count; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => cycle(n, i + k)));
  };
  const pusher = await svc.ws('/v1/trigger/listen?uid=p1&codec=lc3_fs1030');
  pusher.send(pusherMsg(102, JSON.stringify({ segments: [{ text: 'hi', start: 0, end: 1 }], memory_id: null })));
  pusher.send(pusherMsg(104, JSON.stringify({ conversation_id: 'c1', language: 'en' })));
  const reply = await new Promise<Buffer>((r) => pusher.once('message', (d: Buffer) => r(d)));
  t.equal(reply.readUInt32LE(0), 201, '104 gets a 201 reply');
  t.match(JSON.parse(reply.subarray(4).toString()), { conversation_id: 'c1' });
  pusher.terminate();

  await round(0, 500); // warm-up: heaps and pools grow to their working size
  await round(1, 500);
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 10000, 'warm-up closed');
  const plateau = process.memoryUsage().rss;
  await round(2, 1500);
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 20000, 'churn closed');
  t.same(await zeroed(svc), ZERO, 'sessions, tasks, decoders, slots, paused sockets all back to zero');
  t.equal(await svc.metricSum('pusher_frames_received_total'), 2500 * 5, 'every frame of every churned session received');
  const growth = (process.memoryUsage().rss - plateau) / 2 ** 20;
  // In-process and under whatever else the machine runs, RSS is noisy: this bound catches a gross
  // per-session leak (1,500 sessions × 64 KiB ≈ 94 MiB); the chaos harness measures the slope.
  t.ok(growth < 64, `RSS after 1,500 more cycles within 64 MiB of the warm-up plateau (grew ${growth.toFixed(1)} MiB)`);
});

t.test('backpressure: a slow shard pauses the socket, the client blocks, nothing is lost', async (t) => {
  const svc = await startTestService({ SHARDS: '1', RING_BYTES: '8192' }, { LC3_PUSHER_TEST_FAULTS: 'drain_delay_ms=5' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/trigger/listen?uid=slow&codec=lc3_fs1030');
  // 2,000 messages of 130 LC3 frames (~8 MB): more than the loopback socket buffers hold, so
  // once the server stops reading, the client's own send queue must grow.
  const FRAMES = 130;
  const N = 2000;
  const msg = audioMsg(1_700_000_000, Buffer.alloc(FRAMES * 30, 3));
  let maxBuffered = 0;
  let sawPaused = false;
  for (let i = 0; i < N; i++) {
    ws.send(msg);
    if (i % 200 === 0) {
      await new Promise((r) => setTimeout(r, 20));
      maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
      if ((await svc.metric('pusher_sockets_paused')) === 1) sawPaused = true;
    }
  }
  await until(async () => {
    if ((await svc.metric('pusher_sockets_paused')) === 1) sawPaused = true;
    maxBuffered = Math.max(maxBuffered, ws.bufferedAmount);
    return (await svc.metricSum('pusher_frames_received_total')) === N * FRAMES;
  }, 90000, 'all frames decoded');
  t.ok(sawPaused, 'the socket was paused while the ring was full');
  t.ok(maxBuffered > 0, `the client's sends queued up behind TCP (saw ${maxBuffered} bytes buffered)`);
  t.equal(await svc.metricSum('pusher_frames_received_total'), N * FRAMES, 'zero loss');
  t.ok((await svc.metricSum('pusher_ring_bytes_used')) <= 8192, 'ring memory bounded by its size');
  const c = closed(ws);
  ws.close();
  await c;
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 5000, 'closed');
  t.same(await zeroed(svc), ZERO);
});

t.test('a lost drain notification cannot hang a paused socket: the sweep resumes it and counts it', async (t) => {
  // Positive control: the shard never reports a drained slot, so only the sweep's rescue can resume.
  const svc = await startTestService({ SHARDS: '1', RING_BYTES: '4096' }, { LC3_PUSHER_TEST_FAULTS: 'drop_drained,drain_delay_ms=20' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/audio/stream?uid=lost-wakeup');
  const N = 600;
  for (let i = 0; i < N; i++) ws.send(Buffer.alloc(30, 5));
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) === N, 60000, 'every frame received');
  t.ok((await svc.metric('pusher_paused_rescues_total')) >= 1, `rescued by the sweep ${await svc.metric('pusher_paused_rescues_total')} time(s)`);
  await until(async () => (await svc.metric('pusher_sockets_paused')) === 0, 10000, 'resumed');
  const c = closed(ws);
  ws.close();
  await c;
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 10000, 'closed');
  t.same(await zeroed(svc), ZERO);
});

t.test('a session closed while paused still delivers everything it had sent', async (t) => {
  const svc = await startTestService({ SHARDS: '1', RING_BYTES: '4096' }, { LC3_PUSHER_TEST_FAULTS: 'drain_delay_ms=40' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/audio/stream?uid=closer');
  const N = 1500;
  for (let i = 0; i < N; i++) ws.send(Buffer.alloc(30, 5));
  await new Promise<void>((r) => ws.send(Buffer.alloc(0), () => r()));
  await until(async () => (await svc.metric('pusher_sockets_paused')) === 1, 10000, 'paused');
  ws.close(1000);
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 0, 30000, 'closed');
  const decoded = await svc.metricSum('pusher_frames_received_total');
  t.ok(decoded > 0 && decoded <= N, `decoded ${decoded} of ${N}`);
  t.equal(await svc.metric('pusher_audio_bytes_received_total'), decoded * 30, 'everything read from the socket was decoded');
  t.same(await zeroed(svc), ZERO);
});

t.test('a crashed shard is restarted; its sessions are closed with 1011 and may reconnect', async (t) => {
  const svc = await startTestService({ SHARDS: '1' });
  t.teardown(() => svc.close());
  const ws = await svc.ws('/v1/audio/stream?uid=crash');
  ws.send(Buffer.alloc(30));
  await until(async () => (await svc.metricSum('pusher_sessions_active')) === 1, 5000, 'open');
  const c = closed(ws);
  await svc.server.supervisor.shards[0]!.worker.terminate(); // as if the thread died
  const r = await c;
  t.equal(r.code, 1011);
  t.match(r.reason, /reconnect/);
  await until(() => svc.server.supervisor.shards[0]!.up, 60000, 'restarted');
  t.equal(await svc.metric('pusher_shard_restarts_total', { shard: '0' }), 1);
  const again = await svc.ws('/v1/audio/stream?uid=crash');
  again.send(Buffer.alloc(30));
  await until(async () => (await svc.metricSum('pusher_frames_received_total')) >= 1, 5000, 'works after restart');
  t.equal(await svc.metricSum('pusher_sessions_active'), 1);
  again.close();
});
