// The batch progress bar (src/util/progress.ts) and the `serve` subcommand's wiring.
import t from 'tap';
import { Writable } from 'node:stream';
import { progressBar } from '../src/util/progress.js';

/** A writable that claims to be a terminal, recording what is drawn. */
function fakeTty() {
  const chunks: string[] = [];
  const s = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  }) as Writable & Partial<NodeJS.WriteStream>;
  Object.assign(s, {
    isTTY: true,
    columns: 80,
    cursorTo: (_x: number, _y?: number, cb?: () => void) => (cb?.(), true),
    clearLine: (_d: number, cb?: () => void) => (cb?.(), true),
    moveCursor: (_dx: number, _dy: number, cb?: () => void) => (cb?.(), true),
    clearScreenDown: (cb?: () => void) => (cb?.(), true),
  });
  return { stream: s as unknown as NodeJS.WriteStream, text: () => chunks.join('') };
}

t.test('no bar unless stderr is a terminal', async (t) => {
  t.equal(progressBar({ isTTY: false } as NodeJS.WriteStream), undefined);
  t.equal(typeof progressBar(), process.stderr.isTTY ? 'function' : 'undefined', 'default: process.stderr');
});

t.test('draws on a terminal and stops at the total', async (t) => {
  const tty = fakeTty();
  const bar = progressBar(tty.stream)!;
  bar(0, 3);
  bar(1, 3);
  bar(3, 3);
  t.match(tty.text(), /transcode \[.*\] 3\/3 files/);
});

t.test('serve: hands over to the service', async (t) => {
  let served = 0;
  const { main } = await t.mockImport<typeof import('../src/cli.js')>('../src/cli.js', {
    '../src/serve.js': { serveFromEnv: async () => void served++ },
  });
  const code = await main(['serve'], { out: () => {}, err: () => {} });
  t.equal(code, 0);
  t.equal(served, 1);
  // A service that cannot start: its own message, one line, exit 1.
  const failing = await t.mockImport<typeof import('../src/cli.js')>('../src/cli.js', {
    '../src/serve.js': {
      serveFromEnv: async () => {
        throw Object.assign(new Error('listen EADDRINUSE: address already in use :::8080'), { code: 'EADDRINUSE', syscall: 'listen' });
      },
    },
  });
  const err: string[] = [];
  t.equal(await failing.main(['serve'], { out: () => {}, err: (s) => err.push(s) }), 1);
  t.same(err, ['lc3-pusher: listen EADDRINUSE: address already in use :::8080']);
});
