import t from 'tap';
import { numArg } from '../scripts/lib/num-arg.js';

t.test('numArg: the value after --name, the default when absent, refusal otherwise', async (t) => {
  const argv = ['node', 'script', '--sessions', '20', '--bad', 'x', '--zero', '0'];
  t.equal(numArg('sessions', 5, argv), 20);
  t.equal(numArg('kills', 5, argv), 5);
  t.throws(() => numArg('bad', 1, argv), /--bad must be a positive number, got x/);
  t.throws(() => numArg('zero', 1, argv), /--zero must be a positive number, got 0/);
});
