/**
 * A bounded least-recently-used map, for the filter service's per-policy caches (API-key digests, encoded
 * allow answers). A Map keeps insertion order, so moving a key to the end on each hit makes the first key the
 * least recently used, and an insert past `capacity` drops it.
 */
export class Lru<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`an LRU holds at least one entry (got ${capacity})`);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    // Already the most recent: nothing to move (the common case under a steady load).
    if (this.entries.size > 1) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }
}
