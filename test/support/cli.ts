// Runs the CLI in-process with extra environment variables (removed again afterwards) and
// collects what it prints.
import { main } from '../../src/cli.js';

export async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  Object.assign(process.env, env);
  try {
    const code = await main(argv, { out: (s) => out.push(s), err: (s) => err.push(s) });
    return { code, out, err };
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}
