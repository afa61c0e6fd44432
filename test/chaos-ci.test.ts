// The chaos harness's short CI mode, end to end: the real service (a child process from the
// compiled build) under device + Omi workloads with churn and abrupt kills must pass every
// check, and the positive control (LC3_PUSHER_TEST_FAULTS=leak_on_close: closing a session
// leaves its decoder alive) must be flagged. No timing assertions: the bounds are loose on purpose.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { describe, runCi } from '../scripts/lib/chaos.js';

// The child service is not this test's code: keep the test runner's coverage out of it.
const NO_CHILD_COVERAGE = { _TAPJS_PROCESSINFO_COVERAGE_: '0' };

t.test('CI mode: real service passes, positive control is flagged', async (t) => {
  const dir = t.testdir();
  const r = await runCi(dir, (line) => t.comment(line), NO_CHILD_COVERAGE);
  for (const rep of [r.real, r.control]) for (const line of describe(rep)) t.comment(line);
  t.same(r.messages, [], 'CI verdict has no complaints');
  t.ok(r.ok);
  t.ok(r.real.passed, 'real service: every check passes');
  const failed = r.control.checks.filter((c) => !c.ok).map((c) => c.name);
  t.ok(failed.includes('leftovers'), `positive control flagged by: ${failed.join(', ')}`);
  t.ok(r.control.figures.final.decoders > 0, 'the leaked decoders are what was left');
  for (const rep of [r.real, r.control]) {
    t.ok(rep.load.lc3Frames > 0 && rep.load.kills > 0 && rep.load.reconnects > 0, `${rep.name}: load with churn and kills ran`);
    t.equal(rep.framesDecoded, rep.load.lc3Frames - (rep.framesDecoded < rep.load.lc3Frames ? rep.load.uncertain.frames : 0), `${rep.name}: frames decoded = sent`);
    t.ok(existsSync(rep.files.json) && existsSync(rep.files.svg), `${rep.name}: report and chart written`);
    t.match(readFileSync(rep.files.svg, 'utf8'), /^<svg /);
    t.equal(JSON.parse(readFileSync(rep.files.json, 'utf8')).name, rep.name);
  }
});
