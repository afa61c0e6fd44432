// The chunk-file lane: after a group commit, the journaled bytes are written into each chunk's
// open file (page cache, no fsync — the journal is the evidence until the sealer fdatasyncs the
// file). It runs beside the commits, so a slow file creation never delays an acknowledgement.
// A failed write keeps its bytes (copied out of the commit's buffer) and is retried when the lane
// runs again, after the next commit.
//
// Writes are deferred and coalesced: a chunk's journaled pieces (one per commit) wait until the
// oldest is `delayMs` old, they reach `batchBytes`, the chunk's SEAL is journaled, a write failed,
// or the audio held in memory reaches `pressureBytes`; then they go in one writev. Why: at the
// default FSYNC_MS=200 a chunk gets 5 pieces a second, and a write per piece per chunk (thousands a
// second per shard, each a promise and a libuv pool round trip) was the largest part of a shard's
// cost per frame when nothing decodes. Deferring costs memory only (the pieces stay in their
// commits' pooled buffers), bounded by pressureBytes, and no durability: the journal holds them.
import { dirname } from 'node:path';
import type { Chunk, PendingWrite } from './chunk.js';
import type { SpoolContext } from './context.js';
import { chunkHeader, headerBytes } from './format.js';
import { errCode, type SpoolFile, type SpoolIo } from './io.js';

const noop = (): void => undefined;

/** When a chunk's journaled pieces are written (see the header). All 0: at once, after every commit. */
export interface WritePolicy {
  delayMs: number;
  batchBytes: number;
  /** Audio held in memory (ctx.held) at which everything due or not is written. */
  pressureBytes: number;
}

const AT_ONCE: WritePolicy = { delayMs: 0, batchBytes: 0, pressureBytes: 0 };

export class ChunkFiles {
  /** Chunks with journaled bytes not yet in their file, or a SEAL not yet handed to the sealer. */
  private readonly needFlush = new Set<Chunk>();
  private lane: Promise<void> | null = null;
  private laneAgain = false;
  private forceNext = false;

  constructor(
    private readonly ctx: SpoolContext,
    /** Chunk-file writes in flight at once. */
    private readonly writeConcurrency: number,
    /** A chunk whose SEAL is journaled has all its bytes in its file: seal it. */
    private readonly onReadyToSeal: (c: Chunk) => void,
    private readonly policy: WritePolicy = AT_ONCE,
  ) {}

  get pending(): number {
    return this.needFlush.size;
  }

  /** Whether the lane is running (flush() waits for it). */
  get running(): Promise<void> | null {
    return this.lane;
  }

  /** Journaled bytes of `c` to write (already in c.unwritten), or its SEAL to pass on. */
  add(c: Chunk): void {
    if (c.unwrittenSince === 0 && c.unwritten.length > 0) c.unwrittenSince = this.ctx.now();
    this.needFlush.add(c);
  }

  /**
   * Runs the lane (again, once it is done, if it is running). `force`: the next pass writes every
   * chunk, due or not (flush(), shutdown).
   */
  kick(force = false): void {
    if (force) this.forceNext = true;
    if (this.lane) {
      this.laneAgain = true;
      return;
    }
    this.lane = (async () => {
      do {
        this.laneAgain = false;
        const all = this.forceNext;
        this.forceNext = false;
        await this.flushAll(all);
      } while (this.laneAgain && !this.ctx.aborted);
      this.lane = null;
      this.ctx.checkCongestion();
    })();
  }

  /** Whether `c`'s pieces are written in this pass (see the header). */
  private due(c: Chunk, now: number): boolean {
    const p = this.policy;
    if (c.sealJournaled || c.writeFailed || now - c.unwrittenSince >= p.delayMs) return true;
    let bytes = 0;
    for (const u of c.unwritten) bytes += u.data.length;
    return bytes >= p.batchBytes;
  }

  private async flushAll(all: boolean): Promise<void> {
    const now = this.ctx.now();
    const every = all || this.ctx.held >= this.policy.pressureBytes;
    const list: Chunk[] = [];
    for (const c of this.needFlush) if (every || this.due(c, now)) list.push(c);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < list.length) await this.flushChunk(list[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.writeConcurrency, list.length) }, worker));
  }

  private async flushChunk(c: Chunk): Promise<void> {
    try {
      const f = await this.ensureFile(c);
      // The pieces are contiguous (each starts where the last ended): one writev for all that are
      // here now. Pieces a commit adds meanwhile wait for the next pass.
      const n = c.unwritten.length;
      if (n > 0) {
        const pieces = c.unwritten.slice(0, n);
        await writePieces(f, pieces);
        c.unwritten.splice(0, n);
        let bytes = 0;
        for (const u of pieces) {
          u.lease?.release();
          u.lease = null;
          bytes += u.data.length;
        }
        this.ctx.held -= bytes;
        this.ctx.quota.add(bytes);
      }
      c.writeFailed = false;
      if (c.unwritten.length > 0) {
        c.unwrittenSince = this.ctx.now();
        return;
      }
      c.unwrittenSince = 0;
      this.needFlush.delete(c);
      if (c.sealJournaled && c.state === 'open') this.onReadyToSeal(c);
    } catch (e) {
      for (const u of c.unwritten) {
        if (u.lease) {
          u.data = Buffer.from(u.data); // do not keep a whole commit's buffer out of its pool for it
          u.lease.release();
          u.lease = null;
        }
      }
      c.writeFailed = true; // retried at the next pass, due or not
      this.ctx.counters.writeErrors++;
      this.ctx.error(e, 'chunk write');
      if (errCode(e) === 'EIO') {
        // The device refused a write: what the file holds is no evidence; the sealer rewrites it
        // from the journal before its fdatasync.
        c.rebuild = true;
        this.ctx.fsyncFailed(e, { where: 'chunk', rewriteFailed: false });
      }
    }
  }

  /** The chunk's open file, created (exclusively, the first time) with a provisional header. */
  private async ensureFile(c: Chunk): Promise<SpoolFile> {
    if (c.file) return c.file;
    // First attempt: exclusive create. A retry may find the file its failed predecessor created.
    const mode = c.createTried ? 'rw' : 'excl';
    c.createTried = true;
    const f = await openInDir(this.ctx.io, c.openAbs, mode);
    try {
      await f.write(chunkHeader(c.session.format, 0), 0);
    } catch (e) {
      await f.close().catch(noop);
      throw e;
    }
    if (!c.headerCounted) {
      c.headerCounted = true;
      this.ctx.quota.add(headerBytes(c.session.format));
    }
    c.file = f;
    return f;
  }
}

/** Writes contiguous pieces: one writev where the file has it, else one write each. */
async function writePieces(f: SpoolFile, pieces: readonly PendingWrite[]): Promise<void> {
  if (pieces.length === 1 || !f.writev) {
    for (const u of pieces) await f.write(u.data, u.pos);
    return;
  }
  await f.writev(
    pieces.map((u) => u.data),
    pieces[0]!.pos,
  );
}

/** Opens a file, creating its directory; retries when another thread removes the directory meanwhile. */
export async function openInDir(io: SpoolIo, path: string, mode: 'excl' | 'rw'): Promise<SpoolFile> {
  let last: unknown;
  for (let i = 0; i <= 20; i++) {
    await io.mkdirp(dirname(path));
    try {
      return await io.open(path, mode);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
      last = e;
    }
  }
  throw last;
}
