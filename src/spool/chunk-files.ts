// The chunk-file lane: after a group commit, the journaled bytes are written into each chunk's
// open file (page cache, no fsync — the journal is the evidence until the sealer fdatasyncs the
// file). It runs beside the commits, so a slow file creation never delays an acknowledgement.
// A failed write keeps its bytes (copied out of the commit's buffer) and is retried when the lane
// runs again, after the next commit.
import { dirname } from 'node:path';
import type { Chunk } from './chunk.js';
import type { SpoolContext } from './context.js';
import { chunkHeader, headerBytes } from './format.js';
import { errCode, type SpoolFile, type SpoolIo } from './io.js';

const noop = (): void => undefined;

export class ChunkFiles {
  /** Chunks with journaled bytes not yet in their file, or a SEAL not yet handed to the sealer. */
  private readonly needFlush = new Set<Chunk>();
  private lane: Promise<void> | null = null;
  private laneAgain = false;

  constructor(
    private readonly ctx: SpoolContext,
    /** Chunk-file writes in flight at once. */
    private readonly writeConcurrency: number,
    /** A chunk whose SEAL is journaled has all its bytes in its file: seal it. */
    private readonly onReadyToSeal: (c: Chunk) => void,
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
    this.needFlush.add(c);
  }

  /** Runs the lane (again, once it is done, if it is running). */
  kick(): void {
    if (this.lane) {
      this.laneAgain = true;
      return;
    }
    this.lane = (async () => {
      do {
        this.laneAgain = false;
        await this.flushAll();
      } while (this.laneAgain && !this.ctx.aborted);
      this.lane = null;
      this.ctx.checkCongestion();
    })();
  }

  private async flushAll(): Promise<void> {
    const list = [...this.needFlush];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < list.length) await this.flushChunk(list[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.writeConcurrency, list.length) }, worker));
  }

  private async flushChunk(c: Chunk): Promise<void> {
    try {
      const f = await this.ensureFile(c);
      while (c.unwritten.length > 0) {
        const u = c.unwritten[0]!;
        await f.write(u.data, u.pos);
        c.unwritten.shift();
        u.lease?.release();
        u.lease = null;
        this.ctx.held -= u.data.length;
        this.ctx.quota.add(u.data.length);
      }
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
