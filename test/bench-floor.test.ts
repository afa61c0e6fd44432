// The floor benchmark in its smoke mode (seconds): it must finish by itself and print its table,
// one row per configuration, with figures that show the load reached every server.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const root = join(import.meta.dirname, '..');
const script = join(root, 'dist', 'scripts', 'bench-floor.js');

t.test('bench-floor --smoke prints main-thread and whole-service ratios, storage only and with PCM', { skip: existsSync(script) ? false : 'no build (npm run build:ts)' }, async (t) => {
  const r = spawnSync(process.execPath, [script, '--smoke'], { encoding: 'utf8', timeout: 240_000 });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.slice(-500)})`);
  for (const config of ['storage', 'pcm']) {
    const row = r.stdout.split('\n').find((l) => l.startsWith(`| 1 | 50 | ${config} |`));
    t.ok(row, `a row for ${config}`);
    const cells = row!.split('|').map((s) => s.trim()).filter(Boolean);
    t.equal(cells.length, 16);
    for (const c of [...cells.slice(3, 11), ...cells.slice(12)]) t.ok(Number.isFinite(Number(c)) && Number(c) >= 0, `${config}: figure ${c} is a number`);
    t.ok(Number(cells[3]) > 1000, `${config}: the load reached the floor (msgs/s)`);
    t.ok(Number(cells[5]) > 0, `${config}: lc3-pusher's main thread did work`);
    t.ok(Number(cells[10]) > 0, `${config}: the shards did work (busy time per frame)`);
    t.equal(cells[11], '0', `${config}: no frame lost`);
    if (config === 'pcm') t.ok(Number(cells[15]) > 0, 'the PCM consumer ran: the sink received audio-bytes POSTs');
    else t.equal(cells[15], '0.0', 'storage only: no webhook');
  }
});
