// The few file-system operations the spool uses, behind an interface so tests can inject faults
// (EIO on fsync, ENOSPC on write, a link that fails) and check that nothing acknowledged is lost.
import { constants, readFileSync, writeFileSync, type Dirent } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rmdir, stat, unlink, rename } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { bumpObjectName } from './names.js';

export interface SpoolFile {
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Writes all of `data`, back to back, from `position` (optional: callers fall back to write()). */
  writev?(data: readonly Uint8Array[], position: number): Promise<void>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface SpoolIo {
  /** 'excl': create, fail with EEXIST if it exists; 'rw': open read-write, create if missing (never truncates). */
  open(path: string, mode: 'excl' | 'rw'): Promise<SpoolFile>;
  /** mkdir -p; returns the first directory created, undefined when it already existed. */
  mkdirp(path: string): Promise<string | undefined>;
  /**
   * The whole file. With `alloc`, read into alloc(size) (a pooled buffer of at least size bytes)
   * and returned as a view of it; wrappers that ignore `alloc` stay correct, only unpooled.
   */
  readFile(path: string, alloc?: (size: number) => Buffer): Promise<Buffer>;
  readdir(path: string): Promise<Dirent[]>;
  stat(path: string): Promise<{ size: number; ino: number; isFile(): boolean }>;
  link(existing: string, newPath: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** fsync of a directory (makes created/removed entries durable). */
  fsyncDir(path: string): Promise<void>;
}

class NodeFile implements SpoolFile {
  constructor(private readonly fh: FileHandle) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.fh.write(data, off, data.length - off, position + off);
      off += bytesWritten;
    }
  }

  async writev(data: readonly Uint8Array[], position: number): Promise<void> {
    let total = 0;
    for (const d of data) total += d.length;
    let { bytesWritten } = await this.fh.writev(data as Uint8Array[], position);
    if (bytesWritten === total) return;
    // A short writev (rare: a signal, a nearly full disk): write the rest piece by piece.
    let at = position;
    for (const d of data) {
      const done = Math.min(d.length, Math.max(0, bytesWritten)); // of this piece, already written
      if (done < d.length) await this.write(d.subarray(done), at + done);
      bytesWritten -= d.length;
      at += d.length;
    }
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

export const nodeIo: SpoolIo = {
  async open(path, mode) {
    return new NodeFile(await open(path, mode === 'excl' ? 'wx+' : constants.O_RDWR | constants.O_CREAT, 0o644));
  },
  mkdirp: (path) => mkdir(path, { recursive: true }),
  readFile: (path, alloc) => (alloc ? readInto(path, alloc) : readFile(path)),
  readdir: (path) => readdir(path, { withFileTypes: true }),
  stat: (path) => stat(path),
  link: (a, b) => link(a, b),
  rename: (a, b) => rename(a, b),
  unlink: (path) => unlink(path),
  rmdir: (path) => rmdir(path),
  async fsyncDir(path) {
    const fh = await open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

/** readFile into a caller's buffer (it may have grown since the stat: read on to the end). */
async function readInto(path: string, alloc: (size: number) => Buffer): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    let buf = alloc((await fh.stat()).size);
    let at = 0;
    for (;;) {
      if (at === buf.length) {
        const grown = alloc(2 * buf.length + 1);
        buf.copy(grown, 0, 0, at);
        buf = grown;
      }
      const { bytesRead } = await fh.read(buf, at, buf.length - at, at);
      if (bytesRead === 0) return buf.subarray(0, at);
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

export function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

/** mkdir -p, then fsync every directory whose entries changed so the new path survives a crash. */
export async function mkdirDurable(io: SpoolIo, dir: string): Promise<void> {
  const first = await io.mkdirp(dir);
  if (first === undefined) return;
  const dirs: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    dirs.push(d);
    if (d === first) break;
  }
  for (const d of [dirname(first), ...dirs.reverse()]) await io.fsyncDir(d);
}

/** Removes `dir` and then its parents while they are empty, stopping at `stop` (exclusive). */
export async function pruneDirs(io: SpoolIo, dir: string, stop: string): Promise<void> {
  for (let d = dir; d.length > stop.length && d.startsWith(stop); d = dirname(d)) {
    try {
      await io.rmdir(d);
    } catch {
      return; // not empty, already gone, or busy: someone else's business
    }
  }
}

/**
 * Links `src` into `sealedRoot` under object name `name` (creating its directory durably),
 * stepping the name's start by 1 ms while it is taken; returns the name used. Links never
 * replace an existing file, so two writers can never seal onto the same name.
 */
export async function linkUnique(io: SpoolIo, sealedRoot: string, src: string, name: string): Promise<string> {
  let last: unknown;
  for (let missing = 0; missing <= 20; ) {
    const target = join(sealedRoot, name);
    await mkdirDurable(io, dirname(target));
    try {
      await io.link(src, target);
      return name;
    } catch (e) {
      const code = errCode(e);
      if (code === 'EEXIST') name = bumpObjectName(name);
      else if (code === 'ENOENT') missing++; // the uploader removed the (empty) directory between mkdir and link
      else throw e;
      last = e;
    }
  }
  throw last;
}

// ---------------------------------------------------------------- test-only fault injection

/**
 * Test only (LC3_PUSHER_TEST_SPOOL_FAULTS, honoured only with LC3_PUSHER_TEST_FAULTS): wraps `io`
 * so that its file writes and fdatasyncs consult `ruleFile` first. While that file exists, each
 * line `<journal|chunk|any> <write|datasync> <CODE> <count|always>` fails matching operations
 * with CODE (count decremented in the file). Lets a test fail a live service's fsyncs on cue
 * without a single test branch in the spool itself.
 */
export function faultInjectingIo(io: SpoolIo, ruleFile: string): SpoolIo {
  const check = (op: 'write' | 'datasync', path: string): void => {
    let text: string;
    try {
      text = readFileSync(ruleFile, 'utf8');
    } catch {
      return; // no rule file: no faults
    }
    const kind = path.endsWith('.jnl') ? 'journal' : /\.(lc3|wav)$/.test(path) ? 'chunk' : 'other';
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const [target, ruleOp, code, count] = lines[i]!.trim().split(/\s+/);
      if (!code || ruleOp !== op || (target !== kind && !(target === 'any' && kind !== 'other'))) continue;
      if (count !== 'always') {
        const left = Number(count);
        if (!(left > 0)) continue;
        lines[i] = `${target} ${ruleOp} ${code} ${left - 1}`;
        writeFileSync(ruleFile, lines.join('\n'));
      }
      throw Object.assign(new Error(`${code}: injected by ${ruleFile} (${op} ${path})`), { code });
    }
  };
  return {
    ...io,
    async open(path, mode) {
      const f = await io.open(path, mode);
      return {
        write: async (d, pos) => (check('write', path), f.write(d, pos)),
        datasync: async () => (check('datasync', path), f.datasync()),
        truncate: (n) => f.truncate(n),
        close: () => f.close(),
      };
    },
  };
}
