// `lc3-pusher serve`: configuration from the environment, JSON logs, SIGTERM drain.
import { pino } from 'pino';
import { loadConfig, type Config } from './config.js';
import { IngestServer } from './server/server.js';
import { parseFaults } from './shard/shard-core.js';

export interface Service {
  server: IngestServer;
  port: number;
  stop(): Promise<void>;
}

/** Starts the whole service; `env` lets tests and the chaos harness set test-only switches. */
export async function startService(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<Service> {
  const logger = pino({ level: config.LOG_LEVEL });
  const log = (msg: string, fields?: object) => logger.info(fields ?? {}, msg);
  const faults = env.LC3_PUSHER_TEST_FAULTS ? parseFaults(env.LC3_PUSHER_TEST_FAULTS) : undefined;
  if (faults) log('TEST FAULTS ENABLED', faults);
  const server = new IngestServer({
    config,
    log,
    // Fault switches exist for the leak harness's positive control and backpressure tests only.
    faultsAllowed: faults !== undefined,
    faults,
    pcmTapDir: env.LC3_PUSHER_TEST_PCM_DIR,
  });
  const port = await server.listen();
  log('listening', { port, shards: config.SHARDS, slots: config.SLOTS_PER_SHARD, store: config.STORE });
  return { server, port, stop: () => server.drain() };
}

export async function serveFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const svc = await startService(loadConfig(env), env);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(JSON.stringify({ level: 30, msg: 'draining', signal }));
    svc.stop().then(
      () => process.exit(0),
      (err: Error) => {
        console.error(JSON.stringify({ level: 50, msg: 'drain failed', err: err.message }));
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
