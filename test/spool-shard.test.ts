// ShardSpool: what goes in comes out, byte for byte, in files every liblc3 tool can play.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseLc3File } from '../src/formats/lc3file.js';
import { parseWav } from '../src/formats/wav.js';
import { announceSealed, onSealedAnnouncement, type SealedMessage } from '../src/spool/channel.js';
import { checkFormat, framesPerChunk, inspectChunk, lc3SampleCount } from '../src/spool/format.js';
import {
  bumpObjectName,
  checkUid,
  formatStart,
  parseObjectName,
  parseOpenFileName,
  parseSegmentFileName,
  segmentFileName,
} from '../src/spool/names.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool, type SealedChunk, type ShardSpoolOptions } from '../src/spool/shard-spool.js';
import { closedWithCommits, frame, LC3, T0 } from './support/spool.js';


function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => statSync(join(root, f)).isFile()).sort();
}

/** All frames of a uid's sealed LC3 chunks, in start order. */
function sealedFrames(dir: string, uid: string): Buffer[] {
  const root = join(dir, 'sealed', 'chunks', uid);
  const list = files(root).sort((a, b) => parseObjectName(`chunks/${uid}/${a}`)!.startMs - parseObjectName(`chunks/${uid}/${b}`)!.startMs);
  return list.flatMap((f) => parseLc3File(readFileSync(join(root, f))).frames.map((x) => Buffer.from(x)));
}

function spool(t: Test, dir: string, o: Partial<ShardSpoolOptions> = {}): { sp: ShardSpool; quota: SpoolQuota; acks: Map<number, [number, number]>; sealed: SealedChunk[] } {
  const quota = o.quota ?? new SpoolQuota(1 << 30);
  const acks = new Map<number, [number, number]>();
  const sealed: SealedChunk[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 0,
    quota,
    fsyncMs: 20,
    chunkSeconds: 1,
    onDurable: (id, f, b) => acks.set(id, [f, b]),
    onSealed: (c) => sealed.push(c),
    ...o,
  });
  t.teardown(() => sp.abort()); // tests close it themselves; this only stops a failed test's timer
  return { sp, quota, acks, sealed };
}

t.test('names and ids', async (t) => {
  t.equal(formatStart(T0), '1732623456.789');
  t.equal(formatStart(5), '0.005');
  t.same(parseObjectName('chunks/u1/_/1732623456.789.lc3'), { uid: 'u1', conversationId: '_', startMs: T0, ext: 'lc3' });
  t.equal(parseObjectName('chunks/u1/../1.000.lc3'), null);
  t.equal(parseObjectName('chunks/u1/c/1.000.mp3'), null);
  t.equal(bumpObjectName('chunks/u1/c/1.999.wav'), 'chunks/u1/c/2.000.wav');
  t.throws(() => bumpObjectName('other/x'), /not a chunk object name/);
  t.same(parseOpenFileName('1.000~3-abc-7.lc3'), { startMs: 1000, shard: 3, ext: 'lc3' });
  t.same(parseOpenFileName('1.000.wav'), { startMs: 1000, shard: undefined, ext: 'wav' });
  t.equal(parseOpenFileName('x.lc3'), null);
  t.same(parseSegmentFileName(segmentFileName(2, 'r1', 5)), { shard: 2, run: 'r1', seq: 5 });
  t.equal(parseSegmentFileName('nope.jnl'), null);
  t.doesNotThrow(() => checkUid('A-z_0'));
  for (const bad of ['', '../x', 'a/b', 'a.b', 'x'.repeat(129), 7, null]) {
    t.throws(() => checkUid(bad), /invalid uid/, `uid ${String(bad)}`);
  }
});

