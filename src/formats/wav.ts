// Minimal RIFF/WAVE: 16-bit PCM in (PCM or EXTENSIBLE-with-PCM), 16-bit PCM out.
export class WavFormatError extends Error {
  override name = 'WavFormatError';
}

export interface WavInfo {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** Interleaved samples (a view when the input is aligned, else a copy). */
  samples: Int16Array;
}

export const WAV_HEADER_BYTES = 44;

const FORMAT_NAMES: Record<number, string> = { 2: 'ADPCM', 3: 'IEEE float', 6: 'A-law', 7: 'µ-law', 0x55: 'MP3' };

export function writeWavHeader(sampleRate: number, channels: number, dataBytes: number, out = Buffer.alloc(WAV_HEADER_BYTES)): Buffer {
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(Math.min(0xffffffff, 36 + dataBytes), 4);
  out.write('WAVE', 8, 'ascii');
  out.write('fmt ', 12, 'ascii');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(channels, 22);
  out.writeUInt32LE(sampleRate, 24);
  out.writeUInt32LE(sampleRate * channels * 2, 28);
  out.writeUInt16LE(channels * 2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36, 'ascii');
  out.writeUInt32LE(Math.min(0xffffffff, dataBytes), 40);
  return out;
}

export function encodeWav(sampleRate: number, channels: number, samples: Int16Array): Buffer {
  const out = Buffer.alloc(WAV_HEADER_BYTES + samples.byteLength);
  writeWavHeader(sampleRate, channels, samples.byteLength, out);
  Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).copy(out, WAV_HEADER_BYTES);
  return out;
}

export function parseWav(buf: Uint8Array): WavInfo {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') {
    throw new WavFormatError('not a WAV file (no RIFF/WAVE header)');
  }
  let off = 12;
  let fmt: { format: number; channels: number; sampleRate: number; bits: number } | undefined;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + size > b.length) throw new WavFormatError('truncated WAV fmt chunk');
      let format = b.readUInt16LE(body);
      if (format === 0xfffe && size >= 40) format = b.readUInt16LE(body + 24); // EXTENSIBLE: sub-format GUID
      fmt = { format, channels: b.readUInt16LE(body + 2), sampleRate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (!fmt) throw new WavFormatError('WAV data chunk before its fmt chunk');
      if (fmt.format !== 1) {
        const name = FORMAT_NAMES[fmt.format];
        throw new WavFormatError(`unsupported WAV encoding ${name ?? `0x${fmt.format.toString(16)}`} (only 16-bit PCM)`);
      }
      if (fmt.bits !== 16) throw new WavFormatError(`unsupported WAV sample size ${fmt.bits} bits (only 16-bit PCM)`);
      if (fmt.channels < 1) throw new WavFormatError('WAV file with no channels');
      // Streaming writers leave the size at 0 or 0xffffffff: take what the file has.
      const end = size === 0 || body + size > b.length ? b.length : body + size;
      const whole = end - body - ((end - body) % (fmt.channels * 2));
      const start = b.byteOffset + body;
      const samples =
        start % 2 === 0
          ? new Int16Array(b.buffer, start, whole / 2)
          : new Int16Array(new Uint8Array(b.buffer.slice(start, start + whole)).buffer);
      return { sampleRate: fmt.sampleRate, channels: fmt.channels, bitsPerSample: fmt.bits, samples };
    }
    off = body + size + (size & 1);
  }
  throw new WavFormatError(fmt ? 'WAV file has no data chunk' : 'WAV file has no fmt chunk');
}
