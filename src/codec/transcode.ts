// Whole-file conversions between .lc3 and WAV, sample-exact with liblc3's own tools: decoding
// trims the codec delay and stops at the header's sample count like dlc3; encoding pads the
// input by the delay like elc3, so a round trip keeps the length.
import { checkParams, Lc3Decoder, Lc3Encoder, loadLc3, type Lc3Module } from '../../wasm/lc3.js';
import { bitrateForFrameBytes, LC3_HEADER_BYTES, Lc3FormatError, parseLc3File, writeLc3Header, type Lc3FileHeader } from '../formats/lc3file.js';
import { encodeWav, parseWav, WavFormatError } from '../formats/wav.js';

export interface DecodedAudio {
  header: Lc3FileHeader;
  /** Interleaved PCM16, nsamples × channels (fewer samples only for a lenient decode of a cut file). */
  pcm: Int16Array;
  /** Frame blocks in the file. */
  frames: number;
  /** Corrupt frames (per channel) the decoder had to conceal. */
  concealed: number;
  /** Frame blocks past the header's sample count, ignored as dlc3 ignores them. */
  ignored: number;
}

export interface DecodeOptions {
  /**
   * true (default): a torn tail, an oversized frame, or fewer frames than the header's sample
   * count needs is an error. false: decode the frames up to the damage and stop there.
   */
  strict?: boolean;
}

export function decodeLc3(buf: Uint8Array, mod: Lc3Module = loadLc3(), opts: DecodeOptions = {}): DecodedAudio {
  const strict = opts.strict ?? true;
  const { header, frames } = parseLc3File(buf, strict);
  const ch = header.channels;
  const fs = mod.frameSamples(header);
  const delay = mod.delaySamples(header);
  // Samples per channel the frames can give once the codec delay is trimmed.
  const available = Math.max(0, frames.length * fs - delay);
  if (strict && available < header.nsamples) {
    const s = (n: number) => (n / header.sampleRate).toFixed(2);
    throw new Lc3FormatError(
      `truncated .lc3 file: the header announces ${header.nsamples} samples (${s(header.nsamples)} s), ` +
        `the ${frames.length} frames hold ${available} (${s(available)} s)`,
    );
  }
  const nsamples = Math.min(header.nsamples, available);
  // The frames dlc3 reads for that many samples (at least one: the first holds the delay).
  const needed = Math.min(frames.length, Math.ceil((nsamples + delay) / fs));
  const decoders = Array.from({ length: ch }, () => new Lc3Decoder(header, mod));
  try {
    const pcm = new Int16Array(nsamples * ch);
    let concealed = 0;
    let written = 0; // samples per channel
    for (let i = 0; i < needed; i++) {
      const block = frames[i]!;
      const skip = i === 0 ? delay : 0;
      const take = Math.min(fs - skip, nsamples - written);
      let off = 0;
      for (let c = 0; c < ch; c++) {
        // Multi-channel blocks split the bytes as dlc3 does: earlier channels take the remainder.
        const n = Math.floor(block.length / ch) + (c < block.length % ch ? 1 : 0);
        const dec = decoders[c]!;
        const before = dec.stats.plc;
        const out = dec.decodeFrom(block, off, n);
        if (dec.stats.plc !== before) concealed++;
        off += n;
        for (let s = 0; s < take; s++) pcm[(written + s) * ch + c] = out[skip + s]!;
      }
      written += take;
    }
    return { header, pcm, frames: frames.length, concealed, ignored: frames.length - needed };
  } finally {
    for (const d of decoders) d.close();
  }
}

export function lc3ToWav(buf: Uint8Array, mod?: Lc3Module, opts?: DecodeOptions): { wav: Buffer; decoded: DecodedAudio } {
  const decoded = decodeLc3(buf, mod, opts);
  return { wav: encodeWav(decoded.header.sampleRate, decoded.header.channels, decoded.pcm), decoded };
}

export interface EncodeOptions {
  /** Bits per second; the frame size is floor(bitrate × frame duration / 8) bytes, as liblc3 computes it. */
  bitrate: number;
  frameUs: number;
}

/** Encodes a mono 16-bit PCM WAV to an .lc3 file, frame for frame what elc3 writes. */
export function wavToLc3(buf: Uint8Array, opts: EncodeOptions, mod: Lc3Module = loadLc3()): Buffer {
  const wav = parseWav(buf);
  if (wav.channels !== 1) throw new WavFormatError(`only mono WAV can be encoded (this one has ${wav.channels} channels)`);
  checkParams({ frameUs: opts.frameUs, sampleRate: wav.sampleRate });
  const frameBytes = Lc3Encoder.frameBytesForBitrate(opts.frameUs, opts.bitrate);
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