t.test('formats', async (t) => {
  t.same(checkFormat({ kind: 'pcm16', sampleRate: 16000 }), { kind: 'pcm16', sampleRate: 16000 });
  t.throws(() => checkFormat({ kind: 'pcm16', sampleRate: 7999 }), /out of range/);
  t.throws(() => checkFormat({ kind: 'lc3', frameUs: 5000, sampleRate: 16000, frameBytes: 30 }), /frame duration/);
  t.throws(() => checkFormat({ kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: 10 }), /frame size/);
  t.throws(() => checkFormat({ kind: 'opus' }), /unknown kind/);
  t.throws(() => checkFormat(null), /unknown kind/);
  t.equal(framesPerChunk({ kind: 'lc3', frameUs: 7500, sampleRate: 16000, frameBytes: 30 }, 1), 134);
  t.equal(framesPerChunk({ kind: 'pcm16', sampleRate: 8000 }, 2), 16000);
  t.equal(lc3SampleCount(LC3, 0), 0);
  t.equal(lc3SampleCount(LC3, 100), 16000 - 40);
  t.throws(() => inspectChunk(Buffer.from('RIFF....WAVEfmt nope'), 'wav'), /not a spool WAV/);
  t.throws(() => inspectChunk(Buffer.alloc(60), 'wav'), /not a spool WAV/);
});

t.test('quota over a SharedArrayBuffer', async (t) => {
  const q = new SpoolQuota(1000);
  const other = new SpoolQuota(q.sab);
  q.add(600);
  other.add(500);
  t.equal(q.bytes, 1100);
  t.ok(q.full);
  t.equal(other.maxBytes, 1000);
  t.equal(q.level, 1.1);
  other.sub(200);
  q.add(0);
  q.sub(0);
  t.notOk(q.full);
  t.throws(() => new SpoolQuota(0), /positive integer/);
  t.throws(() => new SpoolQuota(new SharedArrayBuffer(8)), /SharedArrayBuffer of another/);
});

t.test('LC3: byte-exact chunks, rotation by audio duration, dlc3 decodes them', async (t) => {
  const dir = t.testdir();
  const { sp, quota, acks, sealed } = spool(t, dir);
  const s = sp.openSession({ sessionId: 7, uid: 'user-1', format: LC3 });
  t.equal(s.conversationId, '_');
  // 250 frames = 2.5 s: chunks of 100 frames (1 s), rotation in the middle of a 3-frame append.
  const sent: Buffer[] = [];
  for (let k = 0; k < 250; ) {
    const n = Math.min(3, 250 - k);
    const payload = Buffer.concat(Array.from({ length: n }, (_, i) => frame(7, k + i)));
    for (let i = 0; i < n; i++) sent.push(frame(7, k + i));
    s.append(payload, n, T0 + k * 10);
    payload.fill(0xee); // the caller reuses its memory at once
    k += n;
    if (k % 30 === 0) await sp.flush();
  }
  await sp.flush();
  t.same(acks.get(7), [250, 250 * 30], 'durable ack after the commit');
  t.same(s.durable, { frames: 250, bytes: 7500 });
  await s.close();
  sealed.sort((a, b) => (a.name < b.name ? -1 : 1));
  t.same(sealed.map((c) => c.name), ['chunks/user-1/_/1732623456.789.lc3', 'chunks/user-1/_/1732623457.789.lc3', 'chunks/user-1/_/1732623458.789.lc3']);
  t.same(sealed.map((c) => c.frames), [100, 100, 50]);
  t.same(sealedFrames(dir, 'user-1'), sent, 'concatenated frames == sent frames');
  for (const c of sealed) {
    const parsed = parseLc3File(readFileSync(c.path));
    t.equal(parsed.header.nsamples, c.frames * 160 - 40);
    t.equal(statSync(c.path).size, c.bytes);
    const out = join(dir, 'out.wav');
    execFileSync('/usr/bin/dlc3', [c.path, out], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.equal(parseWav(readFileSync(out)).samples.length, c.frames * 160 - 40, `dlc3 decodes every frame of ${c.name}`);
  }
  t.same(files(join(dir, 'open')), [], 'no open files left');
  await sp.close();
  t.same(files(join(dir, 'journal')), [], 'journal deleted on close');
  t.equal(quota.bytes, sealed.reduce((a, c) => a + c.bytes, 0), 'quota = bytes of the sealed chunks');
  await sp.close();
  t.throws(() => sp.openSession({ sessionId: 8, uid: 'u', format: LC3 }), /closed/);
});

t.test('PCM16 is stored as WAV; frames are samples', async (t) => {
  const dir = t.testdir();
  const { sp, acks, sealed } = spool(t, dir, { chunkSeconds: 0.5 });
  const s = sp.openSession({ sessionId: 1, uid: 'p', conversationId: 'c1', format: { kind: 'pcm16', sampleRate: 8000 } });
  const pcm = new Int16Array(8000 * 1.2);
  for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 37) % 20000 - 10000;
  const bytes = Buffer.from(pcm.buffer);
  for (let off = 0; off < bytes.length; off += 3200) s.append(bytes.subarray(off, off + 3200), 1600, T0 + off / 16);
  t.throws(() => s.append(Buffer.alloc(3), 1, T0), /not 1 frames of 2 bytes/);
  await s.close();
  t.same(acks.get(1), [9600, 19200]);
  sealed.sort((a, b) => (a.name < b.name ? -1 : 1));
  t.same(sealed.map((c) => [c.name, c.frames]), [
    ['chunks/p/c1/1732623456.789.wav', 4000],
    ['chunks/p/c1/1732623457.289.wav', 4000],
    ['chunks/p/c1/1732623457.789.wav', 1600],
  ]);
  const back = Buffer.concat(sealed.map((c) => { const w = parseWav(readFileSync(c.path)).samples; return Buffer.from(w.buffer, w.byteOffset, w.byteLength); }));
  t.ok(back.equals(bytes), 'samples byte-exact');
  await sp.close();
  const info = inspectChunk(readFileSync(sealed[0]!.path), 'wav');
  t.same([info.codec, info.sampleRate, info.frames, info.duration], ['pcm16', 8000, 4000, 0.5]);
});

