// LocalStore: the embedded default object store, a directory.
//
// Object `a/b/c.lc3` is the file `<dir>/a/b/c.lc3`; its size, sha256, content type and custom
// metadata live in the sidecar `<dir>/a/b/c.lc3.meta.json`. A put is crash-safe:
//   1. copy the source into a temporary file in the target's directory (hidden: `.c.lc3.<rand>.tmp`),
//      hashing the source as it is read; fsync; read the copy back and check size + sha256;
//   2. write the sidecar the same way (temporary file, fsync);
//   3. rename the data file into place, then the sidecar (the sidecar is the commit point);
//   4. fsync the directory (and every directory the put created).
// An object is visible (stat/list/read) only when its sidecar exists and records the data file's
// exact size, so a crash between the two renames, or a stray data file, never shows up as an
// object; the caller still has its copy and puts it again. Temporary files start with "." and
// are never listed (object name segments may not start with ".").

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat as fsStat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { compareNames, storedMetadata, validateObjectName, validatePrefix } from './names.js';
import { ObjectNotFoundError, StoreError, type ObjectStore, type PutMeta, type StoredObject } from './types.js';
import { ScratchPool } from '../util/scratch-pool.js';

export const META_SUFFIX = '.meta.json';
/** Longest name segment the local store takes (bytes): NAME_MAX (255) less room for temp/sidecar suffixes. */
export const MAX_SEGMENT_BYTES = 200;
const CHUNK = 1 << 20;
/** The copy and hash loops' 1 MiB buffers, reused (see ScratchPool for why); a few uploads run at once. */
const scratch = new ScratchPool(CHUNK, 8);

interface Sidecar {
  v: 1;
  size: number;
  sha256: string;
  contentType: string;
  metadata: Record<string, string>;
}

// fs errors that retrying cannot fix: a name clashing with a directory (or the other way round),
// a name too long for the file system, no permission, a read-only file system.
const PERMANENT = new Set(['ENOTDIR', 'EISDIR', 'EEXIST', 'ENAMETOOLONG', 'EACCES', 'EPERM', 'EROFS']);

function errCode(e: unknown): string {
  return String((e as NodeJS.ErrnoException).code);
}

function toStoreError(e: unknown, what: string): StoreError {
  if (e instanceof StoreError) return e;
  return new StoreError(`${what}: ${(e as Error).message}`, !PERMANENT.has(errCode(e)), { cause: e });
}

function tempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function hashHandle(fh: FileHandle): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  let size = 0;
  await scratch.with(async (buf) => {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, size);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  });
  return { size, sha256: h.digest('hex') };
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

export class LocalStore implements ObjectStore {
  readonly kind = 'local' as const;
  /** Absolute path of the store's directory. */
  readonly dir: string;

  constructor(dir: string) {
    if (typeof dir !== 'string' || dir.trim() === '') throw new StoreError('LocalStore needs a directory', false);
    this.dir = resolve(dir);
  }

  private pathOf(name: string): string {
    return join(this.dir, ...name.split('/'));
  }

