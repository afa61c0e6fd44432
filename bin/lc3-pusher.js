#!/usr/bin/env node
// Entry point of the compiled build (npm run build writes dist/).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
// Covered by test/cli-bin.test.ts, which runs a copy of this file next to no build: coverage
// cannot follow that copy, and the tests that run this file in place always have a build.
/* c8 ignore start */
if (!existsSync(cli)) {
  console.error('lc3-pusher: the build is missing; run `npm run build` first');
  process.exit(1);
}
/* c8 ignore stop */
const { main } = await import(cli.href);
const { progressBar } = await import(new URL('../dist/src/util/progress.js', import.meta.url).href);
const code = await main(process.argv.slice(2), {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  progress: progressBar(),
});
if (code !== 0) process.exitCode = code;
