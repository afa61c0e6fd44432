// ShardSpool under I/O faults: nothing is acknowledged before its fsync, nothing acknowledged is
// lost, and every fault is retried until the chunk is sealed byte-exact.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseLc3File } from '../src/formats/lc3file.js';
import { nodeIo, type SpoolFile, type SpoolIo } from '../src/spool/io.js';
import { segmentFileName } from '../src/spool/names.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool, type SealedChunk, type ShardSpoolOptions } from '../src/spool/shard-spool.js';
import { closedWithCommits, frame, LC3, T0 } from './support/spool.js';


type Op = 'open' | 'write' | 'datasync' | 'truncate' | 'close' | 'mkdirp' | 'readFile' | 'readdir' | 'stat' | 'link' | 'rename' | 'unlink' | 'rmdir' | 'fsyncDir';
/** Returns an error to throw for this operation, or undefined to let it through. */
type Rule = (op: Op, path: string, extra?: number) => Error | undefined;

function fault(code: string): Error {
  return Object.assign(new Error(`injected ${code}`), { code });
}

/** `n` failures of `op` on paths matching `re`, then success. */
function times(n: number, op: Op, re: RegExp, code = 'EIO'): Rule {
  let left = n;
  return (o, p) => (o === op && re.test(p) && left-- > 0 ? fault(code) : undefined);
}

function faultyIo(...rules: Rule[]): SpoolIo {
  const check = (op: Op, path: string, extra?: number): void => {
    for (const r of rules) {
      const e = r(op, path, extra);
      if (e) throw e;
    }
  };
  const wrap = (f: SpoolFile, path: string): SpoolFile => ({
    write: async (d, pos) => {
      check('write', path, pos);
      return f.write(d, pos);
    },
    datasync: async () => {
      check('datasync', path);
      return f.datasync();
    },
    truncate: async (n) => {
      check('truncate', path);
      return f.truncate(n);
    },
    close: async () => {
      await f.close();
      check('close', path);
    },
  });
  return {
    open: async (p, mode) => {
      check('open', p);
      return wrap(await nodeIo.open(p, mode), p);
    },
    mkdirp: async (p) => (check('mkdirp', p), nodeIo.mkdirp(p)),
    readFile: async (p) => (check('readFile', p), nodeIo.readFile(p)),
    readdir: async (p) => (check('readdir', p), nodeIo.readdir(p)),
    stat: async (p) => (check('stat', p), nodeIo.stat(p)),
    link: async (a, b) => (check('link', b), nodeIo.link(a, b)),
    rename: async (a, b) => (check('rename', b), nodeIo.rename(a, b)),
    unlink: async (p) => (check('unlink', p), nodeIo.unlink(p)),
    rmdir: async (p) => (check('rmdir', p), nodeIo.rmdir(p)),
    fsyncDir: async (p) => (check('fsyncDir', p), nodeIo.fsyncDir(p)),
  };
}

function allFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => statSync(join(root, f)).isFile()).sort();
}

function sealedFrames(dir: string): Buffer[] {
  const root = join(dir, 'sealed');
  return allFiles(root)
    .sort((a, b) => (basename(a) < basename(b) ? -1 : 1))
    .flatMap((f) => parseLc3File(readFileSync(join(root, f))).frames.map((x) => Buffer.from(x)));
}

interface Rig {
  sp: ShardSpool;
  quota: SpoolQuota;
  acks: [number, number][];
  errors: string[];
  sealed: SealedChunk[];
}

function rig(t: { teardown(fn: () => void): void }, dir: string, io: SpoolIo, o: Partial<ShardSpoolOptions> = {}): Rig {
  const quota = new SpoolQuota(1 << 30);
  const acks: [number, number][] = [];
  const errors: string[] = [];
  const sealed: SealedChunk[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 0,
    quota,
    io,
    fsyncMs: 60_000, // commits driven by flush()
    chunkSeconds: 1,
    onDurable: (_id, f, b) => acks.push([f, b]),
    onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
    onSealed: (c) => sealed.push(c),
    ...o,
  });
  t.teardown(() => sp.abort());
  return { sp, quota, acks, errors, sealed };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Sends `n` frames from frame `from` of session 1, one commit per `per` frames. */
