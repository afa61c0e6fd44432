// /debug/profile for every thread by name: a shard's CPU profile taken during a short load is a
// valid .cpuprofile that shows the LC3 decode path; main and the uploader can be profiled too;
// bad thread names, bad durations and missing tokens are refused; the service keeps serving.
import t, { type Test } from 'tap';
import { wavToLc3 } from '../src/codec/transcode.js';
import { parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav } from '../src/formats/wav.js';
import { pickShard } from '../src/shard/rendezvous.js';
import { testSignal } from './support/audio.js';
import { closed, startTestService, type TestService } from './support/service.js';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const auth = { authorization: 'Bearer adm' };

/** Device sessions on `shard` sending 10-frame messages every 5 ms until stop() (a few thousand frames/s). */
async function load(svc: TestService, shard: number, sessions: number): Promise<{ stop: () => Promise<void>; sent: () => number }> {
  const lc3 = wavToLc3(encodeWav(16000, 1, testSignal(16000, 1)), { bitrate: 24000, frameUs: 10000 });
  const frames = parseLc3File(lc3).frames;
  const batch = Buffer.concat(frames.slice(0, 10));
  const uids: string[] = [];
  for (let i = 0; uids.length < sessions; i++) if (pickShard(`prof${i}`, 2) === shard) uids.push(`prof${i}`);
  const sockets = await Promise.all(uids.map((uid) => svc.ws(`/v1/audio/stream?uid=${uid}`)));
  let sent = 0;
  const timer = setInterval(() => {
    for (const ws of sockets) {
      ws.send(batch);
      sent += 10;
    }
  }, 5);
  return {
    sent: () => sent,
    stop: async () => {
      clearInterval(timer);
      await Promise.all(sockets.map((ws) => {
        const c = closed(ws);
        ws.close();
        return c;
      }));
    },
  };
}

function check(t: Test, p: CpuProfile, what: string): void {
  t.ok(Array.isArray(p.nodes) && p.nodes.length > 0, `${what}: nodes`);
  t.ok(Number.isFinite(p.startTime) && Number.isFinite(p.endTime) && p.endTime > p.startTime, `${what}: startTime < endTime`);
  t.ok(Array.isArray(p.samples) && p.samples.length > 0 && p.samples.length === p.timeDeltas.length, `${what}: samples with their time deltas`);
  const ids = new Set(p.nodes.map((n) => n.id));
  t.ok(p.samples.every((s) => ids.has(s)), `${what}: every sample names a node`);
}

t.test('a shard profiled during a load shows the decode path; main and uploader profile too', async (t) => {
  // LC3 is decoded only for PCM listeners: the test PCM tap is one (a file per session).
  const svc = await startTestService({ ADMIN_TOKEN: 'adm' }, { LC3_PUSHER_TEST_PCM_DIR: t.testdir() });
  t.teardown(() => svc.close());
  const l = await load(svc, 1, 8);
  // The profile runs 1 s in shard-1 while the load goes on; meanwhile the main thread answers.
  const profiling = fetch(svc.url('/debug/profile?thread=shard-1&seconds=1'), { headers: auth });
  const t0 = Date.now();
  const health = await fetch(svc.url('/healthz'));
  t.equal(health.status, 200, `/healthz answered in ${Date.now() - t0} ms while shard-1 was being profiled`);
  const res = await profiling;
  await l.stop();
  t.equal(res.status, 200);
  t.match(res.headers.get('content-disposition'), /filename="shard-1\.cpuprofile"/);
  const p = (await res.json()) as CpuProfile;
  check(t, p, 'shard-1');
  t.ok(l.sent() > 1000, `${l.sent()} frames sent during the profile`);
  // Session.decode (src/session/session.ts) calls Lc3Decoder.decodeFrames (wasm/lc3.ts), the JS
  // wrapper of the wasm lc3_decode_frames (wasm/glue.c), once per ring record.
  const fns = new Set(p.nodes.map((n) => `${n.callFrame.functionName} ${n.callFrame.url.split('/').slice(-2).join('/')}`));
  t.ok([...fns].some((f) => /^decodeFrames wasm\/lc3\.[tj]s$/.test(f)), 'Lc3Decoder.decodeFrames is in the profile');
  t.ok([...fns].some((f) => /^decode session\/session\.[tj]s$/.test(f)), 'Session.decode is in the profile');
  // Under decodeFrames: the wasm itself (no name section, so V8 names its functions wasm-function[N]).
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const under = (id: number): string[] => (byId.get(id)?.children ?? []).flatMap((c) => [byId.get(c)!.callFrame.functionName, ...under(c)]);
  const wasm = p.nodes.filter((n) => n.callFrame.functionName === 'decodeFrames').flatMap((n) => under(n.id)).filter((f) => /^(js-to-wasm|wasm-function)/.test(f));
  t.ok(wasm.length > 0, `wasm frames under decodeFrames: ${[...new Set(wasm)].slice(0, 4).join(', ')}, …`);

  for (const thread of ['main', 'uploader']) {
    const r = await fetch(svc.url(`/debug/profile?thread=${thread}&seconds=0.2`), { headers: auth });
    t.equal(r.status, 200, thread);
    t.match(r.headers.get('content-disposition'), `${thread}.cpuprofile`);
    check(t, (await r.json()) as CpuProfile, thread);
  }
});

t.test('refused: unknown thread (naming the valid ones), bad seconds, no token, no ADMIN_TOKEN', async (t) => {
  const svc = await startTestService({ ADMIN_TOKEN: 'adm' });
  t.teardown(() => svc.close());
  for (const path of ['/debug/profile', '/debug/heap', '/debug/gc']) {
    for (const bad of ['shard-2', 'worker', '__proto__', '']) {
      const res = await fetch(svc.url(`${path}?thread=${bad}&seconds=0.1`), { headers: auth });
      t.equal(res.status, 400, `${path} thread=${JSON.stringify(bad)}`);
      t.match(((await res.json()) as { error: string }).error, /thread must be (all or )?one of: main, shard-0, shard-1, uploader \(got /);
    }
    t.equal((await fetch(svc.url(`${path}?thread=main`))).status, 401, `${path}: no token`);
    t.equal((await fetch(svc.url(`${path}?thread=main`), { headers: { authorization: 'Bearer nope' } })).status, 401, `${path}: wrong token`);
  }
  for (const s of ['0', '-1', '121', 'abc', 'Infinity']) {
    const res = await fetch(svc.url(`/debug/profile?thread=shard-0&seconds=${s}`), { headers: auth });
    t.equal(res.status, 400, `seconds=${s}`);
    t.match(((await res.json()) as { error: string }).error, /seconds must be a number in \(0, 120\]/);
  }
  const off = await startTestService();
  t.teardown(() => off.close());
  for (const path of ['/debug/profile', '/debug/heap', '/debug/gc']) {
    const res = await fetch(off.url(`${path}?thread=main`), { headers: auth });
    t.equal(res.status, 403, `${path}: disabled without ADMIN_TOKEN`);
    t.match(((await res.json()) as { error: string }).error, /set ADMIN_TOKEN/);
  }
});
