import t from 'tap';
import { RateLimiter } from '../src/util/rate-limit.js';

t.test('first line, then one per interval with the count held back', async (t) => {
  let now = 0;
  const r = new RateLimiter(1000, () => now);
  t.same(r.check('enospc'), { log: true, suppressed: 0 });
  now = 100; t.same(r.check('enospc'), { log: false, suppressed: 1 });
  now = 999; t.same(r.check('enospc'), { log: false, suppressed: 2 });
  t.same(r.check('other'), { log: true, suppressed: 0 }, 'keys are independent');
  now = 1000; t.same(r.check('enospc'), { log: true, suppressed: 2 });
  now = 1001; t.same(r.check('enospc'), { log: false, suppressed: 1 });
  r.clear('enospc');
  t.same(r.check('enospc'), { log: true, suppressed: 0 }, 'cleared: logged at once');
});