async function send(r: Rig, s: ReturnType<ShardSpool['openSession']>, from: number, n: number, per = 10): Promise<Buffer[]> {
  const sent: Buffer[] = [];
  for (let k = from; k < from + n; k++) {
    s.append(frame(1, k), 1, T0 + k * 10);
    sent.push(frame(1, k));
    if ((k + 1) % per === 0) await r.sp.flush();
  }
  return sent;
}

t.test('journal write and fdatasync failures: no ack until rewritten into a fresh segment', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(1, 'write', /\.jnl$/, 'ENOSPC'), times(1, 'datasync', /\.jnl$/)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await r.sp.flush();
  t.same(r.acks, [], 'write failed: nothing acknowledged');
  t.same(s.durable, { frames: 0, bytes: 0 });
  t.ok(r.sp.stats().heldBytes > 30, 'the batch is kept in memory');
  s.append(frame(1, 1), 1, T0 + 10);
  await r.sp.flush();
  t.same(r.acks, [], 'fdatasync failed: nothing acknowledged');
  s.append(frame(1, 2), 1, T0 + 20);
  await r.sp.flush();
  t.same(r.acks, [[3, 90]], 'all three frames acknowledged together');
  t.equal(r.sp.stats().commitErrors, 2);
  const sent = [frame(1, 0), frame(1, 1), frame(1, 2)];
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
  t.match(r.errors, ['journal: injected ENOSPC', 'journal: injected EIO']);
});

t.test('journal directory and segment creation failures are retried', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(1, 'mkdirp', /journal$/), times(1, 'open', /\.jnl$/), times(1, 'fsyncDir', /journal$/)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 40);
  t.equal(r.sp.stats().commitErrors, 3);
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
});

t.test('a taken segment name is skipped', async (t) => {
  const dir = t.testdir({ journal: {} });
  const r = rig(t, dir, nodeIo);
  writeFileSync(join(dir, 'journal', segmentFileName(0, r.sp.run, 0)), 'someone else');
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 10);
  t.ok(existsSync(join(dir, 'journal', segmentFileName(0, r.sp.run, 1))));
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
  t.same(allFiles(join(dir, 'journal')), [segmentFileName(0, r.sp.run, 0)], 'only the foreign file is left');
});

t.test('chunk file create, header and data write failures: acked data is written later', async (t) => {
  const dir = t.testdir();
  let headerFails = 1;
  let dataFails = 2;
  const r = rig(
    t,
    dir,
    faultyIo(
      times(1, 'open', /\.lc3$/),
      (op, p, pos) => (op === 'write' && /\.lc3$/.test(p) && pos === 0 && headerFails-- > 0 ? fault('EIO') : undefined),
      (op, p, pos) => (op === 'write' && /\.lc3$/.test(p) && pos === 18 + 32 * 10 && dataFails-- > 0 ? fault('EIO') : undefined),
    ),
  );
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 10);
  t.same(r.acks.at(-1), [10, 300], 'acknowledged: it is in the journal');
  t.equal(r.sp.stats().writeErrors, 1, 'create failed');
  t.ok(r.sp.stats().heldBytes >= 320, 'failed writes are held (copied) until they succeed');
  await r.sp.flush();
  t.equal(r.sp.stats().writeErrors, 2, 'then the header write');
  sent.push(...(await send(r, s, 10, 10)));
  t.equal(r.sp.stats().writeErrors, 3, 'then the second data write');
  await r.sp.flush();
  t.equal(r.sp.stats().writeErrors, 4, 'and again');
  await r.sp.flush();
  t.equal(r.sp.stats().heldBytes, 0, 'written');
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
  t.match(r.errors, ['chunk write: injected EIO']);
});

t.test('a chunk write that fails once is retried at the next commit', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(1, 'write', /\.lc3$/), times(1, 'open', /\.lc3$/, 'ENOENT')));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 30);
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
  t.equal(r.sp.stats().heldBytes, 0);
});

