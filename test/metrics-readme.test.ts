// The README's metrics tables against a live /metrics of the compiled service (npm run
// build:ts): every metric family served is in a table with the same type and label names, and
// every row of the tables is served. One short session, one upload and one refused handshake
// first, so that series created on first use (labelled counters, the upload histogram) exist.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { startService } from '../scripts/lib/service.js';
import { until, within } from '../scripts/lib/wait.js';

interface Family {
  type: string;
  labels: Set<string>;
  /** False when the family has no samples yet: then only its name and type can be compared. */
  sampled: boolean;
}

/** The rows of every table in README's "### Metrics" subsection: name → type and label names. */
function readmeMetrics(readme: string): Map<string, { type: string; labels: Set<string> }> {
  const start = readme.indexOf('\n### Metrics\n');
  if (start < 0) throw new Error('README.md has no "### Metrics" subsection');
  const end = readme.indexOf('\n#', start + 1);
  const rows = new Map<string, { type: string; labels: Set<string> }>();
  for (const line of readme.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\| `([a-z_:][a-z0-9_:]*)` \| (\w+) \| ([^|]*) \|/.exec(line);
    if (!m) continue;
    if (rows.has(m[1]!)) throw new Error(`README lists ${m[1]} twice`);
    const labels = m[3]!.trim() === '—' ? [] : m[3]!.split(',').map((l) => l.trim().replace(/^`|`$/g, ''));
    rows.set(m[1]!, { type: m[2]!, labels: new Set(labels) });
  }
  return rows;
}

/** Metric families of an exposition: from # TYPE lines, label names from their samples. */
function exposedMetrics(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      fams.set(type[1]!, { type: type[2]!, labels: new Set(), sampled: false });
      continue;
    }
    const s = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!s) continue;
    const name = s[1]!;
    const fam = fams.get(name) ?? fams.get(name.replace(/_(bucket|sum|count)$/, ''));
    if (!fam) throw new Error(`sample ${name} has no # TYPE line`);
    fam.sampled = true;
    for (const l of (s[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) {
      // A histogram's `le` and a summary's `quantile` are part of the type, not labels of their own.
      if ((fam.type === 'histogram' && l[1] === 'le') || (fam.type === 'summary' && l[1] === 'quantile')) continue;
      fam.labels.add(l[1]!);
    }
  }
  return fams;
}

t.test('parsers', async (t) => {
  const readme = '# x\n\n### Metrics\n\n| metric | type | labels | what |\n|---|---|---|---|\n| `a_total` | counter | `x`, `y` | A |\n| `b` | gauge | — | B |\n\n### Next\n| `c` | gauge | — | not in the subsection |\n';
  t.same([...readmeMetrics(readme)].map(([n, r]) => [n, r.type, [...r.labels]]), [
    ['a_total', 'counter', ['x', 'y']],
    ['b', 'gauge', []],
  ]);
  t.throws(() => readmeMetrics('# nothing'), /no "### Metrics"/);
  t.throws(() => readmeMetrics(readme.replace('`b`', '`a_total`')), /lists a_total twice/);
  const fams = exposedMetrics('# HELP h x\n# TYPE h histogram\nh_bucket{le="1",r="ok"} 1\nh_sum{r="ok"} 1\nh_count{r="ok"} 1\n# TYPE g gauge\n');
  t.same([...fams].map(([n, f]) => [n, f.type, [...f.labels], f.sampled]), [
    ['h', 'histogram', ['r'], true],
    ['g', 'gauge', [], false],
  ]);
  t.throws(() => exposedMetrics('x 1\n'), /no # TYPE/);
});

t.test('README metrics tables = a live /metrics', async (t) => {
  const svc = await startService({ env: { SHARDS: '2', SLOTS_PER_SHARD: '64' } });
  t.teardown(() => svc.stop());
  const ws = svc.baseUrl.replace(/^http/, 'ws');
  // A refused handshake (pusher_rejected_total{reason}).
  const bad = new WebSocket(`${ws}/v1/audio/stream`); // no uid
  await within(new Promise((r) => bad.once('error', r)), 10000, 'the bad handshake to be refused');
  // One LC3 wearable session of 20 frames, closed: its chunk is sealed and uploaded.
  const dev = new WebSocket(`${ws}/v1/audio/stream?uid=metrics1`);
  await within(new Promise((r) => dev.once('open', r)), 10000, 'the session to open');
  for (let i = 0; i < 20; i++) dev.send(Buffer.alloc(30, i));
  dev.close();
  await within(new Promise((r) => dev.once('close', r)), 10000, 'the session to close');
  const scrape = async () => (await fetch(`${svc.baseUrl}/metrics`)).text();
  const uploaded = async () => /^pusher_uploads_total\{result="ok"\} [1-9]/m.test(await scrape());
  await until(uploaded, 30000, 'the chunk upload (pusher_uploads_total{result="ok"} ≥ 1)');

  const live = exposedMetrics(await scrape());
  const table = readmeMetrics(readFileSync(new URL('../README.md', import.meta.url), 'utf8'));
  const label = (s: Set<string>) => [...s].sort().join(', ') || '—';
  for (const [name, f] of live) {
    const row = table.get(name);
    if (!row) {
      t.fail(`${name} (${f.type}, labels ${label(f.labels)}) is served but not in the README's metrics tables`);
      continue;
    }
    t.equal(row.type, f.type, `${name}: type ${f.type}`);
    // Labels are only visible on samples: a family without any yet is compared by name and type.
    if (f.sampled) t.equal(label(row.labels), label(f.labels), `${name}: labels ${label(f.labels)}`);
  }
  for (const name of table.keys()) t.ok(live.has(name), `${name} (README) is served`);
  const unsampled = [...live].filter(([, f]) => !f.sampled).map(([n]) => n);
  t.comment(`${live.size} families served; labels compared for ${live.size - unsampled.length}; not sampled yet: ${unsampled.join(', ')}`);
  // The per-thread figures and the upload histogram must be among those whose labels were compared.
  for (const name of ['pusher_event_loop_lag_seconds', 'pusher_heap_used_bytes', 'pusher_upload_duration_seconds', 'pusher_rejected_total', 'pusher_frames_received_total']) {
    t.ok(live.get(name)?.sampled, `${name} has samples`);
  }
});
