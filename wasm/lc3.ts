// Typed loader for wasm/lc3.wasm (liblc3 compiled by wasm/build.sh).
//
// One module instance per thread (loadLc3() caches it). Decoder and encoder states live inside the
// wasm memory, owned by the caller and freed explicitly; a size-class free list reuses freed blocks
// so thousands of open/close cycles do not grow the memory. The decode path allocates nothing per
// frame: input and output go through one scratch region per instance (the instance is used by one
// thread only, and calls never interleave).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const FRAME_US = [7500, 10000] as const;
export const SAMPLE_RATES = [8000, 16000, 24000, 32000, 48000] as const;
export const MIN_FRAME_BYTES = 20;
export const MAX_FRAME_BYTES = 400;
/** Largest frame in samples (10 ms at 48 kHz). */
export const MAX_FRAME_SAMPLES = 480;

export type FrameUs = (typeof FRAME_US)[number];
export type SampleRate = (typeof SAMPLE_RATES)[number];

export interface Lc3Params {
  frameUs: number;
  sampleRate: number;
}

interface Lc3Exports {
  memory: WebAssembly.Memory;
  __heap_base: WebAssembly.Global;
  lc3_frame_samples(dtUs: number, srHz: number): number;
  lc3_delay_samples(dtUs: number, srHz: number): number;
  lc3_decoder_size(dtUs: number, srHz: number): number;
  lc3_setup_decoder(dtUs: number, srHz: number, srPcmHz: number, mem: number): number;
  lc3_decode(dec: number, input: number, nbytes: number, fmt: number, pcm: number, stride: number): number;
  /** wasm/glue.c: `nframes` frames back to back, PCM back to back; frames concealed, or -1. */
  lc3_decode_frames(dec: number, input: number, nbytes: number, nframes: number, pcm: number, frameSamples: number): number;
  lc3_encoder_size(dtUs: number, srHz: number): number;
  lc3_setup_encoder(dtUs: number, srHz: number, srPcmHz: number, mem: number): number;
  lc3_encode(enc: number, fmt: number, pcm: number, stride: number, nbytes: number, out: number): number;
}

const PCM_S16 = 0;
const ALIGN = 16;
const PAGE = 65536;

export class Lc3Error extends Error {
  override name = 'Lc3Error';
}

/** Throws Lc3Error unless (frameUs, sampleRate) is a supported LC3 configuration. */
export function checkParams(p: Lc3Params): void {
  checkFrameUs(p.frameUs);
  if (!(SAMPLE_RATES as readonly number[]).includes(p.sampleRate)) {
    throw new Lc3Error(`unsupported LC3 sample rate ${p.sampleRate} Hz (supported: ${SAMPLE_RATES.join(', ')})`);
  }
}

export function checkFrameUs(frameUs: number): void {
  if (!(FRAME_US as readonly number[]).includes(frameUs)) {
    throw new Lc3Error(`unsupported LC3 frame duration ${frameUs} µs (supported: 7500, 10000)`);
  }
}

export function checkFrameBytes(n: number): void {
  if (!Number.isInteger(n) || n < MIN_FRAME_BYTES || n > MAX_FRAME_BYTES) {
    throw new Lc3Error(`LC3 frame size ${n} bytes out of range ${MIN_FRAME_BYTES}..${MAX_FRAME_BYTES}`);
  }
}

/** Where lc3.wasm lives: next to this file (source tree) or in wasm/ at the package root (dist/). */
export function wasmPath(): string {
  const env = process.env.LC3_WASM;
  if (env) return env;
  const candidates = [new URL('./lc3.wasm', import.meta.url), new URL('../../wasm/lc3.wasm', import.meta.url)];
  for (const c of candidates) {
    const p = fileURLToPath(c);
    if (existsSync(p)) return p;
  }
  throw new Lc3Error('wasm/lc3.wasm is missing: run `npm run build:wasm` (wasm/build.sh)');
}

/**
 * One instantiated liblc3 module with its own allocator. Use loadLc3() for the per-thread instance;
 * construct directly only to isolate (tests, benchmarks).
 */
export class Lc3Module {
  readonly exports: Lc3Exports;
  private top: number;
  private readonly free = new Map<number, number[]>();
  private readonly sizes = new Map<number, number>();
  /** Scratch: one frame in, one frame of PCM out. */
  readonly scratchIn: number;
  readonly scratchPcm: number;
  private u8: Uint8Array;
  private i16: Int16Array;
  /** Live states (decoders + encoders) — for leak checks. */
  live = 0;
  /** Batch scratch (decodeFrames): frames in, PCM out; grown on demand, never shrunk. */
  private batchIn = 0;
  private batchInBytes = 0;
  private batchPcm = 0;
  private batchPcmBytes = 0;

