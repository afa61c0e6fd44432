// The durable job journal (DESIGN §3.4): an append-only JSONL file, {dir}/jobs/journal-{n}.jsonl.
//
// Durability: append() resolves only after its line is written and fdatasync'd. Appends made
// while a commit is being written (or in the same event-loop turn) share the next commit: one
// write and one datasync for the whole group.
//
// Failure: after a failed write or datasync the file's tail is unknown (the failed lines may or
// may not be on disk), so nothing is ever appended to it again: the next commit first rewrites
// the state (the pending jobs as committed, plus done/attempt records, which only ever reduce
// the work) into a new file. Rejected adds are not in that state: a rejected submit is not
// accepted. (Only a crash before that rewrite can bring such a job back: at least once, never lost.)
//
// Rewrite/compaction, crash-safe at each step:
//   1. write the pending jobs as adds to journal-{n+1}.jsonl.tmp, datasync — a crash leaves a
//      .tmp that replay deletes; journal-{n} is untouched and complete;
//   2. rename it to journal-{n+1}.jsonl — atomic: a crash leaves either only journal-{n}, or both,
//      and journal-{n+1} is complete whenever its name exists (its data was durable before);
//   3. fsync the directory — from here the new name survives a crash; only now is anything
//      appended to it (an ack in a file whose name could vanish would be a lost ack);
//   4. unlink every other journal file — a crash before leaves both; replay takes the highest n.
// A failure in steps 1 (before the rename) keeps the old file live; a failure at or after the
// rename makes the journal dirty (every commit fails until a whole rewrite succeeds), because the
// live file on disk is then unknown.
import { join } from 'node:path';
import { errCode, mkdirDurable, nodeIo, type SpoolFile, type SpoolIo } from '../spool/io.js';
import { applyRecord, encodeRecord, JOBS_DIR, journalFileName, journalGeneration, parseJournal, type JournalRecord } from './journal-format.js';
import type { Job, JobLog } from './types.js';

export type { JournalRecord } from './journal-format.js';

export interface JobJournalOptions {
  /** SPOOL_DIR: the journal lives in {dir}/jobs/. */
  dir: string;
  io?: SpoolIo;
  log?: JobLog;
  /** Compact when more than this many records are obsolete and they are more than half the file. */
  compactMinObsolete?: number;
}

