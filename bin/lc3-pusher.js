#!/usr/bin/env node
// Entry point of the compiled build (npm run build writes dist/).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('lc3-pusher: the build is missing; run `npm run build` first');
  process.exit(1);
}
const { main } = await import(cli.href);
const { progressBar } = await import(new URL('../dist/src/util/progress.js', import.meta.url).href);
const code = await main(process.argv.slice(2), {
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  progress: progressBar(),
});
if (code !== 0) process.exitCode = code;
