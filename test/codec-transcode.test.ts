// Whole-file conversions (src/codec/transcode.ts, transcode-file.ts): lengths, damaged files,
// corrupt and surplus frames, and the encoder's input checks. Conformance with liblc3's tools is
// test/lc3-conformance.test.ts.
import t from 'tap';
import fc from 'fast-check';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLc3, lc3ToWav, wavToLc3 } from '../src/codec/transcode.js';
import { encodeFile, transcodeFile, writeAtomic } from '../src/codec/transcode-file.js';
import { LC3_HEADER_BYTES, parseLc3File } from '../src/formats/lc3file.js';
import { encodeWav, parseWav } from '../src/formats/wav.js';
import { Lc3Decoder, Lc3Module } from '../wasm/lc3.js';
import { testSignal } from './support/audio.js';

const RATE = 16000;
const pcm = testSignal(RATE, 1);
const lc3 = wavToLc3(encodeWav(RATE, 1, pcm), { bitrate: 32000, frameUs: 10000 }); // 40-byte frames
const FRAME = 2 + 40;
const nframes = (lc3.length - LC3_HEADER_BYTES) / FRAME;

/** The file with frame block i replaced by `block` (or removed when null). */
function withBlock(i: number, block: Uint8Array | null): Buffer {
  const at = LC3_HEADER_BYTES + i * FRAME;
  const parts = [lc3.subarray(0, at)];
  if (block) {
    const len = Buffer.alloc(2);
    len.writeUInt16LE(block.length);
    parts.push(len, Buffer.from(block));
  }
  parts.push(lc3.subarray(at + FRAME));
  return Buffer.concat(parts);
}

t.test('round trip keeps the length, whatever it is (property)', async (t) => {
  const mod = new Lc3Module();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2000 }), fc.constantFrom(7500, 10000), fc.constantFrom(8000, 48000), (n, frameUs, rate) => {
      const wav = encodeWav(rate, 1, new Int16Array(n).fill(1000));
      const file = wavToLc3(wav, { bitrate: 64000, frameUs }, mod);
      const d = decodeLc3(file, mod);
      return d.pcm.length === n && d.header.nsamples === n && d.ignored === 0 && d.concealed === 0;
    }),
    { numRuns: 60 },
  );
  t.equal(mod.live, 0, 'every coder closed');
  const d = decodeLc3(lc3);
  t.equal(d.pcm.length, pcm.length);
  t.equal(d.frames, nframes);
  t.same({ concealed: d.concealed, ignored: d.ignored }, { concealed: 0, ignored: 0 });
  const { wav } = lc3ToWav(lc3);
  const w = parseWav(wav);
  t.same({ rate: w.sampleRate, ch: w.channels, n: w.samples.length }, { rate: RATE, ch: 1, n: pcm.length });
});

t.test('corrupt frames are concealed (exactly like lost ones) and counted; empty ones are damage', async (t) => {
  const corrupt = decodeLc3(withBlock(10, new Uint8Array(40).fill(0xff)));
  t.equal(corrupt.concealed, 1);
  t.equal(corrupt.pcm.length, pcm.length, 'length unchanged');
  // liblc3 conceals an undecodable frame as it conceals a missing one.
  const dec = new Lc3Decoder({ frameUs: 10000, sampleRate: RATE });
  const frames = parseLc3File(lc3).frames;
  const want = new Int16Array(nframes * 160);
  frames.forEach((f, i) => dec.decodeInto(i === 10 ? null : f, want, i * 160));
  dec.close();
  t.same(corrupt.pcm, want.subarray(40, 40 + pcm.length), 'concealment, identical to a lost frame');
  const short = decodeLc3(withBlock(20, new Uint8Array(5)));
  t.equal(short.concealed, 1, 'a 5-byte frame is corrupt');
  t.throws(() => decodeLc3(withBlock(30, new Uint8Array(0))), /^bad frame 30 at byte 1278: 0 bytes$/);
  t.equal(decodeLc3(withBlock(30, new Uint8Array(0)), undefined, { strict: false }).frames, 30, 'lenient: stops there');
});

t.test('the header sample count rules, like dlc3', async (t) => {
  // Extra frames past the sample count are ignored.
  const extra = Buffer.concat([lc3, lc3.subarray(LC3_HEADER_BYTES, LC3_HEADER_BYTES + 3 * FRAME)]);
  const d = decodeLc3(extra);
  t.equal(d.ignored, 3);
  t.same(d.pcm, decodeLc3(lc3).pcm);
  // A header saying 0 samples: nothing to decode.
  const zero = Buffer.from(lc3);
  zero.writeUInt32LE(0, 14);
  const z = decodeLc3(zero);
  t.same({ n: z.pcm.length, ignored: z.ignored }, { n: 0, ignored: nframes - 1 }, 'the first frame holds the delay');
});

