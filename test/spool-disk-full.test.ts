// A full disk at the spool's level: the quota learns it (sessions pause, /readyz fails), nothing
// is acknowledged until space returns, and close() does not wait for a disk that will not empty.
import t from 'tap';
import { SpoolQuota } from '../src/spool/quota.js';
import { ShardSpool } from '../src/spool/shard-spool.js';
import { frame, LC3, T0 } from './support/spool.js';
import { fault, ruledIo } from './support/spool-parts.js';

t.test('quota: noSpace per shard makes it full; the SharedArrayBuffer carries it', async (t) => {
  const q = new SpoolQuota(1000);
  const other = new SpoolQuota(q.sab);
  t.notOk(q.full);
  other.setNoSpace(3, true);
  other.setNoSpace(5, true);
  t.ok(q.noSpace && q.full, 'seen from another thread');
  other.setNoSpace(3, false);
  t.ok(q.full, 'shard 5 still has no space');
  other.setNoSpace(5, false);
  t.notOk(q.full);
  t.throws(() => new SpoolQuota(new SharedArrayBuffer(16)), /SharedArrayBuffer of another SpoolQuota/);
});

t.test('ENOSPC: reported, not acknowledged, acknowledged when space returns; close gives up on a full disk', async (t) => {
  const dir = t.testdir();
  let full = true;
  const quota = new SpoolQuota(1 << 30);
  const acks: number[] = [];
  const errors: string[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 2,
    quota,
    io: ruledIo((op, p) => (full && op === 'write' && p.endsWith('.jnl') ? fault('ENOSPC') : undefined)),
    fsyncMs: 60_000,
    onDurable: (_id, f) => acks.push(f),
    onNoSpace: (f) => quota.setNoSpace(2, f),
    onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
  });
  t.teardown(() => sp.abort());
  const s = sp.openSession({ sessionId: 1, uid: 'u', format: LC3 });
  s.append(frame(1, 0), 1, T0);
  await sp.flush();
  t.ok(quota.full, 'the quota says full');
  t.same(acks, []);
  full = false;
  s.append(frame(1, 1), 1, T0 + 10);
  await sp.flush();
  t.same(acks, [2]);
  t.notOk(quota.full, 'space again');
  full = true;
  s.append(frame(1, 2), 1, T0 + 20);
  const t0 = Date.now();
  await sp.close();
  t.ok(Date.now() - t0 < 2000, `close returned at once (${Date.now() - t0} ms)`);
  t.match(errors.at(-1), /close: the disk is full/);
  t.same(acks, [2], 'the third frame was never acknowledged');
});

t.test('closeTimeoutMs: a seal that never finishes does not hold close() forever', async (t) => {
  const dir = t.testdir();
  const errors: string[] = [];
  const sp = new ShardSpool({
    dir,
    shard: 0,
    quota: new SpoolQuota(1 << 30),
    io: ruledIo((op) => (op === 'link' ? fault('EIO') : undefined)),
    fsyncMs: 60_000,
    closeTimeoutMs: 300,
    onError: (e, ctx) => errors.push(`${ctx}: ${e.message}`),
  });
  sp.openSession({ sessionId: 1, uid: 'u', format: LC3 }).append(frame(1, 0), 1, T0);
  const t0 = Date.now();
  await sp.close();
  const ms = Date.now() - t0;
  t.ok(ms >= 250 && ms < 3000, `gave up after the timeout (${ms} ms)`);
  t.match(errors.at(-1), /close: not everything sealed within 300 ms/);
});
