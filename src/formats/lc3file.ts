// The liblc3 bitstream file format (what elc3 writes and dlc3 reads): an 18-byte header
// (magic 0xcc1c, header size, sample rate/100, bitrate/100, channels, frame duration/10 µs,
// ep mode, sample count split low/high; a 20-byte header adds a high-resolution flag), then per
// frame block a u16 LE length and the bytes of every channel's frame back to back.
import { checkParams, Lc3Error, MAX_FRAME_BYTES } from '../../wasm/lc3.js';

export const LC3_FILE_MAGIC = 0xcc1c;
export const LC3_HEADER_BYTES = 18;
/** liblc3's tools handle at most this many channels; the format itself allows no more than 8. */
export const MAX_CHANNELS = 8;

export interface Lc3FileHeader {
  frameUs: number;
  sampleRate: number;
  /** Bits per second of a whole frame block (all channels). */
  bitrate: number;
  channels: number;
  /** Samples per channel of the original signal (decoders trim the codec delay to this). */
  nsamples: number;
  headerSize: number;
}

export class Lc3FormatError extends Lc3Error {
  override name = 'Lc3FormatError';
}

/**
 * The bitrate elc3 records for `frameBytes`-byte frame blocks: the smallest whole bps whose
 * frames are that long (liblc3's lc3_resolve_bitrate). The header keeps it in units of 100 bps.
 */
export function bitrateForFrameBytes(frameUs: number, frameBytes: number): number {
  return Math.ceil((frameBytes * 8_000_000) / frameUs);
}

/**
 * The largest frame block a header allows. elc3 truncates the bitrate to 100 bps (at most 0.125
 * byte per frame), so the header's bytes per frame are rounded to the nearest; a block never
 * exceeds 400 bytes per channel.
 */
export function maxFrameBytes(h: Pick<Lc3FileHeader, 'bitrate' | 'frameUs' | 'channels'>): number {
  return Math.min(MAX_FRAME_BYTES * h.channels, Math.round((h.bitrate * h.frameUs) / 8_000_000));
}

export function writeLc3Header(h: Omit<Lc3FileHeader, 'headerSize'>, out = Buffer.alloc(LC3_HEADER_BYTES)): Buffer {
  out.writeUInt16LE(LC3_FILE_MAGIC, 0);
  out.writeUInt16LE(LC3_HEADER_BYTES, 2);
  out.writeUInt16LE(h.sampleRate / 100, 4);
  out.writeUInt16LE(Math.floor(h.bitrate / 100), 6); // as elc3 writes it
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
  if (headerSize < LC3_HEADER_BYTES) throw new Lc3FormatError(`bad .lc3 header size ${headerSize}`);
  if (headerSize > buf.length) {
    throw new Lc3FormatError(`truncated .lc3 file: ${buf.length} bytes, the header says it alone is ${headerSize}`);
  }
  if (b.readUInt16LE(12) !== 0) throw new Lc3FormatError('.lc3 files with error protection (ep mode) are not supported');
  if (headerSize >= LC3_HEADER_BYTES + 2 && b.readUInt16LE(LC3_HEADER_BYTES) !== 0) {
    throw new Lc3FormatError('high-resolution (LC3plus HR) .lc3 files are not supported');
  }
  const h: Lc3FileHeader = {
    sampleRate: b.readUInt16LE(4) * 100,
    bitrate: b.readUInt16LE(6) * 100,
    channels: b.readUInt16LE(8),
    frameUs: b.readUInt16LE(10) * 10,
    nsamples: b.readUInt16LE(14) + b.readUInt16LE(16) * 65536,
    headerSize,
  };
  checkParams(h);
  if (h.channels < 1 || h.channels > MAX_CHANNELS) {
    throw new Lc3FormatError(`unsupported channel count ${h.channels} (supported: 1..${MAX_CHANNELS})`);
  }
  if (h.bitrate === 0) throw new Lc3FormatError('.lc3 header has a zero bitrate');
  return h;
}

export interface Lc3Frames {
  header: Lc3FileHeader;
  /** Each frame block (all channels of one frame interval) as a view into the input. */
  frames: Uint8Array[];
}

/**
 * Parses a whole .lc3 file. strict: a torn tail or a frame block longer than the header allows is
 * an error; otherwise the blocks up to the last whole one are returned. `validBytes` is where the
 * good data ends (always a block boundary).
 */
export function parseLc3File(buf: Uint8Array, strict = true): Lc3Frames & { validBytes: number } {
  const header = readLc3Header(buf);
  const limit = maxFrameBytes(header);
  const frames: Uint8Array[] = [];
  let off = header.headerSize;
  while (off < buf.length) {
    if (off + 2 > buf.length) {
      if (strict) throw new Lc3FormatError(`truncated .lc3 file: frame ${frames.length} at byte ${off} is cut off in its length`);
      break;
    }
    const n = buf[off]! | (buf[off + 1]! << 8);
    // An empty block is no frame (zeros where a file was torn or preallocated): damage, not audio.
    if (n > limit || n === 0) {
      if (strict) {
        throw new Lc3FormatError(
          n === 0
            ? `bad frame ${frames.length} at byte ${off}: 0 bytes`
            : `bad frame ${frames.length} at byte ${off}: ${n} bytes, but the header (${header.bitrate} bps at ` +
                `${header.frameUs / 1000} ms${header.channels > 1 ? `, ${header.channels} channels` : ''}) allows at most ${limit}`,
        );
      }
      break;
    }
    if (off + 2 + n > buf.length) {
      if (strict) {
        throw new Lc3FormatError(
          `truncated .lc3 file: frame ${frames.length} at byte ${off} needs ${n} bytes, only ${buf.length - off - 2} left`,
        );
      }
      break;
    }
    frames.push(buf.subarray(off + 2, off + 2 + n));
    off += 2 + n;
  }
  return { header, frames, validBytes: off };
}
