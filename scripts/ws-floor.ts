// The WebSocket floor: a bare `ws` server that accepts any path and only counts messages, with the
// same server options as lc3-pusher's (no compression, the same maxPayload). Its main-thread CPU
// per message is the least any service built on `ws` can spend; scripts/bench-floor.ts measures
// lc3-pusher against it.
//
//   node dist/scripts/ws-floor.js --port 0      prints {"port":P} then {"messages":N} per second
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'max-payload': { type: 'string', default: String(16 * 2 ** 20) } } });
let messages = 0;
let bytes = 0;
const http = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server: http, maxPayload: Number(values['max-payload']), perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer) => {
    messages++;
    bytes += data.length;
  });
  ws.on('error', () => {});
});
http.listen(Number(values.port), '127.0.0.1', () => {
  const addr = http.address();
  console.log(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }));
});
const tick = setInterval(() => console.log(JSON.stringify({ messages, bytes, clients: wss.clients.size })), 1000);
process.once('SIGTERM', () => {
  clearInterval(tick);
  for (const c of wss.clients) c.terminate();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
