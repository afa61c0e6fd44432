// Inside a shard: the durable spool as the sessions' sink. One ShardSpool per shard (one group
// commit, one fsync for all its sessions); durable counts become 202 acks for ack=1 sessions.
import { announceSealed } from '../spool/channel.js';
import { SpoolQuota } from '../spool/quota.js';
import { ShardSpool } from '../spool/shard-spool.js';
import type { SessionInit, ShardEvent } from '../session/protocol.js';
import type { SessionSink } from '../session/session.js';

export interface SpoolWorkerConfig {
  dir: string;
  fsyncMs: number;
  chunkSeconds: number;
  quotaSab: SharedArrayBuffer;
}

export interface ShardSpoolSinks {
  spool: ShardSpool;
  sinkFor(init: SessionInit, slot: number): SessionSink | undefined;
  /** Audio bytes that can no longer be lost (pusher_audio_bytes_durable_total). */
  durableBytes(): number;
}

export function createSpoolSinks(shard: number, cfg: SpoolWorkerConfig, emit: (ev: ShardEvent) => void, onError: (err: Error, ctx: string) => void): ShardSpoolSinks {
  /** session id → slot, for the sessions that asked for acks. */
  const ackSlots = new Map<number, number>();
  const lastBytes = new Map<number, number>();
  let durable = 0;
  const spool = new ShardSpool({
    dir: cfg.dir,
    shard,
    quota: new SpoolQuota(cfg.quotaSab),
    fsyncMs: cfg.fsyncMs,
    chunkSeconds: cfg.chunkSeconds,
    onDurable: (id, frames, bytes) => {
      durable += bytes - (lastBytes.get(id) ?? 0);
      lastBytes.set(id, bytes);
      const slot = ackSlots.get(id);
      if (slot !== undefined) emit({ t: 'ack', slot, frames, bytes });
    },
    onSealed: (c) => announceSealed({ name: c.name, bytes: c.bytes }),
    onError,
  });
  return {
    spool,
    durableBytes: () => durable,
    sinkFor(init, slot) {
      if (!init.sync) return undefined;
      const s = spool.openSession({
        sessionId: init.id,
        uid: init.uid,
        ...(init.conversationId ? { conversationId: init.conversationId } : {}),
        format: init.codec === 'lc3' ? { kind: 'lc3', frameUs: init.frameUs, sampleRate: init.sampleRate, frameBytes: init.frameBytes } : { kind: 'pcm16', sampleRate: init.sampleRate },
      });
      if (init.ack) ackSlots.set(init.id, slot);
      return {
        audio: (data, off, len, frames, first) => s.appendRange(data, off, len, frames, first),
        conversation: (id) => s.switchConversation(id),
        close: async () => {
          try {
            await s.close();
          } finally {
            ackSlots.delete(init.id);
            lastBytes.delete(init.id);
          }
        },
      };
    },
  };
}
