// The service's log, as an operator reads it: one line when a session opens and one when it
// closes (fields, who closed it, none per frame), every thread with its own `thread`, LOG_LEVEL
// respected in every thread, repeated warnings rate-limited, crashes at `error`.
import t, { type Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { loadConfig, type Config } from '../src/config.js';
import { startService, type Service } from '../src/serve.js';
import { closedBy, codecName } from '../src/server/session-log.js';
import { FakeGcs } from './support/fake-gcs.js';
import { audioMsg, closed, pusherMsg, until } from './support/service.js';

type Line = Record<string, unknown> & { level: string; msg: string; thread: string };

interface Rig {
  svc: Service;
  dir: string;
  lines(): Line[];
  ws(path: string): Promise<WebSocket>;
  metric(name: string, labels: string): Promise<number>;
}

async function rig(t: Test, over: Partial<Record<keyof Config, string>>): Promise<Rig> {
  const dir = t.testdir();
  // A store that answers 503 to everything: every upload fails and is retried (forever).
  const gcs = await FakeGcs.start({ buckets: ['audio'] });
  gcs.outage('status');
  t.teardown(() => gcs.stop());
  const settings = join(dir, 'settings.json');
  // A transcript webhook on a port nobody listens on: the shard's consumer fails (and logs).
  writeFileSync(settings, JSON.stringify({ default: { private_cloud_sync: true }, users: { hook: { transcript_webhook: 'http://127.0.0.1:9/t' } } }));
  const logFile = join(dir, 'service.log');
  const cfg = loadConfig({}, { PORT: '0', HOST: '127.0.0.1', SHARDS: '1', SLOTS_PER_SHARD: '16', SPOOL_DIR: join(dir, 'spool'), STORE: 'gcs', GCS_BUCKET: 'audio', GCS_API_ENDPOINT: gcs.url, DRAIN_TIMEOUT_S: '2', SETTINGS_FILE: settings, WEBHOOK_ALLOW_PRIVATE: '1', FSYNC_MS: '20', ...over });
  const svc = await startService(cfg, {}, { logDest: logFile });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await svc.stop();
  });
  const base = `127.0.0.1:${svc.port}`;
  return {
    svc: { ...svc, stop: async (why) => ((stopped = true), svc.stop(why)) },
    dir,
    lines: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line) : []),
    ws: (p) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${base}${p}`);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      }),
    metric: async (name, labels) => {
      const text = await (await fetch(`http://${base}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
      return line ? Number(line.split(' ').at(-1)) : 0;
    },
  };
}

/** The main thread writes asynchronously: wait until its stream has written what was logged. */
function flushed(svc: Service): Promise<void> {
  return new Promise((resolve, reject) => svc.logger.flush((err) => (err ? reject(err) : resolve())));
}

const byMsg = (lines: Line[], msg: string) => lines.filter((l) => l.msg === msg);

