// The liblc3 bitstream file format (what elc3 writes and dlc3 reads): an 18-byte header
// (magic 0xcc1c, header size, sample rate/100, bitrate/100, channels, frame duration/10 µs,
// ep mode, sample count split low/high), then per frame a u16 LE length and the frame bytes.
import { checkParams, Lc3Error, MAX_FRAME_BYTES } from '../../wasm/lc3.js';

export const LC3_FILE_MAGIC = 0xcc1c;
export const LC3_HEADER_BYTES = 18;

export interface Lc3FileHeader {
  frameUs: number;
  sampleRate: number;
  bitrate: number;
  channels: number;
  /** Samples per channel of the original signal (decoders trim the codec delay to this). */
  nsamples: number;
  headerSize: number;
}

export class Lc3FormatError extends Lc3Error {}

/** Smallest header bitrate (multiple of 100 bps) that allows `frameBytes` per frame. */
export function bitrateForFrameBytes(frameUs: number, frameBytes: number): number {
  return Math.ceil((frameBytes * 8_000_000) / frameUs / 100) * 100;
}

/** The largest frame a header's bitrate allows (liblc3 floors bytes from the bitrate). */
export function maxFrameBytes(h: Pick<Lc3FileHeader, 'bitrate' | 'frameUs' | 'channels'>): number {
  return Math.min(MAX_FRAME_BYTES, Math.ceil((h.bitrate * h.frameUs) / 8_000_000)) * h.channels;
}

export function writeLc3Header(h: Omit<Lc3FileHeader, 'headerSize'>, out = Buffer.alloc(LC3_HEADER_BYTES)): Buffer {
  out.writeUInt16LE(LC3_FILE_MAGIC, 0);
  out.writeUInt16LE(LC3_HEADER_BYTES, 2);
  out.writeUInt16LE(h.sampleRate / 100, 4);
  out.writeUInt16LE(Math.ceil(h.bitrate / 100), 6);
  out.writeUInt16LE(h.channels, 8);
  out.writeUInt16LE(h.frameUs / 10, 10);
  out.writeUInt16LE(0, 12);
  out.writeUInt16LE(h.nsamples & 0xffff, 14);
  out.writeUInt16LE(Math.floor(h.nsamples / 65536) & 0xffff, 16);
  return out;
}

export function readLc3Header(buf: Uint8Array): Lc3FileHeader {
  if (buf.length < LC3_HEADER_BYTES) {
    throw new Lc3FormatError(`truncated .lc3 file: ${buf.length} bytes, the header alone is ${LC3_HEADER_BYTES}`);
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = b.readUInt16LE(0);
  if (magic !== LC3_FILE_MAGIC) {
    throw new Lc3FormatError(`not an .lc3 file: magic 0x${magic.toString(16).padStart(4, '0')}, expected 0xcc1c`);
  }
  const headerSize = b.readUInt16LE(2);
  if (headerSize < LC3_HEADER_BYTES || headerSize > buf.length) {
    throw new Lc3FormatError(`bad .lc3 header size ${headerSize}`);
  }
  if (b.readUInt16LE(12) !== 0) throw new Lc3FormatError('.lc3 files with error protection (ep mode) are not supported');
  const h: Lc3FileHeader = {
    sampleRate: b.readUInt16LE(4) * 100,
    bitrate: b.readUInt16LE(6) * 100,
    channels: b.readUInt16LE(8),
    frameUs: b.readUInt16LE(10) * 10,
    nsamples: b.readUInt16LE(14) + b.readUInt16LE(16) * 65536,
    headerSize,
  };
  checkParams(h);
  if (h.channels < 1 || h.channels > 8) throw new Lc3FormatError(`unsupported channel count ${h.channels}`);
  if (h.bitrate <= 0) throw new Lc3FormatError('.lc3 header has a zero bitrate');
  return h;
}

export interface Lc3Frames {
  header: Lc3FileHeader;
  /** Each frame block (all channels of one frame interval) as a view into the input. */
  frames: Uint8Array[];
}

/**
 * Parses a whole .lc3 file. strict: a torn tail or an oversized frame is an error; otherwise the
 * frames up to the last whole one are returned and `validBytes` says where the good data ends.
 */
export function parseLc3File(buf: Uint8Array, strict = true): Lc3Frames & { validBytes: number } {
  const header = readLc3Header(buf);
  const limit = maxFrameBytes(header);
  const frames: Uint8Array[] = [];
  let off = header.headerSize;
  while (off < buf.length) {
    if (off + 2 > buf.length) {
      if (strict) throw new Lc3FormatError(`truncated .lc3 file: frame length cut off at byte ${off}`);
      break;
    }
    const n = buf[off]! | (buf[off + 1]! << 8);
    if (n > limit || n === 0) {
      if (strict) {
        throw new Lc3FormatError(
          `bad frame ${frames.length} at byte ${off}: ${n} bytes, the header (${header.bitrate} bps) allows at most ${limit}`,
        );
      }
      break;
    }
    if (off + 2 + n > buf.length) {
      if (strict) throw new Lc3FormatError(`truncated .lc3 file: frame ${frames.length} at byte ${off} is cut off`);
      break;
    }
    frames.push(buf.subarray(off + 2, off + 2 + n));
    off += 2 + n;
  }
  return { header, frames, validBytes: off };
}
