// The liblc3 bitstream file format: header round trips, frame parsing, and damaged input.
import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import {
  bitrateForFrameBytes,
  LC3_HEADER_BYTES,
  maxFrameBytes,
  parseLc3File,
  readLc3Header,
  writeLc3Header,
  type Lc3FileHeader,
} from '../src/formats/lc3file.js';
import { FRAME_US, SAMPLE_RATES } from '../wasm/lc3.js';

const arbHeader = fc.record({
  frameUs: fc.constantFrom(...FRAME_US),
  sampleRate: fc.constantFrom(...SAMPLE_RATES),
  bitrate: fc.integer({ min: 1, max: 65535 }).map((x) => x * 100),
  channels: fc.integer({ min: 1, max: 8 }),
  nsamples: fc.integer({ min: 0, max: 0xffffffff }),
});

/** A file: header + frame blocks of the given sizes. */
function makeFile(h: Omit<Lc3FileHeader, 'headerSize'>, sizes: number[], fill = (i: number) => i & 0xff): Buffer {
  const parts = [writeLc3Header(h)];
  for (const n of sizes) {
    const len = Buffer.alloc(2);
    len.writeUInt16LE(n);
    parts.push(len, Buffer.from(Array.from({ length: n }, (_, i) => fill(i))));
  }
  return Buffer.concat(parts);
}

const H = { frameUs: 10000, sampleRate: 16000, bitrate: 24000, channels: 1, nsamples: 16000 };

t.test('header: write → read round trip (property)', async (t) => {
  fc.assert(
    fc.property(arbHeader, (h) => {
      const buf = writeLc3Header(h);
      return buf.length === LC3_HEADER_BYTES && isDeepStrictEqual(readLc3Header(buf), { ...h, headerSize: 18 });
    }),
    { numRuns: 500 },
  );
  // elc3 stores the bitrate truncated to 100 bps; so do we.
  t.equal(readLc3Header(writeLc3Header({ ...H, bitrate: 21334 })).bitrate, 21300);
  t.pass();
});

t.test('header bitrate ↔ frame size, as elc3 writes and liblc3 reads it', async (t) => {
  for (const frameUs of FRAME_US) {
    for (let bytes = 20; bytes <= 400; bytes++) {
      const bitrate = bitrateForFrameBytes(frameUs, bytes);
      t.equal(Math.floor((bitrate * frameUs) / 8_000_000), bytes, 'liblc3 gets the frame size back from the bitrate');
      t.equal(Math.floor(((bitrate - 1) * frameUs) / 8_000_000), bytes - 1, 'and it is the smallest such bitrate');
      const stored = readLc3Header(writeLc3Header({ ...H, frameUs, bitrate }));
      t.equal(maxFrameBytes(stored), bytes, 'the truncated header bitrate still stands for the frame size');
    }
  }
  t.equal(maxFrameBytes({ bitrate: 192800, frameUs: 10000, channels: 2 }), 241, 'stereo: the bitrate is the whole block');
  t.equal(maxFrameBytes({ bitrate: 9_000_000, frameUs: 10000, channels: 2 }), 800, 'at most 400 bytes per channel');
});

t.test('reading the frames', async (t) => {
  const file = makeFile(H, [30, 30, 20, 29, 30]);
  const r = parseLc3File(file);
  t.same(r.header, { ...H, headerSize: 18 });
  t.same(r.frames.map((f) => f.length), [30, 30, 20, 29, 30]);
  t.equal(r.validBytes, file.length);
  t.same([...r.frames[3]!.subarray(0, 3)], [0, 1, 2]);
  t.equal(r.frames[0]!.buffer, file.buffer, 'frames are views, not copies');
  // A 20-byte header (liblc3 1.1 writes one for high-resolution mode) with the flag off.
  const h20 = Buffer.concat([file.subarray(0, 18), Buffer.from([0, 0]), file.subarray(18)]);
  h20.writeUInt16LE(20, 2);
  t.same(parseLc3File(h20).frames.length, 5);
  t.equal(readLc3Header(h20).headerSize, 20);
  // An odd header size (dlc3 skips to it too).
  const h19 = Buffer.concat([file.subarray(0, 18), Buffer.from([9]), file.subarray(18)]);
  h19.writeUInt16LE(19, 2);
  t.same(parseLc3File(h19).frames.map((f) => f.length), [30, 30, 20, 29, 30]);
});

