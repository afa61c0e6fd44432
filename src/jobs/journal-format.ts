// The job journal's on-disk format: one JSON record per line (JSONL), in
// {SPOOL_DIR}/jobs/journal-{n}.jsonl; the highest n is the live file (see journal.ts).
//   {"op":"add","job":{…Job}}                         a job accepted (submit resolves after its fsync)
//   {"op":"attempt","id","attempts","notBefore"}      a retry scheduled: the backoff survives a restart
//   {"op":"done","id","ok"}                            finished (2xx or terminal): never run again
// A line is acknowledged only with its newline, so a last line without one is a torn write.
import type { Job } from './types.js';

export type JournalRecord =
  | { op: 'add'; job: Job }
  | { op: 'attempt'; id: string; attempts: number; notBefore: number }
  | { op: 'done'; id: string; ok: boolean };

export const JOBS_DIR = 'jobs';
const LIVE = /^journal-(\d{1,15})\.jsonl$/;

export function journalFileName(n: number): string {
  return `journal-${n}.jsonl`;
}

/** The generation of a live journal file name, undefined for anything else (temporaries included). */
export function journalGeneration(name: string): number | undefined {
  const m = LIVE.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function encodeRecord(rec: JournalRecord): string {
  return JSON.stringify(rec) + '\n';
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

function isJob(j: unknown): j is Job {
  return (
    isObj(j) && isStr(j.id) && isStr(j.kind) && isStr(j.uid) && isStr(j.key) && isObj(j.payload) &&
    isNum(j.createdMs) && isNum(j.attempts) && isNum(j.notBefore)
  );
}

/** Parses one line (without its newline); null when it is not a well-formed record. */
export function decodeRecord(line: string): JournalRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isObj(r)) return null;
  if (r.op === 'add' && isJob(r.job)) return { op: 'add', job: r.job };
  if (r.op === 'done' && isStr(r.id)) return { op: 'done', id: r.id, ok: r.ok === true };
  if (r.op === 'attempt' && isStr(r.id) && isNum(r.attempts) && isNum(r.notBefore)) {
    return { op: 'attempt', id: r.id, attempts: r.attempts, notBefore: r.notBefore };
  }
  return null;
}

export interface ParsedJournal {
  /** Pending jobs (added, not done) in order of their add records, with their latest attempt state. */
  pending: Map<string, Job>;
  /** Whole records read, corrupt ones included (the live file's record count). */
  records: number;
  /** Line numbers (1-based) of lines that are not records. */
  corrupt: number[];
  /** Bytes up to the end of the last whole line: the rest is a torn tail. */
  validBytes: number;
}

export function parseJournal(buf: Buffer): ParsedJournal {
  const pending = new Map<string, Job>();
  const corrupt: number[] = [];
  const end = buf.lastIndexOf(0x0a) + 1;
  const lines = end === 0 ? [] : buf.subarray(0, end - 1).toString('utf8').split('\n');
  lines.forEach((line, i) => {
    const rec = decodeRecord(line);
    if (!rec) corrupt.push(i + 1);
    else applyRecord(pending, rec);
  });
  return { pending, records: lines.length, corrupt, validBytes: end };
}

/** Applies a record to the set of pending jobs (the journal's in-memory state). */
export function applyRecord(pending: Map<string, Job>, rec: JournalRecord): void {
  if (rec.op === 'add') {
    pending.set(rec.job.id, { ...rec.job });
  } else if (rec.op === 'done') {
    pending.delete(rec.id);
  } else {
    const job = pending.get(rec.id);
    if (job) {
      job.attempts = rec.attempts;
      job.notBefore = rec.notBefore;
    }
  }
}
