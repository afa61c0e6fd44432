// The durable job journal: an add is on disk before submit() resolves; same-tick appends share one
// write + datasync; a torn tail is cut and corrupt lines skipped; compaction is crash-safe at every
// step (crashes simulated through the SpoolIo seam); a failed commit never leaves a half-accepted job.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient } from '../src/http/client.js';
import { JobJournal } from '../src/jobs/journal.js';
import { decodeRecord, parseJournal, type JournalRecord } from '../src/jobs/journal-format.js';
import { processConversationExecutor, processJobSpec } from '../src/jobs/process-conversation.js';
import { JobQueue } from '../src/jobs/queue.js';
import type { Job } from '../src/jobs/types.js';
import { fault, hookedIo, receiver, until, type IoOp } from './support/jobs-child.js';

const http = new HttpClient({ allowPrivate: true });
t.teardown(() => http.close());

function job(id: string, extra: Partial<Job> = {}): Job {
  return { id, kind: 'process', uid: 'u1', key: `u1\n${id}\n`, payload: { uid: 'u1', conversation_id: id }, createdMs: 1, attempts: 0, notBefore: 1, ...extra };
}
const add = (id: string): JournalRecord => ({ op: 'add', job: job(id) });
const done = (id: string): JournalRecord => ({ op: 'done', id, ok: true });
const line = (r: JournalRecord): string => JSON.stringify(r) + '\n';
const jobsDir = (dir: string): string => join(dir, 'jobs');
const journalFiles = (dir: string): string[] => readdirSync(jobsDir(dir)).sort();
const lines = (path: string): string[] => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');

async function replayed(dir: string): Promise<string[]> {
  const j = new JobJournal({ dir });
  const ids = (await j.replay()).map((x) => x.id);
  await j.close();
  return ids;
}

t.test('the add record is written and datasync\'d before submit resolves, and before any POST', async (t) => {
  const dir = t.testdir();
  const events: string[] = [];
  const io = hookedIo(
    (op, p) => void (p.includes('journal-') && (op === 'write' || op === 'datasync') && events.push(`${op} start`)),
    (op, p) => void (p.includes('journal-') && (op === 'write' || op === 'datasync') && events.push(`${op} done`)),
  );
  const rx = await receiver((r) => (events.push(`POST ${String(r.json?.conversation_id)}`), { status: 200 }));
  t.teardown(() => rx.close());
  const q = new JobQueue({ dir, io, executors: { process: processConversationExecutor(http, rx.url) }, concurrency: 1, maxPending: 10 });
  await q.start();
  const { job: j, done: finished } = await q.submit(processJobSpec('u1', { conversation_id: 'c1' }));
  events.push('submitted');
  const onDisk = lines(join(jobsDir(dir), 'journal-1.jsonl')).map(decodeRecord);
  t.same(onDisk[0], { op: 'add', job: { ...j, attempts: 0 } }, 'the add record is in the file when submit resolves');
  t.same(await finished, { ok: true, reply: { conversation_id: 'c1', success: true } });
  t.same(events.slice(0, 5), ['write start', 'write done', 'datasync start', 'datasync done', 'submitted'], 'write, datasync, then accepted');
  t.ok(events.indexOf('POST c1') > events.indexOf('datasync done'), 'no work before the fsync');
  await q.close();
  t.same(await replayed(dir), [], 'done journaled');
});

t.test('group commit: appends of one turn share one write and one datasync', async (t) => {
  const dir = t.testdir();
  const count: Partial<Record<IoOp, number>> = {};
  const io = hookedIo((op, p) => void (p.includes('journal-') && (count[op] = (count[op] ?? 0) + 1)));
  const j = new JobJournal({ dir, io });
  await j.replay();
  const base = { ...count };
  await Promise.all(Array.from({ length: 20 }, (_, i) => j.append(add(`g${i}`))));
  t.equal((count.datasync ?? 0) - (base.datasync ?? 0), 1, 'one datasync for 20 appends');
  t.equal((count.write ?? 0) - (base.write ?? 0), 1, 'one write');
  t.equal(j.stats().pending, 20);
  await j.close();
  await t.rejects(j.append(add('late')), /closed/, 'appends after close reject');
  t.equal((await replayed(dir)).length, 20);

  // Through the queue: N concurrent submits cost fewer than N datasyncs.
  const q = new JobQueue({ dir: join(dir, 'queue'), io, executors: {}, concurrency: 1, maxPending: 100 });
  await q.start();
  const before = count.datasync ?? 0;
  const far = Date.now() + 3_600_000; // nothing starts: only the adds are written
  const subs = await Promise.all(Array.from({ length: 30 }, (_, i) => q.submit({ kind: 'process', uid: 'u', key: `k${i}`, payload: {}, notBefore: far })));
  const syncs = (count.datasync ?? 0) - before;
  t.ok(syncs >= 1 && syncs < 30, `30 concurrent submits, ${syncs} datasync(s)`);
  t.equal(new Set(subs.map((s) => s.job.id)).size, 30);
  await q.close();
});

