// kill -9 of a process running a ShardSpool mid-stream, at different moments: after recovery,
// every frame acknowledged by onDurable is in a sealed chunk, in order, exactly once.
//
// This file is also the child: with SPOOL_CRASH_CHILD set it runs a spool with 20 sessions
// streaming faster than real time (chunk rotation and conversation switches included) and prints
// each durable ack as "session frames" until it is killed.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLc3File } from '../src/formats/lc3file.js';
import { parseSegment } from '../src/spool/journal.js';
import { SpoolQuota } from '../src/spool/quota.js';
import { recoverSpool } from '../src/spool/recover.js';
import { ShardSpool } from '../src/spool/shard-spool.js';
import { frame, LC3, T0 } from './support/spool.js';

const SESSIONS = 20;

async function child(dir: string): Promise<void> {
  const sp = new ShardSpool({
    dir,
    shard: 0,
    quota: new SpoolQuota(1 << 30),
    fsyncMs: 20,
    chunkSeconds: 1,
    onDurable: (sid, frames) => process.stdout.write(`${sid} ${frames}\n`),
  });
  const sessions = Array.from({ length: SESSIONS }, (_, s) => sp.openSession({ sessionId: s, uid: `u${s}`, format: LC3 }));
  const next = new Array<number>(SESSIONS).fill(0);
  const stopAt = Date.now() + 60_000; // never reached: the parent kills us long before
  while (Date.now() < stopAt) {
    sessions.forEach((sess, s) => {
      const n = 1 + ((s + next[s]!) % 7);
      const payload = Buffer.concat(Array.from({ length: n }, (_, i) => frame(s, next[s]! + i)));
      sess.append(payload, n, T0 + next[s]! * 10);
      next[s]! += n;
      if (s % 2 === 0 && next[s]! >= 150 && sess.conversationId === '_') sess.switchConversation(`conv-${s}`);
    });
    await new Promise((r) => setTimeout(r, 5));
  }
  await sp.close();
}

/** The spool directory in one line per file (for failure reports): journal records, chunk frames. */
function describe(dir: string): string[] {
  const out: string[] = [];
  for (const f of (readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const p = join(dir, f);
    if (!statSync(p).isFile()) continue;
    const buf = readFileSync(p);
    if (f.endsWith('.jnl')) {
      const recs = parseSegment(buf).records.map((r) => `${r.type}:${r.chunkId}@${r.offset}+${r.payload.length}`);
      out.push(`journal ${f} ${buf.length} B: ${recs.join(' ')}`);
    } else {
      let frames = '?';
      try {
        frames = parseLc3File(buf, false)
          .frames.map((x) => `${Buffer.from(x).readUInt32LE(0)}/${x[4]}`)
          .join(' ');
      } catch (e) {
        frames = (e as Error).message;
      }
      out.push(`${f} ${buf.length} B: ${frames}`);
    }
  }
  return out;
}

function sealedFrames(dir: string, uid: string): Buffer[] {
  const root = join(dir, 'sealed', 'chunks', uid);
  if (!existsSync(root)) return [];
  const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => statSync(join(root, f)).isFile());
  files.sort((a, b) => (basename(a) < basename(b) ? -1 : 1));
  return files.flatMap((f) => parseLc3File(readFileSync(join(root, f))).frames.map((x) => Buffer.from(x)));
}

if (process.env.SPOOL_CRASH_CHILD) {
  await child(process.env.SPOOL_CRASH_CHILD);
} else {
  const { default: t } = await import('tap');

  /** Runs the child until `killAfter` frames are acknowledged in total, then SIGKILL. */
  function runAndKill(dir: string, killAfter: number): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const acked = new Array<number>(SESSIONS).fill(0);
      let total = 0;
      let buf = '';
      const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
        env: { ...process.env, SPOOL_CRASH_CHILD: dir },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const guard = setTimeout(() => p.kill('SIGKILL'), 120_000);
      p.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const line of lines) {
          const [sid, frames] = line.split(' ').map(Number) as [number, number];
          total += frames - acked[sid]!;
          acked[sid] = frames;
        }
        if (total >= killAfter) p.kill('SIGKILL');
      });
      p.on('error', reject);
      p.on('exit', (_code, signal) => {
        clearTimeout(guard);
        if (signal !== 'SIGKILL') reject(new Error(`child exited on its own (${String(signal)})`));
        else resolve(acked);
      });
    });
  }

  for (const killAfter of [1, 700, 3000, 6000]) {
    t.test(`SIGKILL after ${killAfter} acknowledged frames`, async (t) => {
      const dir = t.testdir();
      const acked = await runAndKill(dir, killAfter);
      const before = describe(dir);
      const r = await recoverSpool({ dir });
      t.ok(r.segments >= 1, `journal replayed (${r.records} records, ${r.sealed.length} chunks sealed by recovery)`);
      for (let s = 0; s < SESSIONS; s++) {
        const got = sealedFrames(dir, `u${s}`);
        const wrong = got.findIndex((g, k) => !g.equals(frame(s, k)));
        if (got.length < acked[s]! || wrong >= 0) {
          t.fail(`session ${s}: ${got.length} frames recovered, ${acked[s]} acknowledged, first wrong frame ${wrong}`, {
            diagnostic: true,
            got: got.map((g) => `${g.readUInt32LE(0)}/${g[4]}`).join(' '),
            before: before.filter((l) => l.includes(`u${s}/`) || l.startsWith('journal')),
            after: describe(dir).filter((l) => l.includes(`u${s}/`)),
          });
        }
      }
      t.pass(`every acknowledged frame of ${SESSIONS} sessions is sealed, in order, once (acks: ${acked.join(',')})`);
      t.same(readdirSync(join(dir, 'journal')), []);
    });
  }
}
