// Spool benchmarks: what a group commit costs, and how many bytes an hour of audio takes.
//
//   npx tsx scripts/bench-spool.ts [--dir DIR] [--seconds S] [--sessions 1,100,1000]
//
// 1. Raw: one write of a commit's size + one fdatasync, appending to a journal-like file.
// 2. ShardSpool: N sessions streaming lc3_fs1030 in real time (one 30-byte frame per 10 ms
//    each), one group commit every 200 ms: journal write, fdatasync, whole commit (incl. the
//    chunk-file writes), per commit; then the cost of sealing the chunks (fdatasync + link each).
// 3. Bytes stored per hour of audio: lc3_fs1030 vs PCM16 at 16 kHz (60 s chunks).
// DIR should be on the file system the spool will use (default: the OS temp dir).
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool, type SealedChunk } from '../src/spool/shard-spool.js';
import { within } from './lib/wait.js';

// A commit is one write and one fdatasync; a seal of every chunk a few more. Minutes mean the disk
// is stuck: say so instead of hanging.
const COMMIT_MS = 60_000;
const CLOSE_MS = 300_000;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const base = arg('dir', tmpdir());
const seconds = Number(arg('seconds', '6'));
const sessionCounts = arg('sessions', '1,100,1000').split(',').map(Number);
const FRAME = 30;
const PER_COMMIT = 20; // 200 ms of 10 ms frames
const RECORD_BYTES = 24 + PER_COMMIT * (2 + FRAME); // one DATA record per session per commit

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

const fmt = (x: number): string => x.toFixed(2).padStart(7);

async function rawFsync(dir: string, bytes: number, n: number): Promise<number[]> {
  const fh = await open(join(dir, `raw-${bytes}.jnl`), 'w');
  const buf = Buffer.alloc(bytes, 7);
  const out: number[] = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fh.write(buf, 0, bytes, pos);
    await fh.datasync();
    out.push(performance.now() - t0);
    pos += bytes;
  }
  await fh.close();
  return out;
}

async function spoolRun(dir: string, sessions: number): Promise<{ write: number[]; sync: number[]; total: number[]; sealMs: number; seals: number; appendUs: number }> {
  const sealed: SealedChunk[] = [];
  const sp = new ShardSpool({ dir, shard: 0, quota: new SpoolQuota(1e12), fsyncMs: 3_600_000, chunkSeconds: 60, onSealed: (c) => sealed.push(c) });
  const ss = Array.from({ length: sessions }, (_, i) => sp.openSession({ sessionId: i, uid: `u${i}`, format: { kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: FRAME } }));
  const frame = Buffer.alloc(FRAME, 1);
  const write: number[] = [];
  const sync: number[] = [];
  const total: number[] = [];
  const start = performance.now();
  let k = 0;
  let appendMs = 0;
  let nextCommit = start + 200;
  while (performance.now() - start < seconds * 1000) {
    // Frames due by now (10 ms each), for every session.
    const due = Math.floor((performance.now() - start) / 10);
    const t0 = performance.now();
    for (; k < due; k++) for (const s of ss) s.append(frame, 1, 1_700_000_000_000 + k * 10);
    appendMs += performance.now() - t0;
    if (performance.now() >= nextCommit) {
      nextCommit += 200;
      await within(sp.flush(), COMMIT_MS, `a group commit of ${sessions} sessions`);
      const c = sp.stats().lastCommit;
      if (c) {
        write.push(c.writeMs);
        sync.push(c.syncMs);
        total.push(c.totalMs);
      }
    } else {
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  const appends = k * sessions;
  const t0 = performance.now();
  await within(sp.close(), CLOSE_MS, `the spool to seal the chunks of ${sessions} sessions`);
  const sealMs = performance.now() - t0;
  return { write: write.slice(2), sync: sync.slice(2), total: total.slice(2), sealMs, seals: sealed.length, appendUs: (appendMs * 1000) / appends };
}

async function hourOf(dir: string, kind: 'lc3' | 'pcm16'): Promise<number> {
  const sp = new ShardSpool({ dir, shard: 0, quota: new SpoolQuota(1e12), fsyncMs: 3_600_000, chunkSeconds: 60 });
  const s = sp.openSession({
    sessionId: 1,
    uid: 'u',
    format: kind === 'lc3' ? { kind: 'lc3', frameUs: 10000, sampleRate: 16000, frameBytes: FRAME } : { kind: 'pcm16', sampleRate: 16000 },
  });
  // One hour, one second per append, a commit every minute of audio.
  const second = kind === 'lc3' ? Buffer.alloc(100 * FRAME, 3) : Buffer.alloc(32000, 3);
  for (let i = 0; i < 3600; i++) {
    s.append(second, kind === 'lc3' ? 100 : 16000, 1_700_000_000_000 + i * 1000);
    if (i % 60 === 59) await within(sp.flush(), COMMIT_MS, `a group commit of an hour of ${kind}`);
  }
  await within(sp.close(), CLOSE_MS, `the spool to seal an hour of ${kind}`);
  const root = join(dir, 'sealed');
  return (readdirSync(root, { recursive: true }) as string[]).map((f) => join(root, f)).filter((f) => statSync(f).isFile()).reduce((n, f) => n + statSync(f).size, 0);
}

const work = mkdtempSync(join(base, 'lc3-bench-spool-'));
try {
  console.log(`spool benchmarks in ${work} (node ${process.version})\n`);
  console.log('1. raw write + fdatasync of one commit (ms): bytes → p50 / p90 / p99');
  for (const n of sessionCounts) {
    const bytes = n * RECORD_BYTES;
    const xs = await rawFsync(work, bytes, 50);
    console.log(`   ${String(n).padStart(5)} sessions = ${String(bytes).padStart(7)} B: ${fmt(pct(xs, 50))} ${fmt(pct(xs, 90))} ${fmt(pct(xs, 99))}`);
  }
  console.log(`\n2. ShardSpool, lc3_fs1030 in real time, commit every 200 ms, ${seconds} s (ms, p50 / p99):`);
  console.log('   sessions   journal write        fdatasync         whole commit     append µs   seal all (ms/chunks)');
  for (const n of sessionCounts) {
    const d = join(work, `spool-${n}`);
    const r = await spoolRun(d, n);
    console.log(
      `   ${String(n).padStart(8)}  ${fmt(pct(r.write, 50))} ${fmt(pct(r.write, 99))}   ${fmt(pct(r.sync, 50))} ${fmt(pct(r.sync, 99))}   ${fmt(pct(r.total, 50))} ${fmt(pct(r.total, 99))}   ${r.appendUs.toFixed(2).padStart(8)}   ${r.sealMs.toFixed(0)}/${r.seals}`,
    );
    rmSync(d, { recursive: true, force: true });
  }
  console.log('\n3. bytes stored per hour of audio (60 s chunks):');
  const lc3 = await hourOf(join(work, 'h-lc3'), 'lc3');
  const pcm = await hourOf(join(work, 'h-pcm'), 'pcm16');
  console.log(`   lc3_fs1030 (30 B frames, 100/s, +2 B length each): ${lc3} B = ${(lc3 / 1e6).toFixed(2)} MB/h (payload ${(3600 * 100 * FRAME) / 1e6} MB/h)`);
  console.log(`   PCM16 16 kHz mono WAV:                               ${pcm} B = ${(pcm / 1e6).toFixed(2)} MB/h`);
  console.log(`   ratio PCM/LC3: ${(pcm / lc3).toFixed(1)}×; the journal holds the same bytes again (+24 B per session per commit) until a chunk is sealed`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
