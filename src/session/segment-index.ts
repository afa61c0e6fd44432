// Where a session's transcript segments lie in its audio, so that a speaker-sample request (105)
// naming segment ids can be turned into a time range of stored audio (DESIGN §3.4).
//
// Segment `start`/`end` in a 102 are seconds since the first audio of the conversation on this
// session (the listen service's stream clock restarts with each conversation). The index keeps,
// per segment id, those times and the conversation they belong to — the conversation the audio is
// filed under (`_` until the client names one), whose first-audio time becomes known with its
// first audio record. Bounded: the most recent MAX_SEGMENTS segments (a long session's old
// segments are forgotten first; a 105 names recent ones).

export const MAX_SEGMENTS = 2000;

/** The conversation the session's audio is being filed under, and the unix ms of its first sample. */
export interface ConversationClock {
  readonly id: string;
  firstAudioMs: number | undefined;
}

interface Entry {
  start: number;
  end: number;
  clock: ConversationClock;
}

export interface ResolvedRange {
  /** The conversation the audio is stored under. */
  storageConversationId: string;
  startMs: number;
  endMs: number;
  /** Requested ids that were found. */
  found: number;
}

export class SegmentIndex {
  private readonly segments = new Map<string, Entry>();

  constructor(private readonly max = MAX_SEGMENTS) {}

  get size(): number {
    return this.segments.size;
  }

  /** Records the segments of one 102 (those with a string id and finite times). */
  add(segments: readonly { id?: unknown; start: number; end: number }[], clock: ConversationClock): void {
    for (const s of segments) {
      if (typeof s.id !== 'string' || !Number.isFinite(s.start) || !Number.isFinite(s.end) || s.end < s.start) continue;
      this.segments.delete(s.id); // re-insert: a revised segment is the most recent
      this.segments.set(s.id, { start: s.start, end: s.end, clock });
      if (this.segments.size > this.max) this.segments.delete(this.segments.keys().next().value!);
    }
  }

  /**
   * The union of the named segments' times in unix ms, or why not: an unknown id, a conversation
   * with no audio yet, or segments of two different stored conversations.
   */
  resolve(ids: readonly string[]): ResolvedRange | { error: string } {
    let clock: ConversationClock | undefined;
    let start = Infinity;
    let end = -Infinity;
    let found = 0;
    for (const id of ids) {
      const e = this.segments.get(id);
      if (!e) continue;
      if (clock && clock !== e.clock) return { error: 'segments of different conversations' };
      clock = e.clock;
      start = Math.min(start, e.start);
      end = Math.max(end, e.end);
      found++;
    }
    if (!clock) return { error: ids.length ? 'no known segment among segment_ids' : 'segment_ids is empty' };
    if (clock.firstAudioMs === undefined) return { error: 'the conversation has no audio yet' };
    return { storageConversationId: clock.id, startMs: clock.firstAudioMs + start * 1000, endMs: clock.firstAudioMs + end * 1000, found };
  }
}
