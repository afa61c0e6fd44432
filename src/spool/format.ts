// How a session's audio is laid out in a chunk file.
//
// LC3: the liblc3 bitstream file (header 0xcc1c, then per frame a u16 LE length + the frame bytes
// exactly as received — no re-encoding). At seal the header's sample count is set to
// frames × frameSamples − delaySamples, so dlc3 (and our transcoder) decode exactly every frame.
// PCM16: a WAV file (mono, 16-bit LE), sizes filled in at seal. For PCM a "frame" is one sample.
import { checkFrameBytes, checkParams, loadLc3 } from '../../wasm/lc3.js';
import { bitrateForFrameBytes, LC3_HEADER_BYTES, parseLc3File, writeLc3Header } from '../formats/lc3file.js';
import { WAV_HEADER_BYTES, writeWavHeader } from '../formats/wav.js';
import { SpoolInputError, type ChunkExt } from './names.js';

export interface Lc3SpoolFormat {
  kind: 'lc3';
  frameUs: number;
  sampleRate: number;
  frameBytes: number;
}

export interface PcmSpoolFormat {
  kind: 'pcm16';
  sampleRate: number;
}

export type SpoolFormat = Lc3SpoolFormat | PcmSpoolFormat;

export const PCM_MIN_RATE = 8000;
export const PCM_MAX_RATE = 48000;

/** Throws SpoolInputError unless `f` is a format the spool can store; returns a clean copy. */
export function checkFormat(f: unknown): SpoolFormat {
  const o = (f ?? {}) as { kind?: unknown; frameUs?: unknown; sampleRate?: unknown; frameBytes?: unknown };
  try {
    if (o.kind === 'lc3') {
      const frameUs = o.frameUs as number;
      const sampleRate = o.sampleRate as number;
      const frameBytes = o.frameBytes as number;
      checkParams({ frameUs, sampleRate });
      checkFrameBytes(frameBytes);
      return { kind: 'lc3', frameUs, sampleRate, frameBytes };
    }
    if (o.kind === 'pcm16') {
      const r = o.sampleRate as number;
      if (!Number.isInteger(r) || r < PCM_MIN_RATE || r > PCM_MAX_RATE) {
        throw new Error(`PCM sample rate ${String(r)} out of range ${PCM_MIN_RATE}..${PCM_MAX_RATE}`);
      }
      return { kind: 'pcm16', sampleRate: r };
    }
    throw new Error(`unknown kind ${JSON.stringify(o.kind)} (lc3 or pcm16)`);
  } catch (e) {
    throw new SpoolInputError(`bad spool format: ${(e as Error).message}`);
  }
}

export function extFor(f: SpoolFormat): ChunkExt {
  return f.kind === 'lc3' ? 'lc3' : 'wav';
}

export function headerBytes(f: SpoolFormat): number {
  return f.kind === 'lc3' ? LC3_HEADER_BYTES : WAV_HEADER_BYTES;
}

/** Bytes a frame takes in the file (LC3: u16 length + frame; PCM: one 16-bit sample). */
export function diskFrameBytes(f: SpoolFormat): number {
  return f.kind === 'lc3' ? 2 + f.frameBytes : 2;
}

/** Payload bytes per frame as received (LC3 frame bytes; PCM: 2 per sample). */
export function payloadFrameBytes(f: SpoolFormat): number {
  return f.kind === 'lc3' ? f.frameBytes : 2;
}

/** Duration of one frame in milliseconds. */
export function frameMs(f: SpoolFormat): number {
  return f.kind === 'lc3' ? f.frameUs / 1000 : 1000 / f.sampleRate;
}

/** Frames in a chunk of `seconds` seconds of audio (rounded up for 7.5 ms frames). */
export function framesPerChunk(f: SpoolFormat, seconds: number): number {
  return f.kind === 'lc3' ? Math.max(1, Math.ceil((seconds * 1e6) / f.frameUs)) : Math.max(1, Math.round(seconds * f.sampleRate));
}

/** Samples the decoder must output so that exactly `frames` frames are decoded (dlc3 semantics). */
export function lc3SampleCount(f: Lc3SpoolFormat, frames: number): number {
  if (frames === 0) return 0;
  const m = loadLc3();
  return frames * m.frameSamples(f) - m.delaySamples(f);
}

/** The file header for a chunk of `frames` frames (0 while the chunk is open). */
export function chunkHeader(f: SpoolFormat, frames: number): Buffer {
  if (f.kind === 'lc3') {
    return writeLc3Header({
      frameUs: f.frameUs,
      sampleRate: f.sampleRate,
      bitrate: bitrateForFrameBytes(f.frameUs, f.frameBytes),
      channels: 1,
      nsamples: lc3SampleCount(f, frames),
    });
  }
  return writeWavHeader(f.sampleRate, 1, frames * 2);
}

export interface ChunkInfo {
  codec: 'lc3' | 'pcm16';
  format: SpoolFormat | null;
  sampleRate: number;
  frames: number;
  /** Seconds of audio. */
  duration: number;
  /** Bytes of the file that hold whole frames (a torn tail or garbage starts here). */
  validBytes: number;
}

/**
 * Reads a chunk file's header and counts its whole frames (non-strict: stops at a torn or
 * garbage tail). For LC3, format.frameBytes is the first frame's size (0 when there is none).
 * Throws (Lc3FormatError / SpoolInputError) when the header itself is unusable.
 */
export function inspectChunk(buf: Uint8Array, ext: ChunkExt): ChunkInfo {
  if (ext === 'lc3') {
    const { header, frames, validBytes } = parseLc3File(buf, false);
    if (header.channels !== 1) throw new SpoolInputError(`spool chunks are mono, this one has ${header.channels} channels`);
    const format: Lc3SpoolFormat = { kind: 'lc3', frameUs: header.frameUs, sampleRate: header.sampleRate, frameBytes: frames[0]?.length ?? 0 };
    return {
      codec: 'lc3',
      format,
      sampleRate: header.sampleRate,
      frames: frames.length,
      duration: (frames.length * header.frameUs) / 1e6,
      validBytes,
    };
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (
    b.length < WAV_HEADER_BYTES ||
    b.toString('latin1', 0, 4) !== 'RIFF' ||
    b.toString('latin1', 8, 16) !== 'WAVEfmt ' ||
    b.toString('latin1', 36, 40) !== 'data' ||
    b.readUInt16LE(20) !== 1 ||
    b.readUInt16LE(22) !== 1 ||
    b.readUInt16LE(34) !== 16 ||
    b.readUInt32LE(24) < PCM_MIN_RATE ||
    b.readUInt32LE(24) > PCM_MAX_RATE
  ) {
    throw new SpoolInputError('not a spool WAV chunk (expected a 44-byte mono 16-bit PCM header)');
  }
  const sampleRate = b.readUInt32LE(24);
  const frames = Math.floor((b.length - WAV_HEADER_BYTES) / 2);
  return {
    codec: 'pcm16',
    format: { kind: 'pcm16', sampleRate },
    sampleRate,
    frames,
    duration: frames / sampleRate,
    validBytes: WAV_HEADER_BYTES + frames * 2,
  };
}
