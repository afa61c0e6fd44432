// The fake GCS itself, spoken to over raw HTTP: the protocol details the client tests rely on.
import t from 'tap';
import { request } from 'node:http';
import { crc32cBase64, FakeGcs, md5Base64 } from './support/fake-gcs.js';

const fake = await FakeGcs.start({ buckets: ['b'] });
t.teardown(() => fake.stop());
t.afterEach(() => fake.clearFaults());

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: () => Record<string, unknown>;
}

/** One request on a fresh connection (no keep-alive, so socket faults hit only this request). */
function call(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, fake.url);
    const req = request(u, { method, headers: { connection: 'close', ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const b = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, body: b, json: () => JSON.parse(b.toString()) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function multipartBody(resource: object, data: Buffer, boundary = 'BOUNDARY'): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(resource)}\r\n--${boundary}\r\nContent-Type: audio/lc3\r\n\r\n`),
    data,
    Buffer.from(`\r\n--${boundary}--`),
  ]);
}

async function startSession(name: string, headers: Record<string, string> = {}, resource: object = {}): Promise<string> {
  const r = await call('POST', `/upload/storage/v1/b/b/o?uploadType=resumable&name=${encodeURIComponent(name)}`, JSON.stringify(resource), {
    'content-type': 'application/json',
    ...headers,
  });
  t.equal(r.status, 200);
  return new URL(String(r.headers.location)).pathname + new URL(String(r.headers.location)).search;
}

t.test('multipart upload, metadata, download, list, delete', async (t) => {
  const data = Buffer.from('hello, bucket');
  const r = await call('POST', '/upload/storage/v1/b/b/o?uploadType=multipart&name=dir%2Fa.lc3', multipartBody({ contentType: 'audio/lc3', metadata: { k: 'v' } }, data), {
    'content-type': 'multipart/related; boundary=BOUNDARY',
  });
  t.equal(r.status, 200);
  const res = r.json();
  t.match(res, { name: 'dir/a.lc3', bucket: 'b', size: String(data.length), md5Hash: md5Base64(data), crc32c: crc32cBase64(data), contentType: 'audio/lc3', metadata: { k: 'v' } });
  t.equal(crc32cBase64(Buffer.from('hello world')), 'yZRlqg==', 'crc32c is GCS’s base64 big-endian form');
  t.same((await call('GET', '/storage/v1/b/b/o/dir%2Fa.lc3')).json(), res);
  const dl = await call('GET', '/storage/v1/b/b/o/dir%2Fa.lc3?alt=media');
  t.same(dl.body, data);
  t.equal(dl.headers['x-goog-hash'], `crc32c=${crc32cBase64(data)},md5=${md5Base64(data)}`);
  t.equal(dl.headers['x-goog-stored-content-encoding'], 'identity');
  t.same((await call('GET', '/download/storage/v1/b/b/o/dir%2Fa.lc3?alt=media')).body, data);
  t.equal((await call('DELETE', '/storage/v1/b/b/o/dir%2Fa.lc3')).status, 204);
  t.equal((await call('GET', '/storage/v1/b/b/o/dir%2Fa.lc3')).status, 404);
  t.equal((await call('DELETE', '/storage/v1/b/b/o/dir%2Fa.lc3')).status, 404);
  t.equal(fake.getObject('b', 'dir/a.lc3'), undefined);
});

t.test('multipart: bad bodies and declared hashes', async (t) => {
  const data = Buffer.from('abc');
  const ct = { 'content-type': 'multipart/related; boundary=BOUNDARY' };
  const up = (body: Buffer, headers = ct, q = 'name=x') => call('POST', `/upload/storage/v1/b/b/o?uploadType=multipart&${q}`, body, headers);
  t.equal((await up(multipartBody({}, data), { 'content-type': 'multipart/related' })).status, 400, 'no boundary');
  t.equal((await up(Buffer.from('garbage'))).status, 400, 'no delimiter');
  t.equal((await up(Buffer.from('--BOUNDARY\r\nContent-Type: x'))).status, 400, 'no header end');
  t.equal((await up(Buffer.from('--BOUNDARY\r\nContent-Type: x\r\n\r\nabc'))).status, 400, 'not terminated');
  t.equal((await up(Buffer.from('--BOUNDARY\r\nContent-Type: application/json\r\n\r\n{}\r\n--BOUNDARY--'))).status, 400, 'one part');
  t.equal((await up(multipartBody({}, data), ct, 'x=1')).status, 400, 'no name');
  const bad = await up(multipartBody({ md5Hash: md5Base64(Buffer.from('other')) }, data));
  t.equal(bad.status, 400);
  t.match(bad.json(), { error: { code: 400, message: /MD5 hash/ } });
  t.equal((await up(multipartBody({ crc32c: 'AAAAAA==' }, data))).status, 400, 'wrong declared crc32c');
  const ok = await up(multipartBody({ name: 'y', md5Hash: md5Base64(data), crc32c: crc32cBase64(data) }, data), ct, '');
  t.equal(ok.status, 200, 'name from the resource, matching hashes');
  t.equal(ok.json().name, 'y');
  t.notOk('metadata' in ok.json(), 'no metadata field when there is none');
});

t.test('resumable: chunks, 308 + Range, status queries, re-sent overlap, completion', async (t) => {
  const data = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'); // 36 bytes
  const loc = await startSession('r/one', { 'x-upload-content-type': 'text/plain', 'x-upload-content-length': '36' }, { metadata: { a: '1' } });
  let r = await call('PUT', loc, '', { 'content-range': 'bytes */*' });
  t.equal(r.status, 308);
  t.equal(r.headers.range, undefined, 'nothing received yet: no Range');
  r = await call('PUT', loc, data.subarray(0, 10), { 'content-range': 'bytes 0-9/*' });
  t.equal(r.status, 308);
  t.equal(r.headers.range, 'bytes=0-9');
  r = await call('PUT', loc, data.subarray(5, 20), { 'content-range': 'bytes 5-19/*' });
  t.equal(r.headers.range, 'bytes=0-19', 'an overlapping re-send is accepted');
  t.equal((await call('PUT', loc, data.subarray(30), { 'content-range': 'bytes 30-35/36' })).status, 400, 'a gap is refused');
  t.equal((await call('PUT', loc, '', { 'content-range': 'bytes 0-1' })).status, 400, 'malformed Content-Range');
  r = await call('PUT', loc, '', { 'content-range': 'bytes */36' });
  t.equal(r.status, 308, 'status query with the total: still incomplete');
  r = await call('PUT', loc, data.subarray(20), { 'content-range': 'bytes 20-35/36', 'x-goog-hash': `crc32c=${crc32cBase64(data)},md5=${md5Base64(data)}` });
  t.equal(r.status, 200);
  t.match(r.json(), { name: 'r/one', size: '36', contentType: 'text/plain', metadata: { a: '1' } });
  t.same(fake.getObject('b', 'r/one')!.data, data);
  r = await call('PUT', loc, '', { 'content-range': 'bytes */*' });
  t.equal(r.status, 200, 'a finished session answers with the object');
  t.equal((await call('PUT', '/upload/storage/v1/b/b/o?upload_id=nope', '', { 'content-range': 'bytes */*' })).status, 404);
});

t.test('resumable: single streaming request, finalize by status query, and refusals', async (t) => {
  const data = Buffer.from('streamed');
  let loc = await startSession('r/two');
  let r = await call('PUT', loc, data, { 'content-range': 'bytes 0-*/*' });
  t.equal(r.status, 200, 'bytes 0-*/*: the end of the request ends the upload');
  t.equal(r.json().contentType, 'application/octet-stream');
  loc = await startSession('r/three');
  t.equal((await call('PUT', loc, data, { 'content-range': 'bytes 0-7/*' })).status, 308);
  t.equal((await call('PUT', loc, '', { 'content-range': 'bytes */8' })).status, 200, 'all bytes there: a status query with the total completes');
  loc = await startSession('r/four');
  t.equal((await call('PUT', loc, data, { 'content-range': 'bytes 0-7/4' })).status, 400, 'more than the total');
  loc = await startSession('r/five', { 'x-upload-content-length': '9' });
  t.equal((await call('PUT', loc, data, { 'content-range': 'bytes 0-7/8' })).status, 400, 'not the announced length');
  loc = await startSession('r/six');
  r = await call('PUT', loc, data, { 'content-range': 'bytes 0-7/8', 'x-goog-hash': `crc32c=AAAAAA==,md5=${md5Base64(data)}` });
  t.equal(r.status, 400, 'X-Goog-Hash that does not match');
  t.equal((await call('POST', '/upload/storage/v1/b/b/o?uploadType=resumable', '{}')).status, 400, 'no name');
  t.equal((await call('POST', '/upload/storage/v1/b/missing/o?uploadType=resumable&name=x', '{}')).status, 404, 'no bucket');
});

t.test('list: prefix, pages, tokens', async (t) => {
  for (const n of ['l/c', 'l/a', 'l/b', 'm/x']) fake.putObject('b', n, Buffer.from(n));
  let r = (await call('GET', '/storage/v1/b/b/o?prefix=l%2F&maxResults=2')).json();
  t.same((r.items as { name: string }[]).map((i) => i.name), ['l/a', 'l/b']);
  t.type(r.nextPageToken, 'string');
  r = (await call('GET', `/storage/v1/b/b/o?prefix=l%2F&maxResults=2&pageToken=${String(r.nextPageToken)}`)).json();
  t.same((r.items as { name: string }[]).map((i) => i.name), ['l/c']);
  t.equal(r.nextPageToken, undefined);
  r = (await call('GET', '/storage/v1/b/b/o?prefix=zzz')).json();
  t.same(r, { kind: 'storage#objects' }, 'no items field when empty');
  t.same(fake.objects('b').filter((o) => o.name.startsWith('l/')).map((o) => o.name), ['l/a', 'l/b', 'l/c']);
  t.same(fake.objects('nope'), []);
});

t.test('routes and buckets that do not exist', async (t) => {
  t.equal((await call('GET', '/storage/v1/b/missing/o')).status, 404);
  t.equal((await call('GET', '/storage/v1/b/missing/o/x')).status, 404);
  t.equal((await call('GET', '/nothing/here')).status, 404);
  t.equal((await call('POST', '/storage/v1/b/b/o')).status, 404);
  t.equal((await call('PATCH', '/storage/v1/b/b/o/x')).status, 404);
  t.equal((await call('GET', '/upload/storage/v1/b/b/o')).status, 404);
  t.equal(fake.counters.byKind.other >= 4, true);
});

t.test('faults: failNext with a filter, probability, latency, resets, outages, counters', async (t) => {
  fake.putObject('b', 'f/x', Buffer.from('x'));
  fake.resetCounters();
  fake.failNext(2, { status: 500, only: (r) => r.kind === 'download' });
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx')).status, 200, 'the filter spares other requests');
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx?alt=media')).status, 500);
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx?alt=media')).status, 500);
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx?alt=media')).status, 200, 'only n failures');
  t.equal(fake.counters.injectedStatus, 2);

  const pattern = async (seed: number) => {
    fake.failureProbability(0.5, seed);
    const out: number[] = [];
    for (let i = 0; i < 12; i++) out.push((await call('GET', '/storage/v1/b/b/o/f%2Fx')).status);
    fake.failureProbability(0);
    return out;
  };
  const a = await pattern(3);
  t.same(await pattern(3), a, 'the same seed fails the same requests');
  t.ok(a.includes(503) && a.includes(200), 'p=0.5 fails some, not all');

  fake.latencyMs = 150;
  const t0 = Date.now();
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx')).status, 200);
  t.ok(Date.now() - t0 >= 140, 'latency delays the answer');
  fake.latencyMs = 0;

  for (const when of ['headers', 'body'] as const) {
    fake.resetNext(1, { when });
    await t.rejects(call('GET', '/storage/v1/b/b/o/f%2Fx'), { code: /ECONNRESET|socket hang up/ }, `reset (${when})`);
  }
  t.equal(fake.counters.injectedResets, 2);

  fake.outage('status');
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx')).status, 503);
  fake.outage('reset');
  await t.rejects(call('GET', '/storage/v1/b/b/o/f%2Fx'));
  fake.outage('hang');
  const hung = call('GET', '/storage/v1/b/b/o/f%2Fx').catch((e: Error) => e);
  await new Promise((r) => setTimeout(r, 50));
  fake.outage(false); // releases hung requests
  t.type(await hung, Error, 'a hung request ends when the outage ends');
  t.equal((await call('GET', '/storage/v1/b/b/o/f%2Fx')).status, 200, 'and the fake answers again');
  t.equal(fake.counters.outageRefused, 3);
  t.ok(fake.counters.requests >= 30);
  t.ok(fake.log.length > 0);
});

t.test('corruptions apply to the next completed upload only', async (t) => {
  const data = Buffer.from('good data');
  const ct = { 'content-type': 'multipart/related; boundary=BOUNDARY' };
  const up = (name: string) => call('POST', `/upload/storage/v1/b/b/o?uploadType=multipart&name=${name}`, multipartBody({ metadata: { sha256: 'x' } }, data), ct);
  fake.corruptNextUpload('bytes');
  let r = (await up('c1')).json();
  t.not(fake.getObject('b', 'c1')!.data.toString(), 'good data', 'stored bytes flipped');
  t.equal(r.md5Hash, md5Base64(fake.getObject('b', 'c1')!.data), 'and reported consistently');
  fake.corruptNextUpload('md5');
  r = (await up('c2')).json();
  t.not(r.md5Hash, md5Base64(data));
  t.equal(fake.getObject('b', 'c2')!.md5Hash, md5Base64(data), 'only the response lies');
  fake.corruptNextUpload('size');
  t.equal((await up('c3')).json().size, String(data.length + 1));
  fake.corruptNextUpload('metadata');
  t.same((await up('c4')).json().metadata, { sha256: '0'.repeat(64) });
  fake.corruptNextUpload('name');
  t.equal((await up('c5')).json().name, 'c5.other');
  fake.corruptNextUpload('crc32c');
  t.not((await up('c6')).json().crc32c, crc32cBase64(data));
  t.equal((await up('c7')).json().md5Hash, md5Base64(data), 'then honest again');
  const empty = fake.putObject('b', 'e', Buffer.alloc(0));
  t.equal(empty.data.length, 0);
});
