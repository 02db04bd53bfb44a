/**
 * Segments of a repeated field: a translator that builds a long list (a virtual host's routes: every model's)
 * out of lists it keeps per model says so, and the encoder and the consistency check then work per kept list
 * (one model's routes) rather than per element, so rebuilding the long list for one model's change costs
 * about one step per model. The list must be exactly its segments, in order, joined.
 */
const segmentsOf = new WeakMap<readonly object[], readonly (readonly object[])[]>();

/** Records that `list` is `segments` joined (returns `list`). */
export function withSegments<T extends readonly object[]>(list: T, segments: readonly (readonly object[])[]): T {
  segmentsOf.set(list, segments);
  return list;
}

/** The segments recorded for `list`, if any. */
export function segments(list: readonly unknown[]): readonly (readonly object[])[] | undefined {
  return segmentsOf.get(list as readonly object[]);
}

/** How many lists one concat call takes (a call's arguments are bounded). */
const JOIN_CHUNK = 8192;

/** The lists joined into one array, by concat (one copy; a push per element or flat() costs 10x at 40,000 routes). */
export function joined<T>(lists: readonly (readonly T[])[]): T[] {
  let out: T[] = [];
  for (let i = 0; i < lists.length; i += JOIN_CHUNK) out = out.concat(...lists.slice(i, i + JOIN_CHUNK));
  return out;
}

/** One element in 2^GROUP_BITS on average starts a group. */
const GROUP_BITS = 5;

/**
 * Whether the element with this key starts a group of a long list cut into groups of kept segments (a
 * virtual host's claims, the FilterPolicy's models): a function of the key alone (FNV-1a, mixed), so the groups of
 * a list are the same however it was reached (built whole, or patched by a change), an insertion or removal
 * changes the group it falls in only, and a list's groups are 2^GROUP_BITS elements on average. A key given
 * in parts is the parts joined by zero characters, hashed without joining them.
 */
export function startsGroup(...key: readonly string[]): boolean {
  let h = 0x811c9dc5;
  for (let k = 0; k < key.length; k++) {
    // The zero character between parts: FNV-1a of a zero is the multiply alone.
    if (k > 0) h = Math.imul(h, 0x01000193);
    const part = key[k] as string;
    for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
  }
  // Mixed (murmur3's finaliser): keys that differ in one digit would otherwise share their top bits.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> (32 - GROUP_BITS) === 0;
}