t.test('open file directory keeps vanishing: gives up after 20 tries, retries next commit', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(21, 'open', /\.lc3$/, 'ENOENT')));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 20);
  t.equal(r.sp.stats().writeErrors, 1);
  await r.sp.close();
  t.same(sealedFrames(dir), sent);
});

t.test('seal fdatasync failure: the chunk is rebuilt from the journal, then sealed', async (t) => {
  const dir = t.testdir();
  let armed = true;
  const r = rig(
    t,
    dir,
    faultyIo((op, p) => {
      if (op !== 'datasync' || !/\.lc3$/.test(p) || !armed) return undefined;
      armed = false;
      // The page cache "lost" the chunk's pages (fsyncgate): scribble over the open file.
      writeFileSync(p, Buffer.alloc(5000, 0x55));
      return fault('EIO');
    }),
  );
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 50);
  const closing = s.close();
  await r.sp.flush();
  await closedWithCommits(r.sp, closing);
  t.equal(r.sp.stats().sealErrors, 1);
  t.same(sealedFrames(dir), sent, 'rebuilt byte-exact from the journal');
  await r.sp.close();
});

t.test('seal: link, unlink and directory fsync failures are retried from where they failed', async (t) => {
  const dir = t.testdir();
  const r = rig(
    t,
    dir,
    faultyIo(times(1, 'link', /\.lc3$/), times(1, 'unlink', /open.*\.lc3$/), times(1, 'fsyncDir', /sealed.chunks.u.c$/), times(3, 'link', /\.lc3$/, 'ENOENT')),
  );
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', conversationId: 'c', format: LC3 });
  const sent = await send(r, s, 0, 10);
  const closing = s.close();
  await r.sp.flush();
  await closedWithCommits(r.sp, closing);
  t.equal(r.sp.stats().sealErrors, 3);
  t.same(sealedFrames(dir), sent);
  t.same(allFiles(join(dir, 'open')), []);
  await r.sp.close();
});

t.test('seal: the open file vanished → rebuilt from the journal', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(21, 'link', /\.lc3$/, 'ENOENT')));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  const sent = await send(r, s, 0, 10);
  const closing = s.close();
  await r.sp.flush();
  await closedWithCommits(r.sp, closing);
  t.same(sealedFrames(dir), sent);
  await r.sp.close();
});

t.test('rebuild refuses a journal that does not hold the whole chunk', async (t) => {
  const dir = t.testdir();
  let armed = true;
  const r = rig(t, dir, faultyIo((op, p) => (op === 'datasync' && /\.lc3$/.test(p) && armed ? ((armed = false), fault('EIO')) : undefined)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  await send(r, s, 0, 10);
  const seg = join(dir, 'journal', allFiles(join(dir, 'journal'))[0]!);
  const good = readFileSync(seg);
  const closing = s.close();
  await r.sp.flush();
  await until(() => r.sp.stats().sealErrors === 1, 'first seal failure');
  writeFileSync(seg, good.subarray(0, 200)); // the DATA record is gone
  await until(() => r.errors.some((e) => /journal holds 0 bytes/.test(e)), 'rebuild to notice');
  writeFileSync(seg, good);
  await closedWithCommits(r.sp, closing);
  t.equal(sealedFrames(dir).length, 10);
  await r.sp.close();
});

t.test('segment deletion and close failures are reported and retried', async (t) => {
  const dir = t.testdir();
  let now = T0;
  const r = rig(t, dir, faultyIo(times(1, 'unlink', /\.jnl$/), times(1, 'close', /\.jnl$/)), { segmentMs: 1000, now: () => now });
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  await send(r, s, 0, 10);
  now += 2000;
  await send(r, s, 10, 10); // rotation: closing the old segment fails (reported)
  const closing = s.close();
  await r.sp.flush();
  await closedWithCommits(r.sp, closing);
  await r.sp.close();
  t.match(r.errors.join('\n'), /journal close: injected EIO/);
  t.match(r.errors.join('\n'), /journal delete: injected EIO/);
  t.same(allFiles(join(dir, 'journal')), []);
  t.equal(sealedFrames(dir).length, 20);
});

t.test('a segment deleted behind our back is fine', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo(times(1, 'unlink', /\.jnl$/, 'ENOENT')));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  await send(r, s, 0, 5);
  await r.sp.close();
  t.equal(r.errors.length, 0);
  t.equal(r.quota.bytes, statSync(join(dir, 'sealed', 'chunks', 'u', '_', allFiles(join(dir, 'sealed', 'chunks', 'u', '_'))[0]!)).size);
});

