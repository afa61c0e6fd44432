// Spool usage shared by every thread of the process: bytes currently in the spool directory
// (journal segments + open and sealed chunks). Shards add what they write, the uploader subtracts
// what it deletes, the main thread reads `full` to pause sockets and fail /readyz.
//
// Lives in a SharedArrayBuffer so one instance can be handed to workers (`quota.sab` in
// workerData, `new SpoolQuota(sab)` on the other side).

const BYTES = 0;
const MAX = 1;
/** Bit per shard whose journal last failed with ENOSPC/EDQUOT (the file system is full, whatever the quota says). */
const NO_SPACE = 2;
const SAB_BYTES = 24;

export class SpoolQuota {
  readonly sab: SharedArrayBuffer;
  private readonly words: BigInt64Array;

  /** `new SpoolQuota(maxBytes)` allocates; `new SpoolQuota(sab)` attaches to an existing one. */
  constructor(maxBytesOrSab: number | SharedArrayBuffer) {
    if (typeof maxBytesOrSab === 'number') {
      if (!Number.isSafeInteger(maxBytesOrSab) || maxBytesOrSab <= 0) {
        throw new RangeError(`spool quota: max bytes must be a positive integer, got ${maxBytesOrSab}`);
      }
      this.sab = new SharedArrayBuffer(SAB_BYTES);
      this.words = new BigInt64Array(this.sab);
      Atomics.store(this.words, MAX, BigInt(maxBytesOrSab));
    } else {
      if (!(maxBytesOrSab instanceof SharedArrayBuffer) || maxBytesOrSab.byteLength !== SAB_BYTES) {
        throw new TypeError('spool quota: expected the SharedArrayBuffer of another SpoolQuota');
      }
      this.sab = maxBytesOrSab;
      this.words = new BigInt64Array(this.sab);
    }
  }

  /** Bytes in the spool directory (as accounted). */
  get bytes(): number {
    return Number(Atomics.load(this.words, BYTES));
  }

  get maxBytes(): number {
    return Number(Atomics.load(this.words, MAX));
  }

  /**
   * True when the spool holds SPOOL_MAX_BYTES or more, or its file system is full (a shard's
   * journal failed with ENOSPC): pause sessions, fail /readyz.
   */
  get full(): boolean {
    return Atomics.load(this.words, BYTES) >= Atomics.load(this.words, MAX) || this.noSpace;
  }

  /** True while some shard's journal cannot be written for lack of space (ENOSPC/EDQUOT). */
  get noSpace(): boolean {
    return Atomics.load(this.words, NO_SPACE) !== 0n;
  }

  /** Shard `shard` (0…62) found the disk full (true) or wrote its journal again (false). */
  setNoSpace(shard: number, on: boolean): void {
    const bit = 1n << BigInt(shard % 63);
    if (on) Atomics.or(this.words, NO_SPACE, bit);
    else Atomics.and(this.words, NO_SPACE, ~bit);
  }

  /** bytes / maxBytes (may exceed 1: data already read from sockets is never dropped). */
  get level(): number {
    return this.bytes / this.maxBytes;
  }

  add(n: number): void {
    if (n !== 0) Atomics.add(this.words, BYTES, BigInt(Math.trunc(n)));
  }

  sub(n: number): void {
    if (n !== 0) Atomics.sub(this.words, BYTES, BigInt(Math.trunc(n)));
  }
}
