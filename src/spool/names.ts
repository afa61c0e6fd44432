// Names in the spool directory and in the object store.
//
// A chunk's object name is `chunks/{uid}/{conversation_id}/{start_unix_s.mmm}.{lc3|wav}` (DESIGN
// §3.3); the sealed file is `{SPOOL_DIR}/sealed/{object name}`, so the path relative to
// `sealed/` IS the object name. While a chunk is being written it lives at
// `{SPOOL_DIR}/open/chunks/{uid}/{conversation_id}/{start}~{shard}-{run}-{seq}.{ext}`: the suffix
// makes every open file unique to one ShardSpool run (the journal refers to it by that name), and
// tells recovery which shard owns it. Sealing links it to its object name (bumping the start by
// a millisecond while the name is taken) and removes the open name.
//
// uid and conversation ids become path segments, so both must match ^[A-Za-z0-9_-]{1,128}$:
// no `/`, no `.` (so no `..`, no hidden files), nothing a shell, a URL or GCS treats specially.
// Conversation ids in practice are UUIDs or Firestore ids, which fit. `_` is the conversation of
// audio received before the session named one.

/** The one definition of a safe id (uid, conversation id): it becomes an object-name segment. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
/** Conversation of audio before the first conversation switch. */
export const UNNAMED_CONVERSATION = '_';

export class SpoolInputError extends Error {}

export function isValidUid(uid: unknown): uid is string {
  return typeof uid === 'string' && ID_PATTERN.test(uid);
}

export function isValidConversationId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

export function checkUid(uid: unknown): asserts uid is string {
  if (!isValidUid(uid)) {
    throw new SpoolInputError(`invalid uid ${JSON.stringify(uid)}: must match ${ID_PATTERN.source}`);
  }
}

export function checkConversationId(id: unknown): asserts id is string {
  if (!isValidConversationId(id)) {
    throw new SpoolInputError(`invalid conversation id ${JSON.stringify(id)}: must match ${ID_PATTERN.source}`);
  }
}

/** Unix milliseconds → `1732623456.789`. */
export function formatStart(ms: number): string {
  return `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}`;
}

export type ChunkExt = 'lc3' | 'wav';

export function objectName(uid: string, conversationId: string, startMs: number, ext: ChunkExt): string {
  return `chunks/${uid}/${conversationId}/${formatStart(startMs)}.${ext}`;
}

const OBJECT_RE = /^chunks\/([A-Za-z0-9_-]{1,128})\/([A-Za-z0-9_-]{1,128})\/(\d{1,15})\.(\d{3})\.(lc3|wav)$/;

export interface ObjectNameParts {
  uid: string;
  conversationId: string;
  startMs: number;
  ext: ChunkExt;
}

/** Parses a chunk object name; null when it is not one. */
export function parseObjectName(name: string): ObjectNameParts | null {
  const m = OBJECT_RE.exec(name);
  if (!m) return null;
  return { uid: m[1]!, conversationId: m[2]!, startMs: Number(m[3]) * 1000 + Number(m[4]), ext: m[5] as ChunkExt };
}

/** The same object name with its start moved by `deltaMs` (to step around a name that is taken). */
export function bumpObjectName(name: string, deltaMs = 1): string {
  const p = parseObjectName(name);
  if (!p) throw new SpoolInputError(`not a chunk object name: ${name}`);
  return objectName(p.uid, p.conversationId, p.startMs + deltaMs, p.ext);
}

/** File name of an open chunk (inside open/chunks/{uid}/{conv}/). */
export function openFileName(startMs: number, shard: number, run: string, seq: number, ext: ChunkExt): string {
  return `${formatStart(startMs)}~${shard}-${run}-${seq}.${ext}`;
}

const OPEN_FILE_RE = /^(\d{1,15})\.(\d{3})(?:~(\d+)-([0-9a-z]+)-(\d+))?\.(lc3|wav)$/;

export interface OpenFileParts {
  startMs: number;
  /** Owning shard; undefined for a plain `{start}.{ext}` file (placed by hand or by an older version). */
  shard: number | undefined;
  ext: ChunkExt;
}

export function parseOpenFileName(file: string): OpenFileParts | null {
  const m = OPEN_FILE_RE.exec(file);
  if (!m) return null;
  return {
    startMs: Number(m[1]) * 1000 + Number(m[2]),
    shard: m[3] === undefined ? undefined : Number(m[3]),
    ext: m[6] as ChunkExt,
  };
}

export function contentTypeFor(ext: ChunkExt): string {
  return ext === 'lc3' ? 'audio/lc3' : 'audio/wav';
}

/** Journal segment file name inside {SPOOL_DIR}/journal/. */
export function segmentFileName(shard: number, run: string, seq: number): string {
  return `s${shard}-${run}-${String(seq).padStart(8, '0')}.jnl`;
}

const SEGMENT_RE = /^s(\d+)-([0-9a-z]+)-(\d+)\.jnl$/;

export function parseSegmentFileName(file: string): { shard: number; run: string; seq: number } | null {
  const m = SEGMENT_RE.exec(file);
  return m ? { shard: Number(m[1]), run: m[2]!, seq: Number(m[3]) } : null;
}

export const SEALED_DIR = 'sealed';
export const OPEN_DIR = 'open';
export const JOURNAL_DIR = 'journal';
/** Files recovery could not make sense of are moved here, never deleted. */
export const CORRUPT_DIR = 'corrupt';