t.test('bad headers: one clear error each', async (t) => {
  const good = makeFile(H, [30]);
  const edit = (off: number, v: number) => {
    const b = Buffer.from(good);
    b.writeUInt16LE(v, off);
    return b;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty', new Uint8Array(0), /^truncated \.lc3 file: 0 bytes, the header alone is 18$/],
    ['short', good.subarray(0, 17), /^truncated \.lc3 file: 17 bytes/],
    ['RIFF', Buffer.from('RIFF....WAVEfmt data....'), /^not an \.lc3 file: magic 0x4952, expected 0xcc1c$/],
    ['byte-swapped magic', edit(0, 0x1ccc), /magic 0x1ccc/],
    ['header size 10', edit(2, 10), /^bad \.lc3 header size 10$/],
    ['header size past the end', edit(2, 1000), /^truncated \.lc3 file: 50 bytes, the header says it alone is 1000$/],
    ['44.1 kHz', edit(4, 441), /^unsupported LC3 sample rate 44100 Hz/],
    ['96 kHz', edit(4, 960), /^unsupported LC3 sample rate 96000 Hz/],
    ['5 ms', edit(10, 500), /^unsupported LC3 frame duration 5000 µs/],
    ['0 channels', edit(8, 0), /^unsupported channel count 0 \(supported: 1\.\.8\)$/],
    ['9 channels', edit(8, 9), /^unsupported channel count 9/],
    ['zero bitrate', edit(6, 0), /^\.lc3 header has a zero bitrate$/],
    ['ep mode', edit(12, 1), /error protection/],
  ];
  for (const [name, buf, re] of cases) {
    t.throws(() => parseLc3File(buf), { name: /^Lc3(Format)?Error$/, message: re }, name);
    t.throws(() => parseLc3File(buf, false), { message: re }, `${name} (lenient: the header must be good)`);
  }
  const hr = Buffer.concat([good.subarray(0, 18), Buffer.from([1, 0]), good.subarray(18)]);
  hr.writeUInt16LE(20, 2);
  t.throws(() => readLc3Header(hr), /high-resolution \(LC3plus HR\) \.lc3 files are not supported/);
});

t.test('damaged frame data: strict errors say where', async (t) => {
  const file = makeFile(H, [30, 30, 30]); // 18 + 3 × 32 = 114 bytes
  t.throws(() => parseLc3File(file.subarray(0, 113)), /^truncated \.lc3 file: frame 2 at byte 82 needs 30 bytes, only 29 left$/);
  t.throws(() => parseLc3File(file.subarray(0, 83)), /^truncated \.lc3 file: frame 2 at byte 82 is cut off in its length$/);
  const big = makeFile(H, [30, 31]);
  t.throws(() => parseLc3File(big), /^bad frame 1 at byte 50: 31 bytes, but the header \(24000 bps at 10 ms\) allows at most 30$/);
  const stereo = makeFile({ ...H, channels: 2, bitrate: 48000 }, [60, 61]);
  t.throws(() => parseLc3File(stereo), /\(48000 bps at 10 ms, 2 channels\) allows at most 60$/);
  const lenient = parseLc3File(big, false);
  t.equal(lenient.frames.length, 1);
  t.equal(lenient.validBytes, 50);
  // Zeros where frames should be (a torn or preallocated tail) are damage, not empty frames.
  const zeros = Buffer.concat([makeFile(H, [30, 30]), Buffer.alloc(100)]);
  t.throws(() => parseLc3File(zeros), /^bad frame 2 at byte 82: 0 bytes$/);
  t.same(parseLc3File(zeros, false).frames.length, 2);
  t.equal(parseLc3File(zeros, false).validBytes, 82);
});

t.test('lenient parsing: never throws past a good header, stops at a block boundary (property)', async (t) => {
  fc.assert(
    fc.property(
      arbHeader,
      fc.array(fc.integer({ min: 0, max: 500 }), { maxLength: 20 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.nat(),
      (h, sizes, tail, cutSeed) => {
        const limit = maxFrameBytes(h);
        const good = makeFile(h, sizes.map((n) => Math.min(n, limit)));
        const cut = cutSeed % (good.length + 1);
        // A good file cut anywhere past the header, then random garbage.
        const buf = Buffer.concat([good.subarray(0, Math.max(LC3_HEADER_BYTES, cut)), tail]);
        const r = parseLc3File(buf, false);
        let off = r.header.headerSize;
        for (const f of r.frames) {
          if (f.byteOffset - buf.byteOffset !== off + 2 || f.length > limit) return false;
          off += 2 + f.length;
        }
        if (r.validBytes !== off || r.validBytes > buf.length) return false;
        // Whatever was whole before the cut is still there, in order.
        const whole = parseLc3File(good.subarray(0, Math.max(LC3_HEADER_BYTES, cut)), false).frames;
        return whole.every((f, i) => r.frames[i] !== undefined && Buffer.compare(f, r.frames[i]!) === 0);
      },
    ),
    { numRuns: 1000 },
  );
  t.pass();
});