t.test('session lines, threads, rate limits, crashes, the drain story (LOG_LEVEL=info)', async (t) => {
  const r = await rig(t, { LOG_LEVEL: 'info', RECEIVE_TIMEOUT_S: '1' });
  const session = (uid: string) => async () => {
    await flushed(r.svc);
    return r.lines().filter((l) => l.uid === uid);
  };

  // A wearable: 50 messages of two LC3 frames and 3 keep-alives, closed by the client.
  const dev = await r.ws('/v1/audio/stream?uid=dev1');
  for (let i = 0; i < 50; i++) dev.send(Buffer.alloc(60, i));
  for (let i = 0; i < 3; i++) dev.send(Buffer.alloc(1));
  const devClosed = closed(dev);
  await new Promise<void>((res) => dev.send(Buffer.alloc(1), () => res()));
  dev.close(1000, 'bye');
  await devClosed;
  await until(async () => (await session('dev1')()).length === 2, 10000, 'the device session lines');
  const [open, close] = await session('dev1')();
  t.match(open, { level: 'info', thread: 'main', msg: 'session open', uid: 'dev1', endpoint: 'device', codec: 'lc3_fs1030', sampleRate: 16000, frameUs: 10000, frameBytes: 30, shard: 0, ack: false, sync: true, consumers: false });
  t.type(open!.session, 'number');
  t.match(close, { level: 'info', thread: 'main', msg: 'session closed', uid: 'dev1', session: open!.session, endpoint: 'device', codec: 'lc3_fs1030', shard: 0, messages: 54, frames: 100, bytes: 3000, code: 1000, reason: 'bye', closedBy: 'client' });
  t.type(close!.durationS, 'number');

  // A full shard refuses sessions with 1013: one warning for the herd.
  const full = await Promise.all(Array.from({ length: 16 }, (_, i) => r.ws(`/v1/audio/stream?uid=full${i}`)));
  for (let i = 0; i < 3; i++) t.equal((await closed(await r.ws('/v1/audio/stream?uid=extra'))).code, 1013);
  await flushed(r.svc);
  const refused = byMsg(r.lines(), 'session refused (1013): no ring slot free on its shard');
  t.equal(refused.length, 1, 'three refusals, one line');
  t.match(refused[0], { level: 'warn', thread: 'main', shard: 0, uid: 'extra' });
  await Promise.all(full.map((ws) => ((ws.close(), closed(ws)))));

  // The Omi hop with PCM, closed by the server for bad input.
  const pcm = await r.ws('/v1/trigger/listen?uid=pcm1&sample_rate=16000');
  pcm.send(pusherMsg(100));
  for (let i = 0; i < 5; i++) pcm.send(audioMsg(Date.now() / 1000, Buffer.alloc(640)));
  const pcmClosed = closed(pcm);
  pcm.send('not binary');
  t.equal((await pcmClosed).code, 1003);
  await until(async () => (await session('pcm1')()).length === 2, 10000, 'the PCM session lines');
  t.match((await session('pcm1')())[1], { msg: 'session closed', endpoint: 'pusher', codec: 'pcm16', messages: 7, frames: 1600, bytes: 3200, code: 1003, reason: 'text message where binary is required', closedBy: 'bad_input', cause: 'text_not_binary' });

  // Idle past RECEIVE_TIMEOUT_S.
  const idle = await r.ws('/v1/audio/stream?uid=idle1');
  t.equal((await closed(idle)).code, 1001);
  await until(async () => (await session('idle1')()).length === 2, 10000, 'the idle session lines');
  t.match((await session('idle1')())[1], { code: 1001, reason: /idle for more than 1 s/, closedBy: 'idle', cause: 'idle_timeout', messages: 0 });

  // A shard's warning (its webhook is refused) comes from the shard's own thread.
  const hook = await r.ws('/v1/trigger/listen?uid=hook&sample_rate=16000');
  const seg = { id: 's0', text: 'hello', speaker: 'SPEAKER_00', speaker_id: 0, is_user: false, person_id: null, start: 0, end: 1 };
  for (let i = 0; i < 3; i++) hook.send(pusherMsg(102, JSON.stringify({ segments: [seg], memory_id: null })));
  await until(async () => (await r.metric('pusher_http_requests_total', 'result="refused"')) >= 1, 10000, 'the refused webhook POST');
  await until(() => r.lines().some((l) => l.thread === 'shard-0' && l.level === 'warn'), 10000, "the shard's warning");
  t.match(r.lines().find((l) => l.thread === 'shard-0'), { level: 'warn', msg: /transcript_webhook .*ECONNREFUSED/ });
  const hookClosed = closed(hook);
  hook.close();
  await hookClosed;

  // Every upload fails (the store answers 503) and is retried: one line from the uploader thread.
  await until(async () => (await r.svc.uploader.stats()).uploads_error >= 3, 20000, 'three failed upload attempts');
  const uploads = r.lines().filter((l) => l.thread === 'uploader');
  t.equal(uploads.length, 1, `${(await r.svc.uploader.stats()).uploads_error} failed attempts, one line (rate-limited)`);
  t.match(uploads[0], { level: 'warn', msg: 'upload failed, will retry', object: /^chunks\/(dev1|pcm1|idle1)\//, err: /HTTP 503/ });

  // A crashed shard: `error` on the main thread; its sessions are closed "shard_restart".
  const victim = await r.ws('/v1/audio/stream?uid=crash1');
  victim.send(Buffer.alloc(30));
  await until(async () => (await session('crash1')()).length === 1, 10000, 'the session open line');
  const victimClosed = closed(victim);
  await r.svc.server.supervisor.shards[0]!.worker.terminate();
  t.equal((await victimClosed).code, 1011);
  await until(async () => (await session('crash1')()).length === 2, 10000, 'the crashed session line');
  t.match((await session('crash1')())[1], { code: 1011, closedBy: 'shard_restart' });
  t.match(byMsg(r.lines(), 'shard exited')[0], { level: 'error', thread: 'main', shard: 0, code: 1 });
  await until(() => r.svc.server.supervisor.shards[0]!.up, 60000, 'the shard restarted');

  // The drain: one open session, then the story.
  const last = await r.ws('/v1/audio/stream?uid=drain1');
  last.send(Buffer.alloc(300));
  await until(async () => (await session('drain1')()).length === 1, 10000, 'the last session open');
  const lastClosed = closed(last);
  await r.svc.stop('SIGTERM');
  t.equal((await lastClosed).code, 1001);
  await flushed(r.svc);
  const lines = r.lines();
  t.match((await session('drain1')())[1], { code: 1001, reason: 'server is draining', closedBy: 'drain', frames: 10 });
  t.match(byMsg(lines, 'draining')[0], { level: 'info', why: 'SIGTERM', sessions: 1 });
  t.match(byMsg(lines, 'sessions closed')[0], { closed: 1, terminated: 0 });
  const spool = byMsg(lines, 'drained')[0];
  t.match(spool, { uploaded: 0, uploadedBytes: 0 });
  t.ok((spool!.leftInSpool as number) >= 2 && (spool!.leftInSpoolBytes as number) > 0, `left in the spool: ${spool!.leftInSpool} chunks, ${spool!.leftInSpoolBytes} bytes`);

  // Never a line per frame or message: two per session, whatever it sent.
  const perSession = new Map<unknown, number>();
  for (const l of lines) if (l.session !== undefined) perSession.set(l.session, (perSession.get(l.session) ?? 0) + 1);
  t.equal(perSession.size, 22, 'twenty-two sessions');
  t.ok([...perSession.values()].every((n) => n === 2), 'two lines each');
  t.same([...new Set(lines.map((l) => l.thread))].sort(), ['main', 'shard-0', 'uploader']);
});

t.test('LOG_LEVEL=error holds in every thread', async (t) => {
  const r = await rig(t, { LOG_LEVEL: 'error' });
  const hook = await r.ws('/v1/trigger/listen?uid=hook&sample_rate=16000');
  const seg = { id: 's0', text: 'x', speaker: 'SPEAKER_00', speaker_id: 0, is_user: false, person_id: null, start: 0, end: 1 };
  hook.send(audioMsg(Date.now() / 1000, Buffer.alloc(640)));
  hook.send(pusherMsg(102, JSON.stringify({ segments: [seg], memory_id: null })));
  await until(async () => (await r.metric('pusher_http_requests_total', 'result="refused"')) >= 1, 10000, 'the refused webhook POST');
  const c = closed(hook);
  hook.close();
  await c;
  await until(async () => (await r.svc.uploader.stats()).uploads_error >= 2, 20000, 'two failed upload attempts');
  await r.svc.server.supervisor.shards[0]!.worker.terminate();
  await until(() => r.lines().length > 0, 10000, 'the crash line');
  await until(() => r.svc.server.supervisor.shards[0]!.up, 60000, 'the shard restarted');
  await r.svc.stop();
  await flushed(r.svc);
  const lines = r.lines();
  t.same([...new Set(lines.map((l) => l.level))], ['error'], 'only errors, from any thread');
  t.ok(lines.some((l) => l.msg === 'shard exited'), 'the crash is an error');
});

t.test('an uncaught exception in a worker thread is logged there, with its stack', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'w.log');
  const url = new URL('../src/log/logger.ts', import.meta.url).href;
  // A worker file (not eval: the TypeScript loader applies to files), as workers/*.ts are.
  const entry = join(dir, 'crash.mjs');
  writeFileSync(
    entry,
    `const m = await import(${JSON.stringify(url)});
     m.logCrashes(m.workerLogger({ level: 'info', dest: ${JSON.stringify(file)} }, 'shard-9'), false);
     setImmediate(() => { throw new Error('boom in the shard'); });`,
  );
  const w = new Worker(entry);
  const err = await new Promise<Error>((resolve) => w.once('error', resolve));
  t.equal(err.message, 'boom in the shard');
  const line = JSON.parse(readFileSync(file, 'utf8').trim()) as Line & { err: { stack: string } };
  t.match(line, { level: 'error', thread: 'shard-9', msg: 'uncaught exception: thread crashed', origin: 'uncaughtException' });
  t.match(line.err.stack, /boom in the shard/);
});

t.test('who closed, and codec names', async (t) => {
  t.equal(closedBy(undefined), 'client');
  t.equal(closedBy('bad_frame_size'), 'bad_input');
  t.equal(closedBy('oversized'), 'bad_input');
  t.equal(closedBy('idle_timeout'), 'idle');
  t.equal(closedBy('drain'), 'drain');
  t.equal(closedBy('shard_restart'), 'shard_restart');
  t.equal(closedBy('not_reading'), 'not_reading');
  t.equal(closedBy('internal'), 'server_error');
  t.equal(closedBy('audio_rate'), 'rate_limit');
  t.equal(closedBy('something_new'), 'server');
  const base = { id: 1, uid: 'u', endpoint: 'device', ack: false, conversationId: null, sync: false, consumers: null } as const;
  t.equal(codecName({ ...base, codec: 'pcm16', sampleRate: 8000, frameUs: 0, frameBytes: 0 }), 'pcm16');
  t.equal(codecName({ ...base, codec: 'lc3', sampleRate: 16000, frameUs: 10000, frameBytes: 30 }), 'lc3_fs1030');
  t.equal(codecName({ ...base, codec: 'lc3', sampleRate: 48000, frameUs: 7500, frameBytes: 90 }), 'lc3');
});
