// The encoder half of the typed loader: framing, padding, bitrate arithmetic and its errors.
import t from 'tap';
import { bitrateRange, Lc3Decoder, Lc3Encoder, Lc3Error, Lc3Module } from '../wasm/lc3.js';
import { testSignal } from './support/audio.js';

t.test('encodes whole frames; a short tail is zero-padded', async (t) => {
  const mod = new Lc3Module();
  const cfg = { frameUs: 7500, sampleRate: 24000, frameBytes: 60 };
  const enc = new Lc3Encoder(cfg, mod);
  t.equal(enc.frameSamples, 180);
  t.equal(enc.frameBytes, 60);
  const pcm = testSignal(24000, 1);
  const out = new Uint8Array(64).fill(0xee);
  t.equal(enc.encodeInto(pcm, out, 0), 60);
  t.same(out.subarray(60), new Uint8Array(4).fill(0xee), 'writes exactly frameBytes');
  // The last 50 samples, alone, against the same 50 followed by explicit zeros.
  const tail = pcm.subarray(pcm.length - 50);
  const padded = new Int16Array(180);
  padded.set(tail);
  const a = new Lc3Encoder(cfg, mod);
  const b = new Lc3Encoder(cfg, mod);
  const fa = new Uint8Array(60);
  const fb = new Uint8Array(60);
  a.encodeInto(pcm, fa, pcm.length - 50);
  b.encodeInto(padded, fb, 0);
  t.same(fa, fb, 'short tail = explicit zero padding');
  a.encodeInto(pcm, fa, pcm.length + 1000); // past the end: a frame of silence
  b.encodeInto(new Int16Array(180), fb, 0);
  t.same(fa, fb, 'past the end = silence');
  t.throws(() => enc.encodeInto(pcm, new Uint8Array(59)), /output of 59 bytes is smaller than a 60-byte frame/);
  t.throws(() => enc.encodeInto(pcm, out, -1), /bad PCM offset -1/);
  t.throws(() => enc.encodeInto(pcm, out, 1.5), { name: 'RangeError' });
  for (const e of [enc, a, b]) e.close();
  t.equal(mod.live, 0);
});

t.test('round trip keeps the signal (sanity, not conformance: see lc3-conformance)', async (t) => {
  const cfg = { frameUs: 10000, sampleRate: 48000, frameBytes: 120 };
  const mod = new Lc3Module();
  const enc = new Lc3Encoder(cfg, mod);
  const dec = new Lc3Decoder(cfg, mod);
  const fs = enc.frameSamples;
  const delay = mod.delaySamples(cfg);
  const n = 100;
  const x = new Int16Array(fs * n);
  for (let i = 0; i < x.length; i++) x[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 48000));
  const y = new Int16Array(x.length);
  const frame = new Uint8Array(120);
  for (let i = 0; i < n; i++) {
    enc.encodeInto(x, frame, i * fs);
    dec.decodeInto(frame, y, i * fs);
  }
  let signal = 0;
  let noise = 0;
  for (let i = 10 * fs; i < x.length - delay; i++) {
    signal += x[i]! ** 2;
    noise += (x[i]! - y[i + delay]!) ** 2;
  }
  const snr = 10 * Math.log10(signal / noise);
  t.ok(snr > 30, `440 Hz at 96 kbps: SNR ${snr.toFixed(1)} dB`);
});

t.test('bitrate arithmetic (as liblc3: floor of bitrate × duration / 8)', async (t) => {
  t.equal(Lc3Encoder.bytesForBitrate(10000, 24000), 30);
  t.equal(Lc3Encoder.bytesForBitrate(10000, 24799), 30);
  t.equal(Lc3Encoder.bytesForBitrate(7500, 32000), 30);
  t.equal(Lc3Encoder.bytesForBitrate(7500, 21333), 19);
  t.same(bitrateRange(10000), { min: 16000, max: 320000 });
  t.same(bitrateRange(7500), { min: 21334, max: 426667 });
  for (const frameUs of [7500, 10000]) {
    const r = bitrateRange(frameUs);
    t.equal(Lc3Encoder.frameBytesForBitrate(frameUs, r.min), 20, `${frameUs} µs: the low end is 20-byte frames`);
    t.equal(Lc3Encoder.frameBytesForBitrate(frameUs, r.max), 400, `${frameUs} µs: the high end is 400-byte frames`);
    t.throws(() => Lc3Encoder.frameBytesForBitrate(frameUs, r.min - 1), { name: 'Lc3Error' });
  }
  t.throws(
    () => Lc3Encoder.frameBytesForBitrate(10000, 8000),
    new Lc3Error('bitrate 8000 bps (10-byte frames) is out of range for 10 ms frames: LC3 takes 16000..320000 bps there (frames of 20..400 bytes)'),
  );
  t.throws(
    () => Lc3Encoder.frameBytesForBitrate(7500, 500000),
    /bitrate 500000 bps \(468-byte frames\) is out of range for 7\.5 ms frames: LC3 takes 21334\.\.426667 bps/,
  );
  t.throws(() => Lc3Encoder.frameBytesForBitrate(10000, 0), /^bitrate 0 bps is out of range/);
  t.throws(() => Lc3Encoder.frameBytesForBitrate(10000, 24000.5), /^bitrate 24000\.5 bps is out of range/);
  t.throws(() => Lc3Encoder.frameBytesForBitrate(5000, 24000), /unsupported LC3 frame duration 5000 µs/);
  t.throws(() => new Lc3Encoder({ frameUs: 10000, sampleRate: 16000, frameBytes: 401 }), /LC3 frame size 401 bytes out of range 20\.\.400/);
});