t.test('a torn last line is cut; the journal goes on after it', async (t) => {
  const dir = t.testdir();
  mkdirSync(jobsDir(dir));
  const path = join(jobsDir(dir), 'journal-1.jsonl');
  const good = line(add('a')) + line(add('b'));
  writeFileSync(path, good + line(add('c')).slice(0, 25));
  const logs: string[] = [];
  const j = new JobJournal({ dir, log: (m) => logs.push(m) });
  t.same((await j.replay()).map((x) => x.id), ['a', 'b'], 'the torn add is not a job');
  t.equal(statSync(path).size, Buffer.byteLength(good), 'the tail is truncated on disk');
  t.match(logs, [/torn tail/]);
  await j.append(done('a'));
  await j.close();
  t.same(lines(path).map((l) => decodeRecord(l)?.op), ['add', 'add', 'done'], 'every line is a record');
  t.same(await replayed(dir), ['b']);
});

t.test('corrupt lines are skipped and logged, never the whole journal', async (t) => {
  const dir = t.testdir();
  mkdirSync(jobsDir(dir));
  const attempt: JournalRecord = { op: 'attempt', id: 'b', attempts: 3, notBefore: 12345 };
  const body = [line(add('a')), 'not json\n', '{"op":"add","job":{"id":1}}\n', '{"op":"nope"}\n', '\0\0\0\n', '[1]\n', line(add('b')), line(attempt), line(done('a')), line({ op: 'attempt', id: 'gone', attempts: 1, notBefore: 1 })];
  writeFileSync(join(jobsDir(dir), 'journal-1.jsonl'), body.join(''));
  const logged: { msg: string; line?: number }[] = [];
  const j = new JobJournal({ dir, log: (msg, f) => logged.push({ msg, ...(f as { line?: number }) }) });
  const jobs = await j.replay();
  t.same(jobs.map((x) => [x.id, x.attempts, x.notBefore]), [['b', 3, 12345]], 'the good records count; the attempt record restores the backoff');
  t.same(logged.filter((l) => /corrupt/.test(l.msg)).map((l) => l.line), [2, 3, 4, 5, 6]);
  t.equal(j.stats().corrupt, 5);
  await j.close();
  t.equal(parseJournal(Buffer.from('')).records, 0, 'an empty file has no records');
});

t.test('stale files: the highest generation is live, the others and temporaries go', async (t) => {
  const dir = t.testdir();
  mkdirSync(jobsDir(dir));
  writeFileSync(join(jobsDir(dir), 'journal-1.jsonl'), line(add('old')));
  writeFileSync(join(jobsDir(dir), 'journal-3.jsonl'), line(add('live')));
  writeFileSync(join(jobsDir(dir), 'journal-4.jsonl.tmp'), line(add('half')));
  writeFileSync(join(jobsDir(dir), 'other.txt'), 'not ours');
  t.same(await replayed(dir), ['live']);
  t.same(journalFiles(dir), ['journal-3.jsonl', 'other.txt']);
  const j = new JobJournal({ dir });
  await j.replay();
  await t.rejects(j.replay(), /already open/);
  await t.rejects(j.append({ op: 'add', job: job('big', { payload: { n: 1n } }) }), /BigInt/, 'an unserializable record rejects');
  await j.close();
  await t.rejects(new JobJournal({ dir }).append(add('x')), /not open/);
});

/** 30 adds then 25 dones (two commits): past the threshold of 10, the second one compacts. */
async function buildCompactable(j: JobJournal): Promise<void> {
  await j.replay();
  await Promise.all(Array.from({ length: 30 }, (_, i) => j.append(add(`j${i}`))));
  await Promise.all(Array.from({ length: 25 }, (_, i) => j.append(done(`j${i}`))));
}
const survivors = ['j25', 'j26', 'j27', 'j28', 'j29'];

t.test('compaction writes the pending jobs to a new file and removes the old one', async (t) => {
  const dir = t.testdir();
  const j = new JobJournal({ dir, compactMinObsolete: 10 });
  await buildCompactable(j);
  await until('compaction', () => j.stats().compactions === 1);
  t.same(journalFiles(dir), ['journal-2.jsonl']);
  t.equal(lines(join(jobsDir(dir), 'journal-2.jsonl')).length, 5, 'one add per pending job');
  await j.append(done('j25'));
  t.match(j.stats(), { records: 6, pending: 4, commits: 3, compactions: 1 });
  await j.close();
  t.same(await replayed(dir), survivors.slice(1));
  // A journal that needs compaction already at start is compacted by replay.
  const dir2 = join(dir, 'second');
  mkdirSync(jobsDir(dir2), { recursive: true });
  writeFileSync(join(jobsDir(dir2), 'journal-7.jsonl'), [...Array.from({ length: 20 }, (_, i) => line(add(`r${i}`)) + line(done(`r${i}`))), line(add('keep'))].join(''));
  const j2 = new JobJournal({ dir: dir2, compactMinObsolete: 10 });
  t.same((await j2.replay()).map((x) => x.id), ['keep']);
  t.same(journalFiles(dir2), ['journal-8.jsonl']);
  await j2.close();
});