t.test('a file cut at a frame boundary: strict error, lenient decode', async (t) => {
  const cut = lc3.subarray(0, LC3_HEADER_BYTES + 50 * FRAME);
  t.throws(() => decodeLc3(cut), {
    name: 'Lc3FormatError',
    message: 'truncated .lc3 file: the header announces 16000 samples (1.00 s), the 50 frames hold 7960 (0.50 s)',
  });
  const d = decodeLc3(cut, undefined, { strict: false });
  t.equal(d.pcm.length, 50 * 160 - 40, 'every sample the frames hold');
  t.same(d.pcm, decodeLc3(lc3).pcm.subarray(0, d.pcm.length), 'and they are the right ones');
  // Cut inside a frame: lenient decodes the whole frames before it.
  const torn = decodeLc3(lc3.subarray(0, LC3_HEADER_BYTES + 30 * FRAME + 7), undefined, { strict: false });
  t.equal(torn.frames, 30);
  t.throws(() => decodeLc3(lc3.subarray(0, LC3_HEADER_BYTES + 30 * FRAME + 7)), /frame 30 at byte 1278 needs 40 bytes, only 5 left/);
  // Nothing but a header.
  t.equal(decodeLc3(lc3.subarray(0, LC3_HEADER_BYTES), undefined, { strict: false }).pcm.length, 0);
});

t.test('encoder input checks speak the user’s terms', async (t) => {
  const opts = { bitrate: 32000, frameUs: 10000 };
  t.throws(() => wavToLc3(encodeWav(16000, 2, new Int16Array(320)), opts), /^only mono WAV can be encoded \(this one has 2 channels\)$/);
  t.throws(() => wavToLc3(encodeWav(44100, 1, new Int16Array(441)), opts), /^unsupported LC3 sample rate 44100 Hz/);
  t.throws(() => wavToLc3(encodeWav(16000, 1, new Int16Array(160)), { ...opts, bitrate: 12000 }), /^bitrate 12000 bps \(15-byte frames\) is out of range for 10 ms frames: LC3 takes 16000\.\.320000 bps/);
  t.throws(() => wavToLc3(encodeWav(16000, 1, new Int16Array(160)), { bitrate: 500000, frameUs: 7500 }), /out of range for 7\.5 ms frames: LC3 takes 21334\.\.426667 bps/);
  t.throws(() => wavToLc3(encodeWav(16000, 1, new Int16Array(160)), { bitrate: 32000, frameUs: 5000 }), /unsupported LC3 frame duration 5000 µs/);
  t.throws(() => wavToLc3(Buffer.from('hello'), opts), /^not a WAV file/);
});

t.test('file conversions and atomic writes', async (t) => {
  const dir = t.testdir({ sub: {} });
  const wavPath = join(dir, 'in.wav');
  writeFileSync(wavPath, encodeWav(RATE, 1, pcm));
  const e = await encodeFile(wavPath, join(dir, 'deep', 'er', 'out.lc3'), { bitrate: 32000, frameUs: 10000 });
  t.same(e, { bytes: lc3.length, frames: nframes }, 'creates missing directories');
  t.same(readFileSync(join(dir, 'deep', 'er', 'out.lc3')), lc3);
  const r = await transcodeFile(join(dir, 'deep', 'er', 'out.lc3'), join(dir, 'out.wav'));
  t.same(r, { input: join(dir, 'deep', 'er', 'out.lc3'), output: join(dir, 'out.wav'), frames: nframes, concealed: 0, ignored: 0, seconds: 1 });
  t.equal(parseWav(readFileSync(join(dir, 'out.wav'))).samples.length, pcm.length);
  const lenient = await transcodeFile(join(dir, 'deep', 'er', 'out.lc3'), join(dir, 'half.wav'), { strict: false });
  t.equal(lenient.seconds, 1);

  // A failed write leaves neither a half file nor a temporary one, and names the target.
  mkdirSync(join(dir, 'taken.wav'));
  await t.rejects(writeAtomic(join(dir, 'taken.wav'), Buffer.from('x')), { code: 'EISDIR', path: join(dir, 'taken.wav') });
  t.same(readdirSync(dir).filter((f) => f.includes('.tmp')), [], 'no temporary file left behind');
  writeFileSync(join(dir, 'file'), 'x');
  await t.rejects(writeAtomic(join(dir, 'file', 'x.wav'), Buffer.from('x')), { code: /^(EEXIST|ENOTDIR)$/ });
  t.notOk(existsSync(join(dir, 'file', 'x.wav')));
});