t.test('conversation switch seals; appendRange; many sessions; name collisions bump by 1 ms', async (t) => {
  const dir = t.testdir();
  const { sp, sealed } = spool(t, dir, { chunkSeconds: 60 });
  const a = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const b = sp.openSession({ sessionId: 2, uid: 'u', format: LC3 });
  t.throws(() => sp.openSession({ sessionId: 1, uid: 'u', format: LC3 }), /already open/);
  t.throws(() => sp.openSession({ sessionId: 3, uid: '../etc', format: LC3 }), /invalid uid/);
  t.throws(() => sp.openSession({ sessionId: 3, uid: 'u', conversationId: 'a/b', format: LC3 }), /invalid conversation id/);
  t.throws(() => sp.openSession({ sessionId: 1.5, uid: 'u', format: LC3 }), /bad session id/);
  const ring = Buffer.alloc(100);
  frame(1, 0).copy(ring, 40);
  a.appendRange(ring, 40, 30, 1, T0);
  t.throws(() => a.appendRange(ring, 90, 30, 1, T0), /outside/);
  b.append(frame(2, 0), 1, T0); // same uid, same start: its name gets bumped at seal
  a.switchConversation('_'); // same id: no-op
  a.append(frame(1, 1), 1, T0 + 10);
  a.switchConversation('conv-A');
  t.equal(a.conversationId, 'conv-A');
  t.throws(() => a.switchConversation('bad id'), /invalid conversation id/);
  a.append(frame(1, 2), 1, NaN); // invalid time: the wall clock names the chunk
  a.append(Buffer.alloc(0), 0, T0);
  await sp.flush();
  await Promise.all([a.close(), b.close()]);
  await a.close();
  t.throws(() => a.append(frame(1, 3), 1, T0), /closed/);
  t.throws(() => a.switchConversation('x'), /closed/);
  t.ok(a.isClosed);
  await sp.close();
  const names = sealed.map((c) => c.name).sort();
  t.equal(names.length, 3);
  t.same(names.slice(0, 2).sort(), ['chunks/u/_/1732623456.789.lc3', 'chunks/u/_/1732623456.790.lc3']);
  t.match(names[2], /^chunks\/u\/conv-A\/\d+\.\d{3}\.lc3$/);
  t.same(sealedFrames(dir, 'u').length, 4);
});

