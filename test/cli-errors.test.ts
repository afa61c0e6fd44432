// The command line, in process: conversions, and bad input of every kind. Every failure must be
// exactly one line on stderr, prefixed "lc3-pusher:" (or commander's "error:" for usage errors),
// a non-zero exit code, no stack trace, no hang.
import t, { type Test } from 'tap';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli.js';
import { wavToLc3 } from '../src/codec/transcode.js';
import { LC3_HEADER_BYTES } from '../src/formats/lc3file.js';
import { encodeWav, parseWav } from '../src/formats/wav.js';
import { testSignal } from './support/audio.js';

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const progress: [number, number][] = [];
  const code = await main(argv, { out: (s) => out.push(s), err: (s) => err.push(s), progress: (d, n) => progress.push([d, n]) });
  return { code, out, err, progress };
}

const pcm = testSignal(16000, 1);
const wav16 = encodeWav(16000, 1, pcm);
const lc3 = wavToLc3(wav16, { bitrate: 32000, frameUs: 10000 });

const dir = t.testdir({ empty: {} });
const p = (name: string) => join(dir, name);
writeFileSync(p('good.lc3'), lc3);
writeFileSync(p('in.wav'), wav16);

/** Asserts a failure with one clear line matching `re`. */
async function fails(t: Test, argv: string[], re: RegExp, prefix = 'lc3-pusher: ') {
  const r = await cli(...argv);
  t.not(r.code, 0, `${argv.join(' ')}: non-zero exit`);
  t.equal(r.err.length, 1, 'one line on stderr');
  t.ok(r.err[0]?.startsWith(prefix), `prefixed ${JSON.stringify(prefix)}`);
  t.match(r.err[0], re);
  t.notMatch(r.err.join('\n'), /\n|\bat .*\(.*:\d+:\d+\)/, 'no stack trace');
  t.same(r.out, [], 'nothing on stdout');
  return r;
}

t.test('transcode and encode: the happy paths', async (t) => {
  let r = await cli('transcode', p('good.lc3'), p('good.wav'));
  t.same(r, { code: 0, out: [`${p('good.wav')}: 101 frames, 1.00 s`], err: [], progress: [] });
  t.equal(parseWav(readFileSync(p('good.wav'))).samples.length, pcm.length);
  // An existing directory as the output: the file goes in it, named after the input.
  mkdirSync(p('outdir'));
  r = await cli('transcode', p('good.lc3'), p('outdir'));
  t.same(r.out, [`${join(dir, 'outdir', 'good.wav')}: 101 frames, 1.00 s`]);
  // 24 kbps at 7.5 ms: floor(22.5) = 22-byte frames, as liblc3 computes them.
  r = await cli('encode', p('in.wav'), p('enc.lc3'), '--bitrate', '24000', '--frame-ms', '7.5');
  t.same(r, { code: 0, out: [`${p('enc.lc3')}: 134 frames, ${18 + 134 * (2 + 22)} bytes`], err: [], progress: [] });
  r = await cli('encode', p('in.wav'), p('enc10.lc3'), '--bitrate', '32000');
  t.equal(r.code, 0);
  t.same(readFileSync(p('enc10.lc3')), lc3, '10 ms is the default');
});

t.test('transcode reports concealed and ignored frames', async (t) => {
  const f = Buffer.from(lc3);
  f.fill(0xff, LC3_HEADER_BYTES + 2, LC3_HEADER_BYTES + 42); // frame 0: corrupt
  writeFileSync(p('corrupt.lc3'), f);
  const c = await cli('transcode', p('corrupt.lc3'), p('corrupt.wav'));
  t.same(c, { code: 0, out: [`${p('corrupt.wav')}: 101 frames, 1.00 s, 1 corrupt frame(s) concealed`], err: [], progress: [] });
  writeFileSync(p('long.lc3'), Buffer.concat([f, f.subarray(LC3_HEADER_BYTES, LC3_HEADER_BYTES + 84)]));
  const r = await cli('transcode', p('long.lc3'), p('long.wav'));
  t.same(r.out, [`${p('long.wav')}: 103 frames, 1.00 s, 1 corrupt frame(s) concealed, 2 frame(s) past the header's sample count ignored`]);
});

