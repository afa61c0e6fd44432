// The admin-only debug routes (main thread), for any thread of the process by name:
//   GET /debug/profile?thread=T&seconds=S  a .cpuprofile taken inside T (the thread keeps running)
//   GET /debug/heap?thread=T               a .heapsnapshot taken inside T, streamed as V8 writes it
//   GET /debug/gc?thread=T|all             a full GC in T (or every thread), heap before and after
// Thread names come from one resolver (ThreadDirectory). The service keeps serving meanwhile: a
// profile only samples; a snapshot pauses just the thread it describes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GcResult } from '../util/profile.js';
import { bearer, HttpError } from './auth.js';
import type { ThreadDirectory } from './threads.js';

export const MAX_PROFILE_SECONDS = 120;

export class DebugRoutes {
  /** One heap snapshot at a time: each needs memory on the order of the heap it describes. */
  private heapBusy = false;

  constructor(
    private readonly threads: ThreadDirectory,
    private readonly adminToken: string | undefined,
  ) {}

  /**
   * Serves `url` if it is a debug route (false otherwise). Throws HttpError for bad requests
   * before anything was sent; once a response has started, a failure aborts the response.
   */
  async handle(req: IncomingMessage, url: URL, res: ServerResponse): Promise<boolean> {
    switch (url.pathname) {
      case '/debug/profile':
        this.checkAdmin(req, url);
        await this.profile(url, res);
        return true;
      case '/debug/heap':
        this.checkAdmin(req, url);
        await this.heap(url, res);
        return true;
      case '/debug/gc':
        this.checkAdmin(req, url);
        await this.gc(url, res);
        return true;
      default:
        return false;
    }
  }

  /** Admin endpoints: only with ADMIN_TOKEN set, and only for a request that carries it. */
  private checkAdmin(req: IncomingMessage, url: URL): void {
    if (!this.adminToken) throw new HttpError(403, 'forbidden', 'admin endpoints are disabled (set ADMIN_TOKEN)');
    if (bearer(req.headers.authorization, url.searchParams) !== this.adminToken) throw new HttpError(401, 'unauthorized', 'admin token required');
  }

  private async profile(url: URL, res: ServerResponse): Promise<void> {
    const raw = url.searchParams.get('seconds') ?? '5';
    const seconds = Number(raw);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_PROFILE_SECONDS) {
      throw new HttpError(400, 'bad_request', `seconds must be a number in (0, ${MAX_PROFILE_SECONDS}] (got ${JSON.stringify(raw.slice(0, 40))})`);
    }
    const name = url.searchParams.get('thread') ?? 'main';
    const profile = await this.threads.resolve(name).profile(seconds);
    res.writeHead(200, { 'content-type': 'application/json', 'content-disposition': `attachment; filename="${name}.cpuprofile"` });
    res.end(profile);
  }

  private async heap(url: URL, res: ServerResponse): Promise<void> {
    const name = url.searchParams.get('thread') ?? 'main';
    const thread = this.threads.resolve(name);
    if (this.heapBusy) throw new HttpError(409, 'busy', 'a heap snapshot is being taken; try again when it is done');
    this.heapBusy = true;
    let started = false;
    try {
      // Headers go out with the first piece, so a thread that fails at once still gets a JSON error.
      await thread.heap((chunk) => {
        if (!started) {
          started = true;
          res.writeHead(200, { 'content-type': 'application/json', 'content-disposition': `attachment; filename="${name}.heapsnapshot"` });
        }
        res.write(chunk);
      });
      res.end();
    } catch (err) {
      if (!started) throw err;
      res.destroy(); // mid-stream: the client sees a truncated body, not a valid-looking one
    } finally {
      this.heapBusy = false;
    }
  }

  /** The leak harness takes its plateau and final RSS after a GC of every thread. */
  private async gc(url: URL, res: ServerResponse): Promise<void> {
    const want = url.searchParams.get('thread') ?? 'all';
    const targets = want === 'all' ? this.threads.live() : [{ name: want, thread: this.threads.resolve(want, ['all']) }];
    const out: Record<string, GcResult> = {};
    for (const { name, thread } of targets) out[name] = await thread.gc();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ threads: out }));
  }
}
