// A slow HTTP consumer on loopback for the chaos runs: the service's webhooks, audio apps and
// conversation-processing calls point here, and every request is answered after a random delay
// (slow consumers are what made the old service's tasks and queues pile up).
import { createServer, type Server } from 'node:http';

export interface Sink {
  url: string;
  /** Requests received per path. */
  requests: Record<string, number>;
  bytes: number;
  close(): Promise<void>;
}

export async function startSink(delayMs: readonly [number, number] = [0, 2000], random: () => number = Math.random): Promise<Sink> {
  const requests: Record<string, number> = {};
  let bytes = 0;
  const pending = new Set<NodeJS.Timeout>();
  const srv: Server = createServer((req, res) => {
    const path = req.url!.split('?')[0]!;
    requests[path] = (requests[path] ?? 0) + 1;
    // Only JSON bodies are kept (to echo their conversation id). Audio bodies (octet-stream, 160 KB
    // every 5 s per session) are counted and dropped: joining and parsing them as text cost the
    // benchmarks' sink a third of a core at 400 PCM streams, on the cores the service is measured on.
    const json = (req.headers['content-type'] ?? '').startsWith('application/json');
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      if (json && body.length < 4) body.push(c);
    });
    req.on('end', () => {
      let conversation: unknown = null;
      if (json) {
        try {
          conversation = (JSON.parse(Buffer.concat(body).toString('utf8')) as { conversation_id?: unknown }).conversation_id ?? null;
        } catch {
          // not valid JSON: nothing to echo
        }
      }
      const timer = setTimeout(() => {
        pending.delete(timer);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, conversation_id: conversation }));
      }, delayMs[0] + random() * (delayMs[1] - delayMs[0]));
      pending.add(timer);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
    requests,
    get bytes() {
      return bytes;
    },
    close: async () => {
      for (const t of pending) clearTimeout(t);
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    },
  };
}

/** Settings and environment that point every consumer of the service at the sink. */
export function sinkConfig(url: string, sync: boolean): { settings: object; env: Record<string, string> } {
  return {
    settings: {
      default: {
        private_cloud_sync: sync,
        transcript_webhook: `${url}/transcript`,
        audio_bytes_webhook: { url: `${url}/audio-bytes`, seconds: 5 },
        audio_apps: [`${url}/audio-app`],
      },
    },
    // The sink is on loopback, which webhooks may not reach unless the operator allows it.
    env: { PROCESS_CONVERSATION_URL: `${url}/process-conversation`, WEBHOOK_ALLOW_PRIVATE: '1' },
  };
}
