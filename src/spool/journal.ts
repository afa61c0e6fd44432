// The per-shard journal: an append-only sequence of checksummed records, written and fdatasync'd
// once per group commit for every session of the shard.
//
// Record (little endian):
//   0  u16  magic 0x4a4c
//   2  u8   type: 1 OPEN (payload: JSON OpenPayload) · 2 DATA (payload: chunk bytes) ·
//           3 SEAL (the chunk ends here; no payload) · 4 SEALED (its sealed file is durable;
//           payload: the object name it was sealed to)
//   3  u8   version (1)
//   4  u32  chunk id (unique within one ShardSpool run; segment names carry the run)
//   8  u32  payload length
//  12  u48  offset: DATA → byte offset of the payload in the chunk file; SEAL → final file size; SEALED → 0
//  18  u16  0
//  20  u32  CRC-32 of bytes 0..19 and the payload
//  24  payload
// A reader stops at the first record that does not check out (a torn tail, or zeros).
import { crc32 } from 'node:zlib';
import type { SpoolFormat } from './format.js';

export const RECORD_HEADER_BYTES = 24;
export const RECORD_MAGIC = 0x4a4c;
export const RECORD_VERSION = 1;
export const REC_OPEN = 1;
export const REC_DATA = 2;
export const REC_SEAL = 3;
/**
 * Written once a chunk's sealed file and its directory entry are durable, and before its open name
 * is removed: recovery tells "sealed (maybe uploaded since)" from "open file not created yet" by it.
 */
export const REC_SEALED = 4;
/** Largest payload a reader accepts (a sanity bound against garbage lengths). */
export const MAX_RECORD_PAYLOAD = 1 << 30;

export interface OpenPayload {
  /** The chunk's open file, relative to {SPOOL_DIR}/open/. */
  open: string;
  /** The object name it is sealed to (before any bump around a taken name). */
  object: string;
  format: SpoolFormat;
  session: number;
}

/** Writes a record header at `at` for a payload already in place at at+24; computes the CRC. */
export function writeRecord(buf: Buffer, at: number, type: number, chunkId: number, offset: number, payloadLen: number): number {
  buf.writeUInt16LE(RECORD_MAGIC, at);
  buf.writeUInt8(type, at + 2);
  buf.writeUInt8(RECORD_VERSION, at + 3);
  buf.writeUInt32LE(chunkId, at + 4);
  buf.writeUInt32LE(payloadLen, at + 8);
  buf.writeUIntLE(offset, at + 12, 6);
  buf.writeUInt16LE(0, at + 18);
  const head = crc32(buf.subarray(at, at + 20));
  const crc = payloadLen > 0 ? crc32(buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + payloadLen), head) : head;
  buf.writeUInt32LE(crc, at + 20);
  return at + RECORD_HEADER_BYTES + payloadLen;
}

export interface JournalRecord {
  type: number;
  chunkId: number;
  offset: number;
  payload: Buffer;
}

export interface ParsedSegment {
  records: JournalRecord[];
  /** Bytes of whole, valid records from the start. */
  validBytes: number;
}

/** Every valid record of a segment, in order, up to the first one that does not check out. */
export function parseSegment(buf: Buffer): ParsedSegment {
  const records: JournalRecord[] = [];
  let at = 0;
  while (at + RECORD_HEADER_BYTES <= buf.length) {
    if (buf.readUInt16LE(at) !== RECORD_MAGIC || buf[at + 3] !== RECORD_VERSION) break;
    const type = buf[at + 2]!;
    const len = buf.readUInt32LE(at + 8);
    if (type < REC_OPEN || type > REC_SEALED || len > MAX_RECORD_PAYLOAD || at + RECORD_HEADER_BYTES + len > buf.length) break;
    const payload = buf.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len);
    const crc = crc32(payload, crc32(buf.subarray(at, at + 20)));
    if (crc !== buf.readUInt32LE(at + 20)) break;
    records.push({ type, chunkId: buf.readUInt32LE(at + 4), offset: buf.readUIntLE(at + 12, 6), payload });
    at += RECORD_HEADER_BYTES + len;
  }
  return { records, validBytes: at };
}

/** Parses an OPEN payload; null when it is not a well-formed one. */
export function parseOpenPayload(payload: Buffer): OpenPayload | null {
  try {
    const j = JSON.parse(payload.toString('utf8')) as Partial<OpenPayload> | null;
    if (j && typeof j.open === 'string' && typeof j.object === 'string' && j.format && typeof j.session === 'number') {
      return j as OpenPayload;
    }
  } catch {
    // fall through
  }
  return null;
}
