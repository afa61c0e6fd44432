import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { transcodeDir } from '../src/codec/batch.js';
import { wavToLc3 } from '../src/codec/transcode.js';
import { encodeWav, parseWav } from '../src/formats/wav.js';
import { testSignal } from './support/audio.js';

t.test('batch transcode of a directory tree on the piscina pool', async (t) => {
  const dir = t.testdir({ in: { sub: {} } });
  const pcm = testSignal(16000, 1);
  const lc3 = wavToLc3(encodeWav(16000, 1, pcm), { bitrate: 24000, frameUs: 10000 });
  for (const name of ['a.lc3', 'b.lc3', 'sub/c.lc3']) writeFileSync(join(dir, 'in', name), lc3);
  writeFileSync(join(dir, 'in', 'broken.lc3'), Buffer.from('not lc3 at all, definitely'));
  writeFileSync(join(dir, 'in', 'ignored.txt'), 'x');
  mkdirSync(join(dir, 'out'));
  const seen: number[] = [];
  const r = await transcodeDir(join(dir, 'in'), join(dir, 'out'), { threads: 2, onProgress: (p) => seen.push(p.done) });
  t.equal(r.ok.length, 3);
  t.equal(r.failed.length, 1);
  t.match(r.failed[0]!.error, /not an \.lc3 file/);
  t.same(seen.at(-1), 4);
  const wav = parseWav(readFileSync(join(dir, 'out', 'sub', 'c.wav')));
  t.equal(wav.samples.length, pcm.length, 'dlc3-exact length after the round trip');
});