  constructor(bytes: Uint8Array = readFileSync(wasmPath())) {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    this.exports = instance.exports as unknown as Lc3Exports;
    this.top = align(Number(this.exports.__heap_base.value));
    this.scratchIn = this.alloc(MAX_FRAME_BYTES);
    this.scratchPcm = this.alloc(MAX_FRAME_SAMPLES * 2);
    this.u8 = new Uint8Array(this.exports.memory.buffer);
    this.i16 = new Int16Array(this.exports.memory.buffer);
  }

  /** Bytes of wasm linear memory (grows only when no freed block fits). */
  get memoryBytes(): number {
    return this.exports.memory.buffer.byteLength;
  }

  /** Views over the memory; re-made only after memory.grow detached the old ones. */
  heapU8(): Uint8Array {
    if (this.u8.byteLength === 0) this.refreshViews();
    return this.u8;
  }

  heapI16(): Int16Array {
    if (this.i16.byteLength === 0) this.refreshViews();
    return this.i16;
  }

  private refreshViews(): void {
    this.u8 = new Uint8Array(this.exports.memory.buffer);
    this.i16 = new Int16Array(this.exports.memory.buffer);
  }

  /** Size-class allocator: exact-size free lists (state sizes come from a handful of configs). */
  alloc(size: number): number {
    const n = align(size);
    const list = this.free.get(n);
    const reused = list?.pop();
    if (reused !== undefined) return reused;
    const ptr = this.top;
    const end = ptr + n;
    const have = this.exports.memory.buffer.byteLength;
    if (end > have) this.exports.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    this.sizes.set(ptr, n);
    return ptr;
  }

  release(ptr: number): void {
    const n = this.sizes.get(ptr);
    if (n === undefined) throw new Lc3Error(`release of unknown block ${ptr}`);
    let list = this.free.get(n);
    if (!list) this.free.set(n, (list = []));
    list.push(ptr);
  }

  /**
   * Scratch for one batch: `inBytes` of frames and `pcmBytes` of PCM. Grows to the next power of
   * two (a record is bounded by the ring, so this settles after the first large record); the
   * old block goes back to the free list. May grow the memory: take views after calling this.
   */
  batchScratch(inBytes: number, pcmBytes: number): { input: number; pcm: number } {
    if (inBytes > this.batchInBytes) {
      if (this.batchInBytes > 0) this.release(this.batchIn);
      this.batchInBytes = pow2(inBytes);
      this.batchIn = this.alloc(this.batchInBytes);
    }
    if (pcmBytes > this.batchPcmBytes) {
      if (this.batchPcmBytes > 0) this.release(this.batchPcm);
      this.batchPcmBytes = pow2(pcmBytes);
      this.batchPcm = this.alloc(this.batchPcmBytes);
    }
    return { input: this.batchIn, pcm: this.batchPcm };
  }

  frameSamples(p: Lc3Params): number {
    checkParams(p);
    return this.exports.lc3_frame_samples(p.frameUs, p.sampleRate);
  }

  delaySamples(p: Lc3Params): number {
    checkParams(p);
    return this.exports.lc3_delay_samples(p.frameUs, p.sampleRate);
  }
}

let perThread: Lc3Module | undefined;

/** The module instance of this thread (synchronous: wasm is small and compiled once). */
export function loadLc3(): Lc3Module {
  return (perThread ??= new Lc3Module());
}

function pow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(ALIGN, n)));
}

function align(n: number): number {
  return (n + ALIGN - 1) & ~(ALIGN - 1);
}

export interface DecodeStats {
  /** Frames decoded, concealed ones included. */
  frames: number;
  /** Frames synthesised by packet-loss concealment (lost or corrupt input). */
  plc: number;
  /** Corrupt frames (a subset of plc): undecodable bits, or a size no LC3 frame can have. */
  errors: number;
}

export class Lc3Decoder implements Lc3Params {
  readonly frameUs: number;
  readonly sampleRate: number;
  readonly frameSamples: number;
  readonly stats: DecodeStats = { frames: 0, plc: 0, errors: 0 };
  private state: number;
  private readonly mem: number;
  private readonly mod: Lc3Module;
  private pcmView: Int16Array;
  private batchView: Int16Array | undefined;

