// RIFF/WAVE reading and writing.
import t from 'tap';
import fc from 'fast-check';
import { encodeWav, parseWav, WAV_HEADER_BYTES, writeWavHeader } from '../src/formats/wav.js';

/** A RIFF/WAVE file from raw chunks. */
function riff(...chunks: [string, Buffer][]): Buffer {
  const body = chunks.map(([id, data]) => {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'ascii');
    head.writeUInt32LE(data.length, 4);
    return Buffer.concat([head, data, Buffer.alloc(data.length & 1)]);
  });
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'ascii');
  head.writeUInt32LE(4 + body.reduce((s, b) => s + b.length, 0), 4);
  head.write('WAVE', 8, 'ascii');
  return Buffer.concat([head, ...body]);
}

function fmt(format: number, channels: number, rate: number, bits: number, extensible?: number): Buffer {
  const b = Buffer.alloc(extensible === undefined ? 16 : 40);
  b.writeUInt16LE(extensible === undefined ? format : 0xfffe, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE((rate * channels * bits) / 8, 8);
  b.writeUInt16LE((channels * bits) / 8, 12);
  b.writeUInt16LE(bits, 14);
  if (extensible !== undefined) {
    b.writeUInt16LE(22, 16);
    b.writeUInt16LE(extensible, 24); // sub-format GUID starts with the format code
  }
  return b;
}

const pcm = (...xs: number[]) => Buffer.from(Int16Array.from(xs).buffer);

t.test('encode → parse round trip (property)', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 192000 }),
      fc.integer({ min: 1, max: 8 }),
      fc.array(fc.integer({ min: -32768, max: 32767 }), { maxLength: 2000 }),
      (rate, channels, xs) => {
        const samples = Int16Array.from(xs.slice(0, xs.length - (xs.length % channels)));
        const wav = encodeWav(rate, channels, samples);
        const r = parseWav(wav);
        return (
          wav.length === WAV_HEADER_BYTES + samples.byteLength &&
          r.sampleRate === rate &&
          r.channels === channels &&
          r.bitsPerSample === 16 &&
          Buffer.from(r.samples.buffer, r.samples.byteOffset, r.samples.byteLength).equals(Buffer.from(samples.buffer))
        );
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

t.test('reads what other writers produce', async (t) => {
  // Extra chunks (odd-sized, padded) before the data; EXTENSIBLE with PCM.
  const wav = riff(['LIST', Buffer.from('odd')], ['fmt ', fmt(1, 1, 16000, 16, 1)], ['junk', Buffer.alloc(4)], ['data', pcm(1, -2, 3)]);
  t.same([...parseWav(wav).samples], [1, -2, 3], 'EXTENSIBLE PCM, odd chunk skipped with its pad byte');
  // Unaligned input: the samples are copied.
  const shifted = Buffer.concat([Buffer.alloc(1), encodeWav(8000, 1, Int16Array.from([5, 6, 7]))]).subarray(1);
  const r = parseWav(shifted);
  t.same([...r.samples], [5, 6, 7]);
  // Streaming writers: data size 0 or 0xffffffff means "to the end of the file".
  for (const size of [0, 0xffffffff]) {
    const s = encodeWav(8000, 1, Int16Array.from([9, 8, 7, 6]));
    s.writeUInt32LE(size, 40);
    t.same([...parseWav(s).samples], [9, 8, 7, 6], `data size ${size}`);
  }
  // A torn last sample frame is dropped.
  const stereo = encodeWav(8000, 2, Int16Array.from([1, 2, 3, 4]));
  t.same([...parseWav(stereo.subarray(0, stereo.length - 1)).samples], [1, 2], 'whole sample frames only');
  // The header clamps sizes it cannot represent.
  const h = writeWavHeader(48000, 2, 2 ** 33);
  t.equal(h.readUInt32LE(4), 0xffffffff);
  t.equal(h.readUInt32LE(40), 0xffffffff);
});

t.test('bad WAV: one clear error each', async (t) => {
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /^not a WAV file \(no RIFF\/WAVE header\)$/],
    ['an .lc3 file', Buffer.from([0x1c, 0xcc, 18, 0, 160, 0, 240, 0, 1, 0, 232, 3, 0, 0, 0, 0, 0, 0]), /^not a WAV file/],
    ['RIFF but AVI', Buffer.from('RIFF\0\0\0\0AVI LIST'), /^not a WAV file/],
    ['truncated fmt', riff(['fmt ', fmt(1, 1, 8000, 16)]).subarray(0, 30), /^truncated WAV fmt chunk$/],
    ['short fmt', riff(['fmt ', Buffer.alloc(8)]), /^truncated WAV fmt chunk$/],
    ['data first', riff(['data', pcm(1)], ['fmt ', fmt(1, 1, 8000, 16)]), /^WAV data chunk before its fmt chunk$/],
    ['float', riff(['fmt ', fmt(3, 1, 8000, 32)], ['data', Buffer.alloc(8)]), /^unsupported WAV encoding IEEE float \(only 16-bit PCM\)$/],
    ['extensible float', riff(['fmt ', fmt(0, 1, 8000, 32, 3)], ['data', Buffer.alloc(8)]), /^unsupported WAV encoding IEEE float/],
    ['µ-law', riff(['fmt ', fmt(7, 1, 8000, 8)], ['data', Buffer.alloc(8)]), /^unsupported WAV encoding µ-law/],
    ['unknown', riff(['fmt ', fmt(0x1234, 1, 8000, 16)], ['data', Buffer.alloc(8)]), /^unsupported WAV encoding 0x1234 \(only 16-bit PCM\)$/],
    ['24-bit', riff(['fmt ', fmt(1, 1, 8000, 24)], ['data', Buffer.alloc(9)]), /^unsupported WAV sample size 24 bits \(only 16-bit PCM\)$/],
    ['8-bit', riff(['fmt ', fmt(1, 1, 8000, 8)], ['data', Buffer.alloc(9)]), /^unsupported WAV sample size 8 bits/],
    ['no channels', riff(['fmt ', fmt(1, 0, 8000, 16)], ['data', Buffer.alloc(8)]), /^WAV file with no channels$/],
    ['no data', riff(['fmt ', fmt(1, 1, 8000, 16)]), /^WAV file has no data chunk$/],
    ['no fmt', riff(['LIST', Buffer.alloc(4)]), /^WAV file has no fmt chunk$/],
  ];
  for (const [name, buf, re] of cases) t.throws(() => parseWav(buf), { name: 'WavFormatError', message: re }, name);
});