interface Pending {
  rec: JournalRecord;
  line: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class JobJournal {
  readonly jobsDir: string;
  private readonly io: SpoolIo;
  private readonly log: JobLog;
  private readonly compactMinObsolete: number;
  /** The committed state: jobs added and not done, with their latest attempt record applied. */
  private readonly pending = new Map<string, Job>();
  private waiting: Pending[] = [];
  private committing: Promise<void> | undefined;
  private file: SpoolFile | undefined;
  private gen = 0;
  private size = 0;
  private records = 0;
  private dirty = false;
  private closed = false;
  /** After a failed compaction the next try waits until the file has grown by compactMinObsolete. */
  private compactRetryAt = 0;
  private readonly counters = { commits: 0, compactions: 0, corrupt: 0 };

  constructor(o: JobJournalOptions) {
    this.jobsDir = join(o.dir, JOBS_DIR);
    this.io = o.io ?? nodeIo;
    this.log = o.log ?? (() => {});
    this.compactMinObsolete = o.compactMinObsolete ?? 1000;
  }

  /** Opens the live journal (creating it), cuts a torn tail, skips corrupt lines; returns the pending jobs. */
  async replay(): Promise<Job[]> {
    if (this.file) throw new Error('journal already open');
    await mkdirDurable(this.io, this.jobsDir);
    const names = (await this.io.readdir(this.jobsDir)).map((e) => e.name);
    this.gen = Math.max(0, ...names.map((n) => journalGeneration(n) ?? 0));
    if (this.gen === 0) {
      this.gen = 1;
      this.file = await this.io.open(this.path(), 'excl');
      await this.io.fsyncDir(this.jobsDir); // the new name must survive before anything in it is acked
    } else {
      const buf = await this.io.readFile(this.path());
      const parsed = parseJournal(buf);
      for (const line of parsed.corrupt) this.log('job journal: corrupt line skipped', { file: this.path(), line });
      this.counters.corrupt += parsed.corrupt.length;
      this.file = await this.io.open(this.path(), 'rw');
      if (parsed.validBytes < buf.length) {
        this.log('job journal: torn tail cut', { file: this.path(), bytes: buf.length - parsed.validBytes });
        await this.file.truncate(parsed.validBytes);
        await this.file.datasync();
      }
      for (const [id, job] of parsed.pending) this.pending.set(id, job);
      this.size = parsed.validBytes;
      this.records = parsed.records;
    }
    await this.removeOthers(names);
    if (this.shouldCompact()) await this.compact();
    return [...this.pending.values()].map((j) => ({ ...j }));
  }

  /** Resolves once `rec` is durable (group commit); rejects when it could not be made so. */
  append(rec: JournalRecord): Promise<void> {
    if (this.closed || !this.file) return Promise.reject(new Error(this.closed ? 'job journal closed' : 'job journal not open'));
    let line: string;
    try {
      line = encodeRecord(rec);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ rec, line, resolve, reject });
      // setImmediate, not a microtask: every append of this event-loop turn joins the first commit.
      this.committing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.commitLoop());
    });
  }

  stats(): { file: string; records: number; pending: number; bytes: number; commits: number; compactions: number; corrupt: number } {
    return { file: this.path(), records: this.records, pending: this.pending.size, bytes: this.size, ...this.counters };
  }

  /** Waits for every append made so far (rewriting a dirty journal), then closes; later appends reject. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.committing) await this.committing;
    if (this.dirty && this.file) await this.compact().catch(() => {}); // else a restart may redo finished jobs
    await this.file?.close();
    this.file = undefined;
  }

  private path(gen = this.gen): string {
    return join(this.jobsDir, journalFileName(gen));
  }

  private async commitLoop(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting;
      this.waiting = [];
      try {
        if (this.dirty) await this.compact();
        const buf = Buffer.from(batch.map((p) => p.line).join(''));
        try {
          await this.file!.write(buf, this.size);
          await this.file!.datasync();
        } catch (e) {
          this.dirty = true;
          throw e;
        }
        this.size += buf.length;
        this.records += batch.length;
        this.counters.commits++;
        for (const p of batch) applyRecord(this.pending, p.rec);
        for (const p of batch) p.resolve();
      } catch (e) {
        this.log('job journal: commit failed', { file: this.path(), records: batch.length, error: String(e) });
        // done/attempt records still move the state on (the rewrite persists them); adds are refused.
        for (const p of batch) if (p.rec.op !== 'add') applyRecord(this.pending, p.rec);
        for (const p of batch) p.reject(e);
      }
      if (!this.dirty && this.shouldCompact()) await this.compact().catch(() => {});
    }
    this.committing = undefined;
  }

  private shouldCompact(): boolean {
    const obsolete = this.records - this.pending.size;
    return obsolete > this.compactMinObsolete && obsolete * 2 > this.records && this.records >= this.compactRetryAt;
  }

  /** Steps 1–4 of the header comment. Throws when the state could not be rewritten. */
  private async compact(): Promise<void> {
    const gen = this.gen + 1;
    const path = this.path(gen);
    const tmp = `${path}.tmp`;
    const buf = Buffer.from([...this.pending.values()].map((job) => encodeRecord({ op: 'add', job })).join(''));
    let file: SpoolFile | undefined;
    let renamed = false;
    try {
      file = await this.io.open(tmp, 'excl');
      await file.write(buf, 0);
      await file.datasync();
      renamed = true; // from here on, journal-{gen} may exist on disk
      this.gen = gen;
      await this.io.rename(tmp, path);
      await this.io.fsyncDir(this.jobsDir);
    } catch (e) {
      await file?.close().catch(() => {});
      await this.io.unlink(tmp).catch(() => {});
      if (renamed) this.dirty = true;
      else this.compactRetryAt = this.records + this.compactMinObsolete;
      this.log('job journal: rewrite failed', { file: path, dirty: this.dirty, error: String(e) });
      throw e;
    }
    const old = this.file;
    this.file = file;
    this.size = buf.length;
    this.records = this.pending.size;
    this.dirty = false;
    this.compactRetryAt = 0;
    this.counters.compactions++;
    await old?.close().catch(() => {});
    await this.removeOthers((await this.io.readdir(this.jobsDir).catch(() => [])).map((e) => e.name));
  }

  /** Removes every journal file and temporary but the live one (best effort: replay does it again). */
  private async removeOthers(names: string[]): Promise<void> {
    const live = journalFileName(this.gen);
    for (const name of names) {
      if (name === live || !(journalGeneration(name) !== undefined || /^journal-\d+\.jsonl\.tmp$/.test(name))) continue;
      try {
        await this.io.unlink(join(this.jobsDir, name));
      } catch (e) {
        if (errCode(e) !== 'ENOENT') this.log('job journal: stale file not removed', { file: name, error: String(e) });
      }
    }
  }
}