  constructor(p: Lc3Params, mod: Lc3Module = loadLc3()) {
    checkParams(p);
    this.frameUs = p.frameUs;
    this.sampleRate = p.sampleRate;
    this.mod = mod;
    this.frameSamples = mod.frameSamples(p);
    this.mem = mod.alloc(mod.exports.lc3_decoder_size(p.frameUs, p.sampleRate));
    this.state = mod.exports.lc3_setup_decoder(p.frameUs, p.sampleRate, p.sampleRate, this.mem);
    /* c8 ignore next */
    if (this.state === 0) throw new Lc3Error('lc3_setup_decoder failed');
    mod.live++;
    this.pcmView = this.makeView();
  }

  private makeView(): Int16Array {
    return this.mod.heapI16().subarray(this.mod.scratchPcm >> 1, (this.mod.scratchPcm >> 1) + this.frameSamples);
  }

  get closed(): boolean {
    return this.state === 0;
  }

  /**
   * Decodes one frame (null = lost frame → concealment). Returns a view of this thread's scratch
   * PCM, valid until the next decode or encode on any coder of the module: copy it to keep it.
   */
  decode(frame: Uint8Array | null): Int16Array {
    const mod = this.mod;
    if (this.state === 0) throw new Lc3Error('decoder is closed');
    const ex = mod.exports;
    let rc: number;
    if (frame === null || frame.length < MIN_FRAME_BYTES || frame.length > MAX_FRAME_BYTES) {
      // Lost, or a size no LC3 frame can have: conceal (liblc3 would reject the call outright).
      if (frame !== null) this.stats.errors++;
      rc = ex.lc3_decode(this.state, 0, 0, PCM_S16, mod.scratchPcm, 1);
    } else {
      // TypedArray.set of a view: ~13 ns for any frame size (a byte loop costs ~2 ns a byte).
      mod.heapU8().set(frame, mod.scratchIn);
      rc = ex.lc3_decode(this.state, mod.scratchIn, frame.length, PCM_S16, mod.scratchPcm, 1);
      if (rc === 1) this.stats.errors++;
    }
    /* c8 ignore next */
    if (rc < 0) throw new Lc3Error('lc3_decode rejected its parameters');
    this.stats.frames++;
    if (rc === 1) this.stats.plc++;
    if (this.pcmView.byteLength === 0) this.pcmView = this.makeView();
    return this.pcmView;
  }

  /** Decodes the frame at `src[offset .. offset + length)`. Same result and lifetime as decode(). */
  decodeFrom(src: Uint8Array, offset: number, length: number): Int16Array {
    if (!(offset >= 0 && length >= 0 && offset + length <= src.length)) {
      throw new RangeError(`frame [${offset}, ${offset + length}) is outside its buffer of ${src.length} bytes`);
    }
    return this.decode(src.subarray(offset, offset + length));
  }

  /**
   * Decodes `count` frames of `frameBytes` each, back to back at `src[offset ..]` (a ring
   * record): one TypedArray.set into wasm memory, one call into wasm (wasm/glue.c
   * lc3_decode_frames), the PCM of every frame back to back as one view — the same samples, bit
   * for bit, as `count` calls of decode(). Corrupt frames are concealed and counted as in
   * decode(). The view lives in this thread's batch scratch, valid until the next decodeFrames on
   * any decoder of the module: copy it to keep it.
   */
  decodeFrames(src: Uint8Array, offset: number, frameBytes: number, count: number): Int16Array {
    const mod = this.mod;
    if (this.state === 0) throw new Lc3Error('decoder is closed');
    if (typeof mod.exports.lc3_decode_frames !== 'function') {
      throw new Lc3Error('wasm/lc3.wasm has no lc3_decode_frames (built before wasm/glue.c had it): run `npm run build:wasm`');
    }
    checkFrameBytes(frameBytes);
    const bytes = frameBytes * count;
    if (!(Number.isInteger(count) && count >= 0 && Number.isInteger(offset) && offset >= 0 && offset + bytes <= src.length)) {
      throw new RangeError(`${count} frames of ${frameBytes} bytes at ${offset} are outside their buffer of ${src.length} bytes`);
    }
    const samples = count * this.frameSamples;
    const at = mod.batchScratch(bytes, samples * 2);
    mod.heapU8().set(src.subarray(offset, offset + bytes), at.input);
    const plc = mod.exports.lc3_decode_frames(this.state, at.input, frameBytes, count, at.pcm, this.frameSamples);
    /* c8 ignore next */
    if (plc < 0) throw new Lc3Error('lc3_decode rejected its parameters');
    this.stats.frames += count;
    this.stats.plc += plc;
    this.stats.errors += plc;
    // Reuse the last view when it still fits (same size, same place, memory not grown): a
    // device's records are all one frame, and a view per record would be an allocation per frame.
    const base = at.pcm >> 1;
    const v = this.batchView;
    if (v !== undefined && v.length === samples && v.byteOffset === at.pcm && v.byteLength !== 0) return v;
    return (this.batchView = mod.heapI16().subarray(base, base + samples));
  }

