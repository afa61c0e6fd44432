// Fixtures for the tests of the spool's parts (journal segments, group commit, chunk files,
// sealer): a context on a real directory, and chunks without a ShardSpool around them.
import { join } from 'node:path';
import { Chunk, SessionSpool, type SessionHost } from '../../src/spool/chunk.js';
import { SpoolContext } from '../../src/spool/context.js';
import { nodeIo, type SpoolFile, type SpoolIo } from '../../src/spool/io.js';
import { SpoolQuota } from '../../src/spool/quota.js';
import { objectName } from '../../src/spool/names.js';
import { LC3, T0 } from './spool.js';

export interface Ctx {
  ctx: SpoolContext;
  errors: string[];
  congestion: boolean[];
}

export function context(io: SpoolIo = nodeIo, o: { now?: () => number; maxPending?: number } = {}): Ctx {
  const errors: string[] = [];
  const congestion: boolean[] = [];
  const ctx = new SpoolContext(
    io,
    new SpoolQuota(1 << 30),
    o.now ?? Date.now,
    o.maxPending ?? 1 << 20,
    (c) => congestion.push(c),
    (e, where) => errors.push(`${where}: ${e.message}`),
  );
  return { ctx, errors, congestion };
}

const host: SessionHost = {
  appendTo: () => undefined,
  sealCurrent: () => undefined,
  closeSession: () => Promise.resolve(),
};

/** A session handle that goes nowhere (the parts only read its id and format). */
export function session(id = 1, uid = 'u'): SessionSpool {
  return new SessionSpool(host, id, uid, '_', LC3);
}

let nextId = 1;
/** A chunk of `s` under {dir}/open/chunks/u/_/, maxFrames 1000. */
export function chunk(dir: string, s = session(), name = `c${nextId}.lc3`): Chunk {
  const rel = `chunks/${s.uid}/_/${name}`;
  const id = nextId++;
  return new Chunk(id, s, rel, join(dir, 'open', rel), objectName(s.uid, '_', T0 + id, 'lc3'), Date.now(), 1000);
}

/** Puts `frames` LC3 frames (2-byte length + 30 bytes of `fill`) into the chunk's pending buffer. */
export function pend(c: Chunk, frames: number, fill = 7): void {
  const b = Buffer.alloc(frames * 32, fill);
  for (let k = 0; k < frames; k++) b.writeUInt16LE(30, k * 32);
  c.pend = c.pend && c.pendLen > 0 ? Buffer.concat([c.pend.subarray(0, c.pendLen), b]) : b;
  c.pendLen += b.length;
  c.pendFrames += frames;
  c.pendPayload += frames * 30;
  c.frames += frames;
}

export type Op = 'open' | 'write' | 'datasync' | 'truncate' | 'close' | 'mkdirp' | 'readFile' | 'link' | 'unlink' | 'rmdir' | 'fsyncDir';

export function fault(code: string): Error {
  return Object.assign(new Error(`injected ${code}`), { code });
}

/** nodeIo, with `rule` consulted before each operation (an Error it returns is thrown). */
export function ruledIo(rule: (op: Op, path: string, pos?: number) => Error | undefined): SpoolIo {
  const check = (op: Op, p: string, pos?: number): void => {
    const e = rule(op, p, pos);
    if (e) throw e;
  };
  const wrap = (f: SpoolFile, p: string): SpoolFile => ({
    write: async (d, pos) => (check('write', p, pos), f.write(d, pos)),
    writev: async (ds, pos) => (check('write', p, pos), f.writev!(ds, pos)),
    datasync: async () => (check('datasync', p), f.datasync()),
    truncate: async (n) => (check('truncate', p), f.truncate(n)),
    close: () => f.close(),
  });
  return {
    ...nodeIo,
    open: async (p, mode) => (check('open', p), wrap(await nodeIo.open(p, mode), p)),
    mkdirp: async (p) => (check('mkdirp', p), nodeIo.mkdirp(p)),
    readFile: async (p) => (check('readFile', p), nodeIo.readFile(p)),
    link: async (a, b) => (check('link', b), nodeIo.link(a, b)),
    unlink: async (p) => (check('unlink', p), nodeIo.unlink(p)),
    rmdir: async (p) => (check('rmdir', p), nodeIo.rmdir(p)),
    fsyncDir: async (p) => (check('fsyncDir', p), nodeIo.fsyncDir(p)),
  };
}

/** Polls `cond` every 5 ms for up to 5 s; fails naming `what`. */
export async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after 5 s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
