// The floor benchmark in its smoke mode (seconds): it must finish by itself and print its table.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const root = join(import.meta.dirname, '..');
const script = join(root, 'dist', 'scripts', 'bench-floor.js');

t.test('bench-floor --smoke prints main-thread and whole-service ratios', { skip: existsSync(script) ? false : 'no build (npm run build:ts)' }, async (t) => {
  const r = spawnSync(process.execPath, [script, '--smoke'], { encoding: 'utf8', timeout: 180_000 });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.slice(-500)})`);
  const row = r.stdout.split('\n').find((l) => /^\| 1 \| 50 \|/.test(l));
  t.ok(row, 'one row for the run');
  const cells = row!.split('|').map((s) => s.trim()).filter(Boolean);
  t.equal(cells.length, 11);
  for (const c of cells.slice(2)) t.ok(Number.isFinite(Number(c)) && Number(c) >= 0, `figure ${c} is a number`);
  t.ok(Number(cells[2]) > 1000, 'the load reached the servers (msgs/s)');
});
