// Reading a process's memory and CPU from /proc (Linux). Current RSS is VmRSS — never VmHWM,
// the peak, which can only grow and so would hide memory being given back.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStatus {
  /** Current resident set size, bytes (VmRSS) = anonymous + file-backed + shared memory. */
  rss: number;
  rssAnon: number;
  rssFile: number;
  rssShmem: number;
  /** Peak resident set size, bytes (VmHWM). */
  rssPeak: number;
  threads: number;
}

const KB_FIELDS: Record<string, 'rss' | 'rssPeak' | 'rssAnon' | 'rssFile' | 'rssShmem'> = {
  VmRSS: 'rss',
  VmHWM: 'rssPeak',
  RssAnon: 'rssAnon',
  RssFile: 'rssFile',
  RssShmem: 'rssShmem',
};

/** Parses the text of /proc/PID/status; missing fields are NaN. */
export function parseProcStatus(text: string): ProcStatus {
  const out: ProcStatus = { rss: NaN, rssAnon: NaN, rssFile: NaN, rssShmem: NaN, rssPeak: NaN, threads: NaN };
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (!m) continue;
    const field = KB_FIELDS[m[1]!];
    if (field) out[field] = Number(m[2]) * 1024;
    else if (m[1] === 'Threads') out.threads = Number(m[2]);
  }
  return out;
}

export interface ProcCpu {
  /** User + system CPU time, seconds (clock ticks / ticksPerSecond). */
  cpuSeconds: number;
}

/**
 * Parses /proc/PID/stat. The command name (field 2) may contain spaces and parentheses, so the
 * fields are counted from the last ")". utime and stime are fields 14 and 15.
 */
export function parseProcStat(text: string, ticksPerSecond = 100): ProcCpu {
  const end = text.lastIndexOf(')');
  if (end < 0) throw new Error('not a /proc/PID/stat line');
  const rest = text.slice(end + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state): field k is rest[k - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('not a /proc/PID/stat line');
  return { cpuSeconds: (utime + stime) / ticksPerSecond };
}

/** Current memory figures of a live process; undefined once it has gone. */
export function readProcStatus(pid: number): ProcStatus | undefined {
  try {
    return parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far by a live process; undefined once it has gone. */
export function readProcCpu(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).cpuSeconds;
  } catch {
    return undefined;
  }
}

/** CPU seconds per thread (tid → seconds) of a live process; the main thread's tid is the pid. */
export function readThreadsCpu(pid: number): Record<number, number> {
  const out: Record<number, number> = {};
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      out[Number(tid)] = parseProcStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')).cpuSeconds;
      /* c8 ignore start */
    } catch {
      // the thread ended between the listing and the read
    }
    /* c8 ignore stop */
  }
  return out;
}