t.test('bad .lc3 input', async (t) => {
  writeFileSync(p('short.lc3'), lc3.subarray(0, 10));
  await fails(t, ['transcode', p('short.lc3'), p('x.wav')], /: truncated \.lc3 file: 10 bytes, the header alone is 18$/);
  writeFileSync(p('torn.lc3'), lc3.subarray(0, lc3.length - 5));
  await fails(t, ['transcode', p('torn.lc3'), p('x.wav')], /torn\.lc3: truncated \.lc3 file: frame 100 at byte 4218 needs 40 bytes, only 35 left$/);
  writeFileSync(p('zeros.lc3'), Buffer.concat([lc3.subarray(0, LC3_HEADER_BYTES + 10 * 42), Buffer.alloc(500)]));
  await fails(t, ['transcode', p('zeros.lc3'), p('x.wav')], /zeros\.lc3: bad frame 10 at byte 438: 0 bytes$/);
  writeFileSync(p('cut.lc3'), lc3.subarray(0, LC3_HEADER_BYTES + 50 * 42));
  await fails(t, ['transcode', p('cut.lc3'), p('x.wav')], /cut\.lc3: truncated \.lc3 file: the header announces 16000 samples \(1\.00 s\), the 50 frames hold 7960 \(0\.50 s\)$/);
  await fails(t, ['transcode', p('in.wav'), p('x.wav')], /in\.wav: not an \.lc3 file: magic 0x4952, expected 0xcc1c$/);
  const big = Buffer.from(lc3);
  big.writeUInt16LE(24000 / 100, 6); // header says 30-byte frames; they are 40
  writeFileSync(p('big.lc3'), big);
  await fails(t, ['transcode', p('big.lc3'), p('x.wav')], /big\.lc3: bad frame 0 at byte 18: 40 bytes, but the header \(24000 bps at 10 ms\) allows at most 30$/);
  const rate = Buffer.from(lc3);
  rate.writeUInt16LE(441, 4);
  writeFileSync(p('rate.lc3'), rate);
  await fails(t, ['transcode', p('rate.lc3'), p('x.wav')], /rate\.lc3: unsupported LC3 sample rate 44100 Hz \(supported: 8000, 16000, 24000, 32000, 48000\)$/);
  await fails(t, ['transcode', p('missing.lc3'), p('x.wav')], new RegExp(`^lc3-pusher: ${p('missing.lc3')}: no such file or directory$`));
  const long = p(`${'x'.repeat(300)}.lc3`);
  await fails(t, ['transcode', long, p('x.wav')], new RegExp(`^lc3-pusher: ${long}: name too long$`));
  t.same(readdirSync(dir).filter((f) => f === 'x.wav' || f.endsWith('.tmp')), [], 'no output left behind by any failure');
});

