// Rules shared by every store: object names, list prefixes, and the PutMeta a caller hands in.
// Both stores apply the same rules so that an object name accepted by the local store in
// development is also accepted in production, and the other way round.

import { StoreError, type PutMeta } from './types.js';

/** GCS's limit on an object name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;

// C0 controls and DEL (GCS forbids CR/LF; NUL would cut a path short on the local store).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function checkChars(what: string, s: string): void {
  if (CONTROL.test(s)) throw new StoreError(`${what} ${JSON.stringify(s)}: control character (NUL, CR, LF, …) not allowed`, false);
  if (s.includes('\\')) throw new StoreError(`${what} ${JSON.stringify(s)}: backslash not allowed`, false);
  if (s.startsWith('/')) throw new StoreError(`${what} ${JSON.stringify(s)}: must be relative (no leading /)`, false);
  if (Buffer.byteLength(s, 'utf8') > MAX_NAME_BYTES) throw new StoreError(`${what} is longer than ${MAX_NAME_BYTES} bytes`, false);
  if (LONE_SURROGATE.test(s)) throw new StoreError(`${what} ${JSON.stringify(s)}: not valid Unicode`, false);
}

/**
 * Throws StoreError(retryable=false) unless `name` is a valid object name: relative, `/`-separated,
 * no empty segment, no segment starting with `.` (so no `.`/`..` and no hidden files: the local
 * store keeps its temporary files there), no backslash, no control character, at most 1024 bytes.
 */
export function validateObjectName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name === '') throw new StoreError('object name must be a non-empty string', false);
  checkChars('object name', name);
  for (const seg of name.split('/')) {
    if (seg === '') throw new StoreError(`object name ${JSON.stringify(name)}: empty path segment`, false);
    if (seg.startsWith('.')) throw new StoreError(`object name ${JSON.stringify(name)}: segment ${JSON.stringify(seg)} starts with "."`, false);
  }
}

/** A list prefix: '' (everything) or the start of an object name (may end anywhere, e.g. after `/`). */
export function validatePrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw new StoreError('list prefix must be a string', false);
  if (prefix === '') return;
  checkChars('list prefix', prefix);
  const segs = prefix.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '' && !last) throw new StoreError(`list prefix ${JSON.stringify(prefix)}: empty path segment`, false);
    if (seg.startsWith('.')) throw new StoreError(`list prefix ${JSON.stringify(prefix)}: segment ${JSON.stringify(seg)} starts with "."`, false);
  });
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Checks a PutMeta and returns the custom metadata to store: the caller's metadata plus `sha256`
 * (always stored, so that stat/list can confirm an object without reading it back).
 */
export function storedMetadata(meta: PutMeta): Record<string, string> {
  if (!meta || typeof meta !== 'object') throw new StoreError('put metadata missing', false);
  if (!Number.isSafeInteger(meta.size) || meta.size < 0) throw new StoreError(`put metadata: bad size ${String(meta.size)}`, false);
  if (typeof meta.sha256 !== 'string' || !SHA256_HEX.test(meta.sha256)) {
    throw new StoreError(`put metadata: sha256 must be 64 lowercase hex digits, got ${JSON.stringify(meta.sha256)}`, false);
  }
  if (typeof meta.contentType !== 'string' || meta.contentType === '') throw new StoreError('put metadata: contentType missing', false);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta.metadata ?? {})) {
    if (typeof v !== 'string') throw new StoreError(`put metadata: value of ${JSON.stringify(k)} must be a string`, false);
    out[k] = v;
  }
  if (out.sha256 !== undefined && out.sha256 !== meta.sha256) {
    throw new StoreError('put metadata: metadata.sha256 differs from sha256', false);
  }
  out.sha256 = meta.sha256;
  return out;
}

/** Order of names as GCS lists them: by UTF-8 bytes. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
