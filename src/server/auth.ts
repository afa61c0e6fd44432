// Handshake authentication (DESIGN §2.5): none | jwt (HS256, `sub` is the uid, exp enforced) |
// static (one shared service token for the internal pusher hop).
import { timingSafeEqual } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import type { Config } from '../config.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export function bearer(authorization: string | undefined, query: URLSearchParams): string | undefined {
  if (authorization?.startsWith('Bearer ')) return authorization.slice(7).trim();
  return query.get('token') ?? undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Returns the uid the token vouches for (jwt), or undefined when the query names it. */
export async function authenticate(cfg: Pick<Config, 'AUTH_MODE' | 'AUTH_SECRET'>, token: string | undefined): Promise<string | undefined> {
  if (cfg.AUTH_MODE === 'none') return undefined;
  if (!token) throw new HttpError(401, 'unauthorized', 'missing bearer token');
  if (cfg.AUTH_MODE === 'static') {
    if (!sameSecret(token, cfg.AUTH_SECRET)) throw new HttpError(403, 'forbidden', 'invalid service token');
    return undefined;
  }
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(cfg.AUTH_SECRET), { algorithms: ['HS256'], requiredClaims: ['sub', 'exp'] });
    return payload.sub;
  } catch (err) {
    throw new HttpError(401, 'unauthorized', `invalid token: ${(err as Error).message}`);
  }
}

export async function signToken(secret: string, uid: string, ttlSeconds: number): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(uid)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
