// The sealer: turns a chunk whose SEAL is journaled (and whose bytes are all in its open file)
// into a durable sealed file, in the background, `sealConcurrency` at a time:
//   0. final header, fdatasync, close      (after a failure: rebuild the file from the journal)
//   1. link into sealed/{object name}       (a taken name gets the next one: never overwritten)
//   2. fsync the sealed file's directory
//   3. hand the chunk to the next commit for its SEALED record (takeMarks)
//   4. once that record is durable: remove the open name, prune empty directories, done.
// The open name stays until the SEALED record is durable: recovery reads "no open file, no SEALED
// record" as "the file was not created yet" and rebuilds it from the journal, and "no open file,
// SEALED" as "sealed, maybe uploaded since". A failed step is retried from where it failed with
// capped exponential backoff.
import { dirname, join } from 'node:path';
import type { Chunk } from './chunk.js';
import { openInDir } from './chunk-files.js';
import type { SpoolContext } from './context.js';
import { chunkHeader, headerBytes } from './format.js';
import { errCode, linkUnique, pruneDirs } from './io.js';
import type { JournalSegments } from './journal-segments.js';

const noop = (): void => undefined;

export class Sealer {
  private readonly queue: Chunk[] = [];
  private sealing = 0;
  /** Chunks handed to the sealer and not yet sealed. */
  private backlog = 0;
  /** Chunks whose sealed file is durable, waiting for their SEALED record. */
  private marks: Chunk[] = [];
  private readonly retryTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly ctx: SpoolContext,
    private readonly segments: JournalSegments,
    /** {SPOOL_DIR}/open and {SPOOL_DIR}/sealed. */
    private readonly openRoot: string,
    private readonly sealedRoot: string,
    private readonly concurrency: number,
    /** The chunk is sealed and its open name gone (after its refs and counters are settled). */
    private readonly onDone: (c: Chunk) => void,
  ) {}

  /** Chunks whose SEAL is journaled, waiting to be (or being) sealed. */
  get sealBacklog(): number {
    return this.backlog;
  }

  /** Starts sealing a chunk whose SEAL is journaled and whose bytes are all in its file. */
  enqueue(c: Chunk): void {
    c.state = 'sealing';
    this.backlog++;
    this.queue.push(c);
    this.pump();
  }

  /** The chunks waiting for a SEALED record (the commit that takes them writes one each). */
  takeMarks(): Chunk[] {
    const m = this.marks;
    this.marks = [];
    return m;
  }

  /** The SEALED record of `c` is durable: queue its last step (removing the open name); pump() runs it. */
  sealedRecordDurable(c: Chunk): void {
    c.sealStep = 4;
    this.queue.push(c);
  }

  pump(): void {
    while (!this.ctx.aborted && this.sealing < this.concurrency && this.queue.length > 0) {
      const c = this.queue.shift()!;
      this.sealing++;
      void this.sealOne(c).finally(() => {
        this.sealing--;
        this.pump();
      });
    }
  }

  /** Cancels the retries waiting on their backoff (abort). */
  stop(): void {
    for (const t of this.retryTimers) clearTimeout(t);
  }

  private async sealOne(c: Chunk): Promise<void> {
    const io = this.ctx.io;
    let syncing = false;
    try {
      if (c.sealStep === 0) {
        if (c.rebuild) await this.rebuildChunk(c);
        const f = c.file!;
        await f.write(chunkHeader(c.session.format, c.frames), 0);
        syncing = true;
        await f.datasync();
        syncing = false;
        c.file = null;
        await f.close().catch(noop); // the data is durable; a failing close changes nothing
        c.sealStep = 1;
      }
      if (c.sealStep === 1) {
        c.sealedName = await linkUnique(io, this.sealedRoot, c.openAbs, c.objectName);
        c.sealStep = 2;
      }
      if (c.sealStep === 2) {
        // ENOENT: the uploader found the file in a rescan, uploaded it and removed the directory.
        await io.fsyncDir(dirname(join(this.sealedRoot, c.sealedName!))).catch(ignoreEnoent);
        // The sealed file is durable. The open name stays until a SEALED record says so (the next
        // commit, which hands the chunk back here at step 4): see the header comment.
        c.sealStep = 3;
        this.marks.push(c);
        return;
      }
      await io.unlink(c.openAbs).catch(ignoreEnoent);
    } catch (e) {
      this.ctx.counters.sealErrors++;
      this.ctx.error(e, 'seal');
      // The chunk file's pages are no evidence now: no SEALED record; rebuilt from the journal (below).
      if (syncing || (c.sealStep === 0 && errCode(e) === 'EIO')) this.ctx.fsyncFailed(e, { where: 'chunk', rewriteFailed: false });
      if (c.sealStep === 1 && errCode(e) === 'ENOENT') c.sealStep = 0; // the open file is gone: rebuild it
      if (c.sealStep === 0) {
        c.rebuild = true;
        const f = c.file;
        c.file = null;
        await f?.close().catch(noop);
      }
      const delay = Math.min(10_000, 100 * 2 ** c.sealFailures++);
      const t = setTimeout(() => {
        this.retryTimers.delete(t);
        this.queue.push(c);
        this.pump();
      }, delay);
      t.unref();
      this.retryTimers.add(t);
      return;
    }
    await pruneDirs(io, dirname(c.openAbs), this.openRoot);
    this.done(c);
  }

  /** Rewrites a chunk's file from the journal (after a failed seal: its pages may be lost). */
  private async rebuildChunk(c: Chunk): Promise<void> {
    const old = c.file; // still open when the lane asked for the rebuild (a write failed with EIO)
    c.file = null;
    await old?.close().catch(noop);
    const f = await openInDir(this.ctx.io, c.openAbs, 'rw');
    try {
      await f.write(chunkHeader(c.session.format, 0), 0);
      let bytes = 0;
      for await (const r of this.segments.dataRecords(c.firstSeg!, c.id)) {
        await f.write(r.payload, r.offset);
        bytes += r.payload.length;
      }
      const expected = c.nextPos - headerBytes(c.session.format);
      if (bytes !== expected) throw new Error(`journal holds ${bytes} bytes of chunk ${c.openRel}, expected ${expected}`);
      await f.truncate(c.nextPos);
    } catch (e) {
      await f.close().catch(noop);
      throw e;
    }
    c.file = f;
    c.rebuild = false;
  }

  private done(c: Chunk): void {
    c.state = 'sealed';
    this.backlog--;
    c.firstSeg!.refs--;
    this.ctx.counters.sealedChunks++;
    this.onDone(c);
  }
}

function ignoreEnoent(e: unknown): void {
  if (errCode(e) !== 'ENOENT') throw e;
}