t.test('group commit: one journal write and one fdatasync for all sessions', async (t) => {
  const dir = t.testdir();
  const { sp } = spool(t, dir, { fsyncMs: 60_000 });
  const sessions = Array.from({ length: 50 }, (_, i) => sp.openSession({ sessionId: i, uid: `u${i}`, format: LC3 }));
  sessions.forEach((s, i) => s.append(frame(i, 0), 1, T0));
  await sp.flush();
  const st = sp.stats();
  t.equal(st.commits, 1);
  t.equal(st.lastCommit!.sessions, 50);
  t.equal(st.lastCommit!.records, 100, 'an OPEN and a DATA record per session');
  t.equal(st.journalSegments, 1);
  t.equal(st.openChunks, 50);
  t.equal(st.sessions, 50);
  await sp.flush(); // nothing new: no commit
  t.equal(sp.stats().commits, 1);
  await sp.close();
});

t.test('segments rotate by size and age and are deleted once their chunks are sealed', async (t) => {
  const dir = t.testdir();
  let now = T0;
  const { sp, quota } = spool(t, dir, { fsyncMs: 60_000, segmentBytes: 2000, segmentMs: 1000, now: () => now, chunkSeconds: 0.2 });
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const idle = sp.openSession({ sessionId: 2, uid: 'idle', format: LC3 });
  idle.append(frame(2, 0), 1, T0); // holds the first segment until it is sealed
  for (let k = 0; k < 200; k++) {
    s.append(frame(1, k), 1, T0 + k * 10);
    if (k % 10 === 9) await sp.flush();
  }
  await sp.flush();
  t.ok(sp.stats().journalSegments > 2, `rotated by size (${sp.stats().journalSegments} segments)`);
  t.ok(sp.stats().journalBytes > 0);
  await closedWithCommits(sp, idle.close());
  await sp.flush();
  t.equal(sp.stats().journalSegments, 1, 'everything but the current segment deleted');
  now += 5000;
  await sp.flush(); // idle and old: the current segment is retired and deleted
  t.equal(sp.stats().journalSegments, 0);
  t.same(files(join(dir, 'journal')), []);
  await sp.close();
  let sealedBytes = 0;
  for (const f of files(join(dir, 'sealed'))) sealedBytes += statSync(join(dir, 'sealed', f)).size;
  t.equal(quota.bytes, sealedBytes);
  t.equal(sealedFrames(dir, 'u').length, 200);
});

