// Shards tell the uploader about freshly sealed chunks over a BroadcastChannel: it reaches every
// thread of the process (the uploader worker listens), needs no wiring through the main thread,
// and costs one small message per sealed chunk. The uploader also rescans the spool periodically,
// so a lost message only delays an upload.
import { BroadcastChannel } from 'node:worker_threads';

export const SEALED_CHANNEL = 'lc3-pusher/spool-sealed';

export interface SealedMessage {
  /** Object name (= path relative to {SPOOL_DIR}/sealed/). */
  name: string;
  bytes: number;
}

let channel: BroadcastChannel | undefined;

/** Posts a sealed chunk to every listener in the process (usable as ShardSpool's onSealed). */
export function announceSealed(msg: SealedMessage): void {
  if (!channel) {
    channel = new BroadcastChannel(SEALED_CHANNEL);
    channel.unref();
  }
  channel.postMessage({ name: msg.name, bytes: msg.bytes } satisfies SealedMessage);
}

/** Subscribes to sealed-chunk announcements; returns the function that unsubscribes. */
export function onSealedAnnouncement(fn: (msg: SealedMessage) => void): () => void {
  const bc = new BroadcastChannel(SEALED_CHANNEL);
  bc.unref();
  bc.onmessage = (ev) => {
    const m = (ev as MessageEvent).data as Partial<SealedMessage> | null;
    if (m && typeof m.name === 'string' && typeof m.bytes === 'number') fn({ name: m.name, bytes: m.bytes });
  };
  return () => bc.close();
}
