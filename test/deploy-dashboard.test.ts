// deploy/grafana/lc3-pusher.json: every metric its PromQL queries, and every label it groups or
// filters by, exists on a live /metrics of the compiled service (after one short session, an
// upload and a refused handshake, so the lazily created series exist too).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { parseMetrics } from '../scripts/lib/prom.js';
import { startService } from '../scripts/lib/service.js';

const root = join(import.meta.dirname, '..');
const dashboard = JSON.parse(readFileSync(join(root, 'deploy/grafana/lc3-pusher.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; query?: string | { query: string } }[] };
};
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string }[];
  panels?: Panel[];
}

/** Labels Prometheus adds at scrape time (kubernetes_sd relabelling), not the service. */
const TARGET_LABELS = new Set(['pod', 'namespace', 'instance', 'job', 'node']);
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'Inf', 'NaN']);

/** Metric names and label names one PromQL expression uses. */
function promqlNames(expr: string): { metrics: string[]; labels: string[] } {
  const labels = new Set<string>();
  const metrics = new Set<string>();
  let s = expr.replace(/\{([^}]*)\}/g, (_, inner: string) => {
    for (const m of inner.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g)) labels.add(m[1]!);
    return ' ';
  });
  s = s.replace(/"(?:[^"\\]|\\.)*"/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, list: string) => {
    for (const l of list.split(',')) if (l.trim()) labels.add(l.trim());
    return ' ';
  });
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = s[m.index - 1];
    if (before !== undefined && /[0-9.]/.test(before)) continue; // the e of 1e3
    if (KEYWORDS.has(m[0]) || s.slice(m.index + m[0].length).trimStart().startsWith('(')) continue; // a function
    metrics.add(m[0]);
  }
  return { metrics: [...metrics], labels: [...labels] };
}

function allPanels(ps: Panel[]): Panel[] {
  return ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}
const panels = allPanels(dashboard.panels);
const queries: { where: string; expr: string }[] = panels.flatMap((p) => (p.targets ?? []).map((q) => ({ where: p.title, expr: q.expr })));
// Template variables: label_values(metric, label).
for (const v of dashboard.templating.list) {
  const q = typeof v.query === 'string' ? v.query : v.query?.query;
  const m = q && /^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_]\w*)\s*\)$/.exec(q);
  if (m) queries.push({ where: `variable ${v.name}`, expr: `count by (${m[2]}) (${m[1]})` });
}

t.test('the PromQL name extractor', async (t) => {
  t.same(promqlNames('histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{pod=~"$pod", x!="y"}[5m])))'), { metrics: ['a_bucket'], labels: ['pod', 'x', 'le'] });
  t.same(promqlNames('sum(rate(b_total[$__rate_interval])) / ignoring(q) c + 1e3 * on(z) group_left d'), { metrics: ['b_total', 'c', 'd'], labels: ['q', 'z'] });
  t.same(promqlNames('max by (thread) (lag{quantile="0.99"}) > bool 0.5'), { metrics: ['lag'], labels: ['quantile', 'thread'] });
});

t.test('the dashboard shows what operators need', async (t) => {
  t.equal(dashboard.uid, 'lc3-pusher');
  const ids = panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const p of panels.filter((p) => p.type !== 'row')) {
    t.ok(p.targets?.length, `${p.title}: has queries`);
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the data source variable`);
  }
  const used = new Set(queries.flatMap((q) => promqlNames(q.expr).metrics));
  for (const m of [
    'pusher_sessions_active',
    'pusher_frames_received_total',
    'pusher_audio_bytes_received_total',
    'pusher_decode_latency_seconds_bucket',
    'pusher_queue_depth',
    'pusher_queue_drops_total',
    'pusher_spool_bytes',
    'pusher_spool_seal_backlog',
    'pusher_uploads_total',
    'pusher_upload_retries_total',
    'pusher_upload_duration_seconds_bucket',
    'process_resident_memory_bytes',
    'pusher_heap_used_bytes',
    'pusher_rejected_total',
    'pusher_event_loop_lag_seconds',
    'pusher_build_info',
  ])
    t.ok(used.has(m), `queries ${m}`);
});

/** One LC3 session (zero frames: concealed, still decoded, stored and uploaded) and one refusal. */
async function driveOneSession(port: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/audio/stream?uid=dashboard`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  for (let i = 0; i < 50; i++) ws.send(Buffer.alloc(30));
  await new Promise((r) => setTimeout(r, 300));
  ws.close();
  await new Promise((r) => ws.once('close', r));
  const status = await new Promise<number>((resolve, reject) => {
    const bad = new WebSocket(`ws://127.0.0.1:${port}/v1/audio/stream?uid=../etc`);
    bad.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    bad.once('open', () => reject(new Error('a session with uid ../etc was accepted')));
    bad.once('error', () => undefined); // the 400 also surfaces as an error after unexpected-response
  });
  if (status !== 400) throw new Error(`a bad uid got HTTP ${status}, not 400`);
}

t.test('every metric and label the dashboard queries is on a live /metrics', async (t) => {
  const svc = await startService({ dir: t.testdir(), env: { SHARDS: '1', SLOTS_PER_SHARD: '16', FSYNC_MS: '20', _TAPJS_PROCESSINFO_COVERAGE_: '0' } });
  t.teardown(() => svc.stop());
  await driveOneSession(svc.port);
  // The chunk is sealed at close and uploaded to the local store: wait for that upload.
  let text = '';
  const deadline = Date.now() + 30_000;
  for (;;) {
    text = await (await fetch(`${svc.baseUrl}/metrics`)).text();
    if (/^pusher_uploads_total\{result="ok"\} [1-9]/m.test(text)) break;
    if (Date.now() > deadline) return t.fail(`no upload within 30 s of the session's close:\n${svc.logTail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const samples = parseMetrics(text);
  const familyOf = (name: string): string | undefined => {
    if (types.has(name)) return name;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && ['histogram', 'summary'].includes(types.get(base) ?? '') ? base : undefined;
  };
  const lazy: string[] = [];
  for (const { where, expr } of queries) {
    const { metrics, labels } = promqlNames(expr);
    t.ok(metrics.length > 0, `${where}: queries a metric`);
    for (const name of metrics) {
      if (!t.ok(familyOf(name), `${where}: ${name} is on /metrics`)) continue;
      const own = samples.filter((s) => s.name === name);
      if (own.length === 0) {
        lazy.push(name);
        continue;
      }
      for (const l of labels.filter((l) => !TARGET_LABELS.has(l))) t.ok(own.some((s) => l in s.labels), `${where}: ${name} has label ${l}`);
    }
  }
  // A labelled counter has no series until it first counts (queue drops need a slow webhook).
  if (lazy.length) t.comment(`declared, no series yet (labels not checked): ${[...new Set(lazy)].join(', ')}`);
  t.ok(samples.some((s) => s.name === 'pusher_rejected_total' && s.labels.reason), 'the refusal was counted by reason');
});
