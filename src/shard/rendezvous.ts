// Rendezvous (highest-random-weight) hashing of a session key onto a shard: stable across
// restarts, and when the shard count changes only the keys of added/removed shards move.

/** FNV-1a over the key's UTF-16 code units and the shard index, with murmur3's finaliser. */
export function weight(key: string, shard: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= shard + 0x9e3779b9;
  h = Math.imul(h, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function pickShard(key: string, shards: number): number {
  let best = 0;
  let bestW = -1;
  for (let s = 0; s < shards; s++) {
    const w = weight(key, s);
    if (w > bestW) {
      bestW = w;
      best = s;
    }
  }
  return best;
}
