// Whole-file conversions between .lc3 and WAV, sample-exact with liblc3's own tools: decoding
// trims the codec delay and stops at the header's sample count like dlc3; encoding pads the
// input by the delay like elc3, so a round trip keeps the length.
import { Lc3Decoder, Lc3Encoder, loadLc3, type Lc3Module } from '../../wasm/lc3.js';
import { bitrateForFrameBytes, LC3_HEADER_BYTES, parseLc3File, writeLc3Header, type Lc3FileHeader } from '../formats/lc3file.js';
import { encodeWav, parseWav, WavFormatError } from '../formats/wav.js';

export interface DecodedAudio {
  header: Lc3FileHeader;
  /** Interleaved PCM16, nsamples × channels. */
  pcm: Int16Array;
  frames: number;
  /** Frames the decoder had to conceal (corrupt). */
  concealed: number;
}

export function decodeLc3(buf: Uint8Array, mod: Lc3Module = loadLc3()): DecodedAudio {
  const { header, frames } = parseLc3File(buf);
  const ch = header.channels;
  const decoders = Array.from({ length: ch }, () => new Lc3Decoder(header, mod));
  try {
    const fs = decoders[0]!.frameSamples;
    const delay = mod.delaySamples(header);
    const total = header.nsamples + delay;
    const pcm = new Int16Array(header.nsamples * ch);
    let concealed = 0;
    let written = 0; // samples per channel
    for (let i = 0; i * fs < total; i++) {
      const block = frames[i];
      const skip = i === 0 ? delay : 0;
      const take = Math.min(fs - skip, total - i * fs);
      if (take <= 0) continue;
      if (block === undefined) {
        written += take; // dlc3 writes silence past the last frame
        continue;
      }
      let off = 0;
      for (let c = 0; c < ch; c++) {
        // Multi-channel blocks split the bytes as dlc3 does: earlier channels take the remainder.
        const n = Math.floor(block.length / ch) + (c < block.length % ch ? 1 : 0);
        const dec = decoders[c]!;
        const before = dec.stats.errors;
        const out = dec.decode(block.subarray(off, off + n));
        if (dec.stats.errors !== before) concealed++;
        off += n;
        for (let s = 0; s < take; s++) pcm[(written + s) * ch + c] = out[skip + s]!;
      }
      written += take;
    }
    return { header, pcm, frames: frames.length, concealed };
  } finally {
    for (const d of decoders) d.close();
  }
}

export function lc3ToWav(buf: Uint8Array, mod?: Lc3Module): { wav: Buffer; decoded: DecodedAudio } {
  const decoded = decodeLc3(buf, mod);
  return { wav: encodeWav(decoded.header.sampleRate, decoded.header.channels, decoded.pcm), decoded };
}

export interface EncodeOptions {
  bitrate: number;
  frameUs: number;
}

export function wavToLc3(buf: Uint8Array, opts: EncodeOptions, mod: Lc3Module = loadLc3()): Buffer {
  const wav = parseWav(buf);
  if (wav.channels !== 1) throw new WavFormatError(`only mono WAV can be encoded (this one has ${wav.channels} channels)`);
  const frameBytes = Lc3Encoder.bytesForBitrate(opts.frameUs, opts.bitrate);
  const enc = new Lc3Encoder({ frameUs: opts.frameUs, sampleRate: wav.sampleRate, frameBytes }, mod);
  try {
    const fs = enc.frameSamples;
    const nsamples = wav.samples.length;
    const total = nsamples + mod.delaySamples(enc);
    const nframes = Math.ceil(total / fs);
    const out = Buffer.alloc(LC3_HEADER_BYTES + nframes * (2 + frameBytes));
    writeLc3Header(
      { frameUs: opts.frameUs, sampleRate: wav.sampleRate, bitrate: bitrateForFrameBytes(opts.frameUs, frameBytes), channels: 1, nsamples },
      out,
    );
    let off = LC3_HEADER_BYTES;
    for (let i = 0; i < nframes; i++) {
      out.writeUInt16LE(frameBytes, off);
      enc.encodeInto(wav.samples, out.subarray(off + 2), i * fs);
      off += 2 + frameBytes;
    }
    return out;
  } finally {
    enc.close();
  }
}
