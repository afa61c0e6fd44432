// Inside a shard: the durable spool as the sessions' sink. One ShardSpool per shard (one group
// commit, one fsync for all its sessions); durable counts become 202 acks for ack=1 sessions.
import { announceSealed } from '../spool/channel.js';
import { faultInjectingIo, nodeIo } from '../spool/io.js';
import { SpoolQuota } from '../spool/quota.js';
import { ShardSpool } from '../spool/shard-spool.js';
import type { SessionInit, ShardEvent } from '../session/protocol.js';
import type { SessionSink } from '../session/session.js';

export interface SpoolWorkerConfig {
  dir: string;
  fsyncMs: number;
  chunkSeconds: number;
  quotaSab: SharedArrayBuffer;
  /** How long the shard's spool close (SIGTERM) may take before it leaves the rest to recovery. */
  closeTimeoutMs?: number | undefined;
  /** Test only: LC3_PUSHER_TEST_SPOOL_FAULTS, a rule file for faultInjectingIo (src/spool/io.ts). */
  ioFaults?: string | undefined;
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
  /** session id → slot, for every session with a spool (closed with 1011 when the journal is lost). */
  const slots = new Map<number, number>();
  const lastBytes = new Map<number, number>();
  let durable = 0;
  const quota = new SpoolQuota(cfg.quotaSab);
  const spool = new ShardSpool({
    dir: cfg.dir,
    shard,
    quota,
    // A full file system pauses every session (quota.full) and fails /readyz, like a full quota.
    onNoSpace: (full) => quota.setNoSpace(shard, full),
    ...(cfg.closeTimeoutMs !== undefined ? { closeTimeoutMs: cfg.closeTimeoutMs } : {}),
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
    io: cfg.ioFaults ? faultInjectingIo(nodeIo, cfg.ioFaults) : nodeIo,
    onFsyncFailure: (err, f) => {
      // The context names it "fsync" so the shard's log writes it at `error` (see shard-main.ts).
      onError(err, f.rewriteFailed ? 'fsync failed, and the rewrite into a new segment too' : `fsync failed (${f.where})`);
      if (!f.rewriteFailed) return;
      // What these sessions sent since their last ack may never become durable: close them so
      // their clients reconnect and resend it (anything acknowledged is safe in the journal).
      for (const slot of slots.values()) emit({ t: 'close', slot, code: 1011, reason: 'spool journal cannot be made durable (fsync failed)' });
    },
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
      slots.set(init.id, slot);
      return {
        audio: (data, off, len, frames, first) => s.appendRange(data, off, len, frames, first),
        conversation: (id) => s.switchConversation(id),
        close: async () => {
          try {
            await s.close();
          } finally {
            ackSlots.delete(init.id);
            slots.delete(init.id);
            lastBytes.delete(init.id);
          }
        },
      };
    },
  };
}