t.test('abort stops everything, also pending seal retries; later flushes are no-ops', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, faultyIo((op) => (op === 'link' ? fault('EIO') : undefined)));
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  void s.close();
  await r.sp.flush();
  await until(() => r.sp.stats().sealErrors > 0, 'a seal failure');
  const closing = r.sp.close(); // would wait for the seal forever
  await new Promise((res) => setTimeout(res, 80));
  r.sp.abort();
  await closing;
  await new Promise((res) => setTimeout(res, 100)); // a seal attempt running at the abort ends
  const errors = r.sp.stats().sealErrors;
  await new Promise((res) => setTimeout(res, 300));
  t.equal(r.sp.stats().sealErrors, errors, 'no more retries after abort');
  await r.sp.flush();
  await r.sp.close();
  t.same(allFiles(join(dir, 'sealed')), []);
});

t.test('defaults, and failures that are not Error objects', async (t) => {
  const dir = t.testdir();
  let once = true;
  const errors: string[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 1,
    quota: new SpoolQuota(1 << 20),
    io: faultyIo((op, p) => (op === 'write' && /\.jnl$/.test(p) && once ? ((once = false), 'boom' as unknown as Error) : undefined)),
    onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
  });
  t.equal(sp.fsyncMs, 200);
  t.equal(sp.chunkSeconds, 60);
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await sp.flush();
  await sp.close();
  t.same(errors, ['journal: boom']);
  t.equal(sealedFrames(dir).length, 1);
});

t.test('thousands of short chunks: the age queue is compacted', async (t) => {
  const dir = t.testdir();
  const r = rig(t, dir, nodeIo, { chunkSeconds: 0.01, sealConcurrency: 8 });
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  for (let k = 0; k < 1100; k++) s.append(frame(1, k), 1, T0 + k * 10);
  await r.sp.flush();
  await r.sp.close();
  t.equal(r.sealed.length, 1100);
  t.equal(sealedFrames(dir).length, 1100);
});

t.test('slow chunk files never hold back the next commit (its ack)', async (t) => {
  const dir = t.testdir();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const io: SpoolIo = {
    ...nodeIo,
    open: async (p, mode) => {
      const f = await nodeIo.open(p, mode);
      if (!p.endsWith('.lc3')) return f;
      return { ...f, write: async (d: Uint8Array, pos: number) => (await gate, f.write(d, pos)), datasync: () => f.datasync(), truncate: (n: number) => f.truncate(n), close: () => f.close() };
    },
  };
  const r = rig(t, dir, io);
  const s = r.sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  const first = r.sp.flush(); // its chunk write hangs at the gate
  await until(() => r.acks.length === 1, 'the first ack');
  s.append(frame(1, 1), 1, T0 + 10);
  let secondDone = false;
  const second = r.sp.flush().then(() => (secondDone = true));
  await until(() => r.acks.length === 2, 'the second ack, while the first chunk write still waits');
  t.same(r.acks, [[1, 30], [2, 60]]);
  t.notOk(secondDone, 'flush() also waits for the chunk files');
  t.ok(r.sp.stats().heldBytes >= 64, 'bytes waiting for the chunk file count as held');
  release();
  await Promise.all([first, second]);
  t.equal(r.sp.stats().heldBytes, 0);
  await r.sp.close();
  t.same(sealedFrames(dir), [frame(1, 0), frame(1, 1)]);
});
