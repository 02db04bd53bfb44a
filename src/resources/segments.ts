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
