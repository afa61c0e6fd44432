// Placeholder until the ingest core lands: answers /healthz.
import { createServer } from 'node:http';

export async function serveFromEnv(): Promise<void> {
  const port = Number(process.env.PORT ?? 8080);
  const server = createServer((req, res) => {
    if (req.url === '/healthz') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); return; }
    res.writeHead(404); res.end();
  });
  await new Promise<void>((r) => server.listen(port, r));
  console.log(JSON.stringify({ msg: 'listening', port }));
}