  /** Decodes into a caller-owned buffer at `offset` (samples). */
  decodeInto(frame: Uint8Array | null, out: Int16Array, offset = 0): void {
    out.set(this.decode(frame), offset);
  }

  close(): void {
    if (this.state === 0) return;
    this.mod.release(this.mem);
    this.mod.live--;
    this.state = 0;
  }
}

/** Bitrates (bps) whose frames are 20..400 bytes at `frameUs`: [bitrate of 20 B, bitrate of 400 B]. */
export function bitrateRange(frameUs: number): { min: number; max: number } {
  return {
    min: Math.ceil((MIN_FRAME_BYTES * 8_000_000) / frameUs),
    max: Math.ceil((MAX_FRAME_BYTES * 8_000_000) / frameUs),
  };
}

export class Lc3Encoder implements Lc3Params {
  readonly frameUs: number;
  readonly sampleRate: number;
  readonly frameSamples: number;
  readonly frameBytes: number;
  private state: number;
  private readonly mem: number;
  private readonly mod: Lc3Module;

  constructor(p: Lc3Params & { frameBytes: number }, mod: Lc3Module = loadLc3()) {
    checkParams(p);
    checkFrameBytes(p.frameBytes);
    this.frameUs = p.frameUs;
    this.sampleRate = p.sampleRate;
    this.frameBytes = p.frameBytes;
    this.mod = mod;
    this.frameSamples = mod.frameSamples(p);
    this.mem = mod.alloc(mod.exports.lc3_encoder_size(p.frameUs, p.sampleRate));
    this.state = mod.exports.lc3_setup_encoder(p.frameUs, p.sampleRate, p.sampleRate, this.mem);
    /* c8 ignore next */
    if (this.state === 0) throw new Lc3Error('lc3_setup_encoder failed');
    mod.live++;
  }

  /** Frame size in bytes for a bitrate (bps) at this frame duration, as liblc3 computes it. */
  static bytesForBitrate(frameUs: number, bitrate: number): number {
    return Math.floor((bitrate * frameUs) / 8_000_000);
  }

  /**
   * The frame size for a bitrate, or an Lc3Error in bitrate terms when LC3 cannot carry it
   * (frames are 20..400 bytes). Unlike elc3, never clamps silently.
   */
  static frameBytesForBitrate(frameUs: number, bitrate: number): number {
    checkFrameUs(frameUs);
    const bytes = Lc3Encoder.bytesForBitrate(frameUs, bitrate);
    if (Number.isInteger(bitrate) && bytes >= MIN_FRAME_BYTES && bytes <= MAX_FRAME_BYTES) return bytes;
    const r = bitrateRange(frameUs);
    const gives = Number.isInteger(bitrate) && bitrate > 0 ? ` (${bytes}-byte frames)` : '';
    throw new Lc3Error(
      `bitrate ${bitrate} bps${gives} is out of range for ${frameUs / 1000} ms frames: ` +
        `LC3 takes ${r.min}..${r.max} bps there (frames of ${MIN_FRAME_BYTES}..${MAX_FRAME_BYTES} bytes)`,
    );
  }

  /**
   * Encodes `frameSamples` samples of `pcm` starting at `offset` (zero-padded when short) into
   * `out` (at least frameBytes long). Returns frameBytes.
   */
  encodeInto(pcm: Int16Array, out: Uint8Array, offset = 0): number {
    const mod = this.mod;
    if (this.state === 0) throw new Lc3Error('encoder is closed');
    if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`bad PCM offset ${offset}`);
    if (out.length < this.frameBytes) throw new RangeError(`output of ${out.length} bytes is smaller than a ${this.frameBytes}-byte frame`);
    const n = Math.min(this.frameSamples, Math.max(0, pcm.length - offset));
    const heap = mod.heapI16();
    const base = mod.scratchPcm >> 1;
    heap.set(pcm.subarray(offset, offset + n), base);
    if (n < this.frameSamples) heap.fill(0, base + n, base + this.frameSamples);
    const rc = mod.exports.lc3_encode(this.state, PCM_S16, mod.scratchPcm, 1, this.frameBytes, mod.scratchIn);
    /* c8 ignore next */
    if (rc !== 0) throw new Lc3Error('lc3_encode failed');
    out.set(mod.heapU8().subarray(mod.scratchIn, mod.scratchIn + this.frameBytes));
    return this.frameBytes;
  }

  close(): void {
    if (this.state === 0) return;
    this.mod.release(this.mem);
    this.mod.live--;
    this.state = 0;
  }
}
