#!/usr/bin/env node
// Entry point of the compiled build (npm run build writes dist/).
// CommonJS on purpose: it must set UV_THREADPOOL_SIZE before anything uses libuv's thread pool,
// and Node reads an ES-module entry through that pool before the module's first line runs.
'use strict';
const { existsSync } = require('node:fs');
const { availableParallelism } = require('node:os');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');

// Every shard fdatasyncs its journal and seals chunks (fdatasync, link, directory fsync), and the
// uploader fsyncs the local store, all on libuv's pool. With its default of 4 threads a few slow
// fsyncs stall every other file operation of the process; sealing then falls behind under churn
// and the journal cannot be pruned. Threads that wait on the disk cost no CPU.
// The shard count comes from `--shards N` / `--shards=N` when given (flags override the env), then
// SHARDS; a bad value is left for the CLI's own validation to refuse.
function shardsWanted(argv, env) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--shards' && Number(argv[i + 1]) > 0) return Number(argv[i + 1]);
    if (a.startsWith('--shards=') && Number(a.slice(9)) > 0) return Number(a.slice(9));
  }
  return Number(env.SHARDS) > 0 ? Number(env.SHARDS) : availableParallelism();
}
if (!process.env.UV_THREADPOOL_SIZE) {
  const shards = shardsWanted(process.argv.slice(2), process.env);
  process.env.UV_THREADPOOL_SIZE = String(Math.min(128, 8 + 8 * shards));
}

const cli = join(__dirname, '../dist/src/cli.js');
// Covered by test/cli-bin.test.ts, which runs a copy of this file next to no build: coverage
// cannot follow that copy, and the tests that run this file in place always have a build.
/* c8 ignore start */
if (!existsSync(cli)) {
  console.error('lc3-pusher: the build is missing; run `npm run build` first');
  process.exit(1);
}
/* c8 ignore stop */
(async () => {
  const { main } = await import(pathToFileURL(cli).href);
  const { progressBar } = await import(pathToFileURL(join(__dirname, '../dist/src/util/progress.js')).href);
  const code = await main(process.argv.slice(2), {
    out: (s) => console.log(s),
    err: (s) => console.error(s),
    progress: progressBar(),
  });
  if (code !== 0) process.exitCode = code;
})();