t.test('a chunk open too long (wall clock) is sealed even if not full', async (t) => {
  const dir = t.testdir();
  let now = T0;
  const { sp, sealed } = spool(t, dir, { fsyncMs: 60_000, now: () => now, maxChunkAgeMs: 5000, chunkSeconds: 60 });
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const other = sp.openSession({ sessionId: 2, uid: 'v', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  now += 3000;
  other.append(frame(2, 0), 1, T0 + 3000);
  await sp.flush();
  t.equal(sealed.length, 0);
  t.match(sp.stats(), { openChunks: 2, sealBacklog: 0, oldestOpenMs: 3000 }, 'the oldest unsealed chunk is 3 s old');
  now += 2500;
  await sp.flush(); // s's chunk is 5.5 s old: sealed; other's 2.5 s: kept
  for (let i = 0; i < 1000 && sealed.length === 0; i++) await Promise.all([sp.flush(), new Promise((r) => setTimeout(r, 10))]); // the seal finishes after a later commit (its SEALED record)
  await sp.flush();
  t.same(sealed.map((c) => c.name), ['chunks/u/_/1732623456.789.lc3']);
  t.match(sp.stats(), { openChunks: 1, sealBacklog: 0, oldestOpenMs: 2500 }, "now the other session's chunk is the oldest");
  s.append(frame(1, 1), 1, T0 + 5500); // opens a new chunk
  await sp.close();
  t.equal(sealed.length, 3);
  t.match(sp.stats(), { openChunks: 0, sealBacklog: 0, oldestOpenMs: 0 });
});

t.test('congestion when the audio held in memory reaches the bound; the batch buffer shrinks after a burst', async (t) => {
  const dir = t.testdir();
  const events: boolean[] = [];
  const commits: number[] = [];
  const { sp } = spool(t, dir, { fsyncMs: 60_000, maxPendingBytes: 3200, onCongestion: (c) => events.push(c), onCommit: (c) => commits.push(c.bytes), chunkSeconds: 600 });
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  for (let k = 0; k < 100; k++) s.append(frame(1, k), 1, T0 + k * 10);
  t.ok(sp.isCongested);
  t.ok(sp.stats().heldBytes >= 3200);
  await sp.flush();
  t.notOk(sp.isCongested);
  t.same(events, [true, false]);
  t.equal(commits.length, 1);
  // A 5 MiB burst (a stalled disk), then small commits again.
  const big = Buffer.concat(Array.from({ length: 170_000 }, (_, k) => frame(1, k)));
  s.append(big, 170_000, T0 + 1000);
  await sp.flush();
  s.append(frame(1, 0), 1, T0 + 2_000_000);
  await sp.flush();
  t.same(commits.length, 3);
  t.ok(commits[1]! > 4 << 20);
  await sp.close();
});

t.test('callbacks that throw are reported, not fatal', async (t) => {
  const dir = t.testdir();
  const errors: string[] = [];
  const { sp } = spool(t, dir, {
    maxPendingBytes: 1,
    onDurable: () => {
      throw new Error('ack');
    },
    onSealed: () => {
      throw new Error('sealed');
    },
    onCongestion: () => {
      throw new Error('congestion');
    },
    onError: (e, ctx) => {
      errors.push(`${ctx}: ${e.message}`);
      throw new Error('logger too');
    },
  });
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await s.close();
  t.same(errors.sort(), ['onCongestion callback: congestion', 'onCongestion callback: congestion', 'onDurable callback: ack', 'onSealed callback: sealed']);
  t.throws(() => new ShardSpool({ dir, shard: -1, quota: new SpoolQuota(1) }), /non-negative/);
  t.throws(() => new ShardSpool({ dir, shard: 0, quota: new SpoolQuota(1), fsyncMs: 0 }), /must be positive/);
  await sp.close();
});

t.test('sealed chunks are announced over the BroadcastChannel', async (t) => {
  const dir = t.testdir();
  const got: SealedMessage[] = [];
  const stop = onSealedAnnouncement((m) => got.push(m));
  t.teardown(stop);
  const { sp } = spool(t, dir, { onSealed: announceSealed });
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await s.close();
  for (let i = 0; i < 1000 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(got, [{ name: 'chunks/u/_/1732623456.789.lc3', bytes: 50 }]);
  await sp.close();
});

t.test('spool.close() seals every open session', async (t) => {
  const dir = t.testdir();
  const { sp, sealed } = spool(t, dir);
  for (let i = 0; i < 5; i++) sp.openSession({ sessionId: i, uid: `u${i}`, format: LC3 }).append(frame(i, 0), 1, T0);
  sp.openSession({ sessionId: 99, uid: 'silent', format: LC3 });
  await sp.close();
  t.equal(sealed.length, 5);
  t.same(files(join(dir, 'open')), []);
  t.same(files(join(dir, 'journal')), []);
});