t.test('bad .wav input and bad options for encode', async (t) => {
  writeFileSync(p('stereo.wav'), encodeWav(16000, 2, new Int16Array(640)));
  await fails(t, ['encode', p('stereo.wav'), p('y.lc3'), '--bitrate', '32000'], /stereo\.wav: only mono WAV can be encoded \(this one has 2 channels\)$/);
  const w24 = Buffer.from(encodeWav(16000, 1, new Int16Array(300)));
  w24.writeUInt16LE(24, 34);
  writeFileSync(p('w24.wav'), w24);
  await fails(t, ['encode', p('w24.wav'), p('y.lc3'), '--bitrate', '32000'], /w24\.wav: unsupported WAV sample size 24 bits \(only 16-bit PCM\)$/);
  writeFileSync(p('cd.wav'), encodeWav(44100, 1, new Int16Array(441)));
  await fails(t, ['encode', p('cd.wav'), p('y.lc3'), '--bitrate', '32000'], /cd\.wav: unsupported LC3 sample rate 44100 Hz/);
  await fails(t, ['encode', p('good.lc3'), p('y.lc3'), '--bitrate', '32000'], /good\.lc3: not a WAV file \(no RIFF\/WAVE header\)$/);
  await fails(t, ['encode', p('in.wav'), p('y.lc3'), '--bitrate', '8000'], /in\.wav: bitrate 8000 bps \(10-byte frames\) is out of range for 10 ms frames: LC3 takes 16000\.\.320000 bps there \(frames of 20\.\.400 bytes\)$/);
  await fails(t, ['encode', p('in.wav'), p('y.lc3'), '--bitrate', '1000000', '--frame-ms', '7.5'], /bitrate 1000000 bps \(937-byte frames\) is out of range for 7\.5 ms frames: LC3 takes 21334\.\.426667 bps/);
  await fails(t, ['encode', p('nope.wav'), p('y.lc3'), '--bitrate', '32000'], /nope\.wav: no such file or directory$/);
  await fails(t, ['encode', p('empty'), p('y.lc3'), '--bitrate', '32000'], /empty: is a directory$/);
  // Usage errors come from commander, one line each.
  await fails(t, ['encode', p('in.wav'), p('y.lc3')], /^error: required option '--bitrate <bps>' not specified$/, 'error: ');
  await fails(t, ['encode', p('in.wav'), p('y.lc3'), '--bitrate', '24k'], /--bitrate must be a positive integer$/, 'error: ');
  await fails(t, ['encode', p('in.wav'), p('y.lc3'), '--bitrate', '-5'], /error: /, 'error: ');
  await fails(t, ['encode', p('in.wav'), p('y.lc3'), '--bitrate', '32000', '--frame-ms', '5'], /argument '5' is invalid\. Allowed choices are 7\.5, 10\.$/, 'error: ');
  await fails(t, ['encode', p('in.wav'), '--bitrate', '32000'], /missing required argument 'out'/, 'error: ');
  await fails(t, ['frobnicate'], /unknown command 'frobnicate'/, 'error: ');
  t.same(readdirSync(dir).filter((f) => f === 'y.lc3' || f.endsWith('.tmp')), [], 'no output left behind by any failure');
});

t.test('an output that cannot be written', async (t) => {
  writeFileSync(p('plainfile'), 'x');
  await fails(t, ['transcode', p('good.lc3'), join(p('plainfile'), 'x.wav')], /plainfile.*: (not a directory|file already exists)/);
  await fails(t, ['encode', p('in.wav'), join(p('plainfile'), 'y.lc3'), '--bitrate', '32000'], /plainfile/);
});

t.test('directories', async (t) => {
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'sub'), { recursive: true });
  writeFileSync(join(tree, 'a.lc3'), lc3);
  writeFileSync(join(tree, 'sub', 'b.lc3'), lc3);
  writeFileSync(join(tree, 'bad.lc3'), 'not an lc3 file at all!!');
  let r = await cli('transcode', tree, join(dir, 'treeout'), '--threads', '2');
  t.equal(r.code, 1, 'a failed file fails the run');
  t.same(r.err, [`${join(tree, 'bad.lc3')}: not an .lc3 file: magic 0x6f6e, expected 0xcc1c`]);
  t.same(r.out, ['transcoded 2 file(s), 2.0 s of audio, 1 failed']);
  t.same(r.progress.at(-1), [3, 3], 'progress reaches the total');
  t.equal(parseWav(readFileSync(join(dir, 'treeout', 'sub', 'b.wav'))).samples.length, pcm.length);
  r = await cli('transcode', join(dir, 'empty'), join(dir, 'emptyout'));
  t.same({ code: r.code, out: r.out }, { code: 0, out: [`no .lc3 files under ${join(dir, 'empty')}`] });
  await fails(t, ['transcode', tree, p('good.lc3')], /good\.lc3: not a directory \(the input .*tree is one\)$/);
  await fails(t, ['transcode', tree, p('o'), '--threads', '0'], /--threads must be a positive integer/, 'error: ');
});

t.test('help exits 0', async (t) => {
  const r = await cli('--help');
  t.equal(r.code, 0);
  t.match(r.out.join('\n'), /transcode.*encode.*serve/s);
});
