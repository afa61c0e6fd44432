// `lc3-pusher token`: mints the HS256 JWT that AUTH_MODE=jwt accepts (DESIGN §2.5: `sub` is the
// uid, `exp` enforced), signed by the service's own signToken so the two cannot drift apart.
import { Command } from 'commander';
import { signToken } from '../server/auth.js';
import { ID_PATTERN } from '../spool/names.js';

export class TokenError extends Error {
  override readonly name = 'TokenError';
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
export const MAX_TTL_S = 366 * 86400;

/** "90", "90s", "15m", "1h", "7d" → seconds (1 s … 366 d). */
export function parseTtl(v: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(v.trim());
  const n = m ? Number(m[1]) * UNIT_SECONDS[m[2] || 's']! : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_TTL_S) {
    throw new TokenError(`--ttl ${JSON.stringify(v)}: expected a duration in 1s..366d (e.g. 3600, 90s, 15m, 1h, 7d)`);
  }
  return n;
}

export interface TokenRequest {
  uid: string;
  ttl: string;
  /** --secret; else AUTH_SECRET from the environment. */
  secret?: string | undefined;
}

export async function mintToken(req: TokenRequest, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (!ID_PATTERN.test(req.uid)) throw new TokenError(`--uid ${JSON.stringify(req.uid)}: a uid must match ${ID_PATTERN.source}`);
  const ttl = parseTtl(req.ttl);
  const secret = req.secret || env.AUTH_SECRET;
  if (!secret) throw new TokenError('no secret: set AUTH_SECRET (the service\'s, with AUTH_MODE=jwt) or pass --secret');
  return signToken(secret, req.uid, ttl);
}

export function tokenCommand(out: (line: string) => void): Command {
  return new Command('token')
    .description('mint an HS256 JWT for AUTH_MODE=jwt (sub = uid, exp = now + ttl); prints only the token')
    .requiredOption('--uid <uid>', `the user id the token vouches for (${ID_PATTERN.source})`)
    .option('--ttl <duration>', 'lifetime: seconds, or with a unit s, m, h, d (at most 366d)', '1h')
    .option('--secret <secret>', 'signing key (default: AUTH_SECRET from the environment; a flag is visible in ps)')
    .action(async (opts: { uid: string; ttl: string; secret?: string }) => {
      out(await mintToken(opts));
    });
}