for (const [step, op, re] of [
  ['writing the new file', 'write', /\.tmp$/],
  ['its datasync', 'datasync', /\.tmp$/],
  ['the rename', 'rename', /journal-2\.jsonl$/],
  ['the directory fsync', 'fsyncDir', /jobs$/],
  ['removing the old file', 'unlink', /journal-1\.jsonl$/],
] as const) {
  t.test(`compaction: a crash at ${step} loses nothing`, async (t) => {
    const dir = t.testdir();
    let armed = false;
    let crashed = false;
    const io = hookedIo((o, p) => {
      if (crashed) throw fault('ECRASHED');
      if (armed && o === op && re.test(p)) {
        crashed = true;
        throw fault('ECRASHED');
      }
    });
    const j = new JobJournal({ dir, io, compactMinObsolete: 10 });
    await j.replay();
    await Promise.all(Array.from({ length: 30 }, (_, i) => j.append(add(`j${i}`))));
    armed = true;
    await Promise.all(Array.from({ length: 25 }, (_, i) => j.append(done(`j${i}`))));
    await until(`the crash at ${step}`, () => crashed);
    await j.close(); // the dead process's journal: nothing of it runs any more
    t.same(await replayed(dir), survivors, 'the restart sees exactly the acknowledged state');
    t.equal(journalFiles(dir).length, 1, `one journal file left (${journalFiles(dir).join(', ')})`);
  });
}

t.test('a failed datasync rejects the batch and the next commit rewrites without it', async (t) => {
  const dir = t.testdir();
  let failSync = 0;
  const io = hookedIo((op, p) => {
    if (op === 'datasync' && p.endsWith('journal-1.jsonl') && failSync-- > 0) throw fault('EIO');
  });
  const logs: string[] = [];
  const j = new JobJournal({ dir, io, log: (m) => logs.push(m) });
  await j.replay();
  await j.append(add('a'));
  failSync = 1;
  const [rAdd, rDone] = await Promise.allSettled([j.append(add('lost')), j.append(done('a'))]);
  t.match(rAdd, { status: 'rejected', reason: { code: 'EIO' } }, 'the add is refused');
  t.equal(rDone.status, 'rejected');
  t.equal(j.stats().pending, 0, 'the done still counts in memory; the refused add never did');
  t.ok(readFileSync(join(jobsDir(dir), 'journal-1.jsonl'), 'utf8').includes('"lost"'), 'its bytes did reach the old file');
  await j.append(add('b'));
  t.same(journalFiles(dir), ['journal-2.jsonl'], 'the state was rewritten to a new file first');
  t.same(lines(join(jobsDir(dir), 'journal-2.jsonl')).map((l) => decodeRecord(l)?.op), ['add']);
  await j.close();
  t.same(await replayed(dir), ['b'], 'neither the refused add nor the finished job comes back');
  t.match(logs, [/commit failed/]);
});

t.test('a failed rewrite before the rename keeps the old file; after it, every commit fails until one succeeds', async (t) => {
  const dir = t.testdir();
  const rules: ((op: IoOp, p: string) => boolean)[] = [];
  const io = hookedIo((op, p) => {
    const i = rules.findIndex((r) => r(op, p));
    if (i >= 0) {
      rules.splice(i, 1);
      throw fault('EIO');
    }
  });
  const j = new JobJournal({ dir, io, compactMinObsolete: 10 });
  rules.push((op, p) => op === 'open' && p.endsWith('.tmp'));
  await buildCompactable(j);
  await j.append(add('x'));
  t.equal(j.stats().compactions, 0, 'the compaction failed');
  t.same(journalFiles(dir), ['journal-1.jsonl'], 'the old file stays live and takes appends');
  // The next try waits until the file grew by the threshold (10 records): at 65 records.
  rules.push((op) => op === 'fsyncDir', (op) => op === 'fsyncDir');
  const fillers = Array.from({ length: 9 }, (_, i) => `f${i}`);
  await Promise.all(fillers.map((id) => j.append(add(id))));
  await until('the second compaction to fail at its directory fsync', () => rules.length === 1);
  await t.rejects(j.append(add('z')), { code: 'EIO' }, 'the rename may or may not be durable: nothing is acked meanwhile');
  t.equal(rules.length, 0);
  await j.append(add('w'));
  t.equal(j.stats().compactions, 1);
  t.same(journalFiles(dir), ['journal-4.jsonl']);
  await j.close();
  t.same(await replayed(dir), [...survivors, 'x', ...fillers, 'w']);
  t.notOk(existsSync(join(jobsDir(dir), 'journal-4.jsonl.tmp')));
});