  private checkName(name: string): void {
    validateObjectName(name);
    if (name.endsWith(META_SUFFIX)) {
      throw new StoreError(`object name ${JSON.stringify(name)}: the suffix ${META_SUFFIX} is reserved by the local store`, false);
    }
    for (const seg of name.split('/')) {
      if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES) {
        throw new StoreError(`object name ${JSON.stringify(name)}: a segment is longer than ${MAX_SEGMENT_BYTES} bytes`, false);
      }
    }
  }

  async putFile(name: string, path: string, meta: PutMeta): Promise<StoredObject> {
    this.checkName(name);
    const metadata = storedMetadata(meta);
    const target = this.pathOf(name);
    const parent = dirname(target);
    const tmpData = tempPath(target);
    const tmpMeta = tempPath(target + META_SUFFIX);
    try {
      await this.mkdirDurable(parent);
      await copyVerified(path, tmpData, meta);
      const sidecar: Sidecar = { v: 1, size: meta.size, sha256: meta.sha256, contentType: meta.contentType, metadata };
      await writeDurable(tmpMeta, JSON.stringify(sidecar));
      await rename(tmpData, target);
      await rename(tmpMeta, target + META_SUFFIX);
      await fsyncPath(parent);
      return { name, size: meta.size, metadata, contentType: meta.contentType };
    } catch (e) {
      await unlinkQuietly(tmpData);
      await unlinkQuietly(tmpMeta);
      throw toStoreError(e, `put ${name}`);
    }
  }

  /** mkdir -p, then fsync every directory whose entries changed so the new path survives a crash. */
  private async mkdirDurable(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    const created: string[] = [];
    for (let d = dir; ; d = dirname(d)) {
      created.push(d);
      if (d === first) break;
    }
    for (const d of [dirname(first), ...created.reverse()]) await fsyncPath(d);
  }

  async stat(name: string): Promise<StoredObject | null> {
    this.checkName(name);
    try {
      return await this.statChecked(name);
    } catch (e) {
      throw toStoreError(e, `stat ${name}`);
    }
  }

  private async statChecked(name: string): Promise<StoredObject | null> {
    const sc = await this.visible(name);
    return sc && { name, size: sc.size, metadata: sc.metadata, contentType: sc.contentType };
  }

  /** The sidecar of a committed object (its data file has exactly the recorded size), else null. */
  private async visible(name: string): Promise<Sidecar | null> {
    const target = this.pathOf(name);
    let sc: Sidecar;
    try {
      sc = parseSidecar(await readFile(target + META_SUFFIX, 'utf8'));
      const st = await fsStat(target);
      if (!st.isFile() || st.size !== sc.size) return null;
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR' || e instanceof SyntaxError) return null;
      throw e;
    }
    return sc;
  }

  async list(prefix: string): Promise<StoredObject[]> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const base = slash >= 0 ? prefix.slice(0, slash) : '';
    const out: StoredObject[] = [];
    try {
      await this.walk(base === '' ? this.dir : this.pathOf(base), base, prefix, out);
    } catch (e) {
      throw toStoreError(e, `list ${JSON.stringify(prefix)}`);
    }
    return out.sort((a, b) => compareNames(a.name, b.name));
  }

  private async walk(dirPath: string, rel: string, prefix: string, out: StoredObject[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw e;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue; // temporary files
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (`${r}/`.startsWith(prefix) || prefix.startsWith(`${r}/`)) await this.walk(join(dirPath, e.name), r, prefix, out);
      } else if (e.isFile() && r.startsWith(prefix) && !r.endsWith(META_SUFFIX)) {
        let valid = true;
        try {
          this.checkName(r);
        } catch {
          valid = false; // a file someone dropped in by hand, not one of ours
        }
        const o = valid ? await this.statChecked(r) : null;
        if (o) out.push(o);
      }
    }
  }

  async read(name: string): Promise<Buffer> {
    this.checkName(name);
    let data: Buffer;
    let sc: Sidecar | null;
    try {
      sc = await this.visible(name);
      data = sc ? await readFile(this.pathOf(name)) : Buffer.alloc(0);
    } catch (e) {
      throw toStoreError(e, `read ${name}`);
    }
    if (!sc) throw new ObjectNotFoundError(name);
    const sha256 = createHash('sha256').update(data).digest('hex');
    if (data.length !== sc.size || sha256 !== sc.sha256) {
      throw new StoreError(`read ${name}: stored object is corrupt (size ${data.length}/${sc.size}, sha256 ${sha256} != ${sc.sha256})`, false);
    }
    return data;
  }
}

function parseSidecar(text: string): Sidecar {
  const j = JSON.parse(text) as Partial<Sidecar> | null;
  if (
    !j ||
    j.v !== 1 ||
    !Number.isSafeInteger(j.size) ||
    typeof j.sha256 !== 'string' ||
    typeof j.contentType !== 'string' ||
    !j.metadata ||
    typeof j.metadata !== 'object'
  ) {
    throw new SyntaxError('not a sidecar');
  }
  return j as Sidecar;
}

/**
 * Copies `src` into the new file `tmp` (exclusive create), checking that the source is what the
 * caller says it is, fsyncs it, and reads the copy back (`readBack`, a seam for tests) to check
 * that what was written is that too. Exported for tests only.
 */
export async function copyVerified(src: string, tmp: string, meta: PutMeta, readBack = hashHandle): Promise<void> {
  const output = await open(tmp, 'wx+', 0o644);
  try {
    const input = await open(src, 'r').catch((e: unknown) => {
      throw errCode(e) === 'ENOENT' ? new StoreError(`source file missing: ${src}`, false, { cause: e }) : e;
    });
    try {
      await copyInto(input, output, src, meta);
    } finally {
      await input.close();
    }
    await output.sync();
    const written = await readBack(output);
    if (written.size !== meta.size || written.sha256 !== meta.sha256) {
      throw new StoreError(`copy of ${src} reads back wrong: size ${written.size}, sha256 ${written.sha256}`, true);
    }
  } finally {
    await output.close();
  }
}

async function copyInto(input: FileHandle, output: FileHandle, src: string, meta: PutMeta): Promise<void> {
  const h = createHash('sha256');
  let size = 0;
  await scratch.with(async (buf) => {
    for (;;) {
      const { bytesRead } = await input.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      h.update(chunk);
      await output.writeFile(chunk);
      size += bytesRead;
    }
  });
  const sha256 = h.digest('hex');
  if (size !== meta.size || sha256 !== meta.sha256) {
    throw new StoreError(
      `source file ${src} does not match its metadata: size ${size} (expected ${meta.size}), sha256 ${sha256} (expected ${meta.sha256})`,
      false,
    );
  }
}

async function writeDurable(path: string, text: string): Promise<void> {
  const fh = await open(path, 'wx', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
