/**
 * What differs between two lists whose unchanged elements are the same objects in the same order (memoised
 * pipeline stages hand back the same objects for what did not change): found by pointer comparisons only,
 * so one model's change costs its own entries, not a walk of maps over the whole list.
 *
 * Both lists are walked from the start and from the end; a run of elements that differ followed by equal
 * ones at the same place (a model's clusters, the resources rebuilt on every change) is replaced, and where
 * the lists do not agree again soon (something was inserted or removed) the rest up to the other walk is
 * taken as replaced.
 */
export interface ListChanges<T> {
  /** Elements of `before` that `after` does not have at their place (removed or replaced). */
  readonly removed: readonly T[];
  /** Elements of `after` that were not at their place in `before` (added or replacements). */
  readonly added: readonly T[];
}

/** How far past a differing element the walks look for the lists to agree again at the same place. */
const RESYNC = 16;

/**
 * How far the two walks get: `before[0, head)` and `after[0, head)` are aligned at the start, the last
 * `tail` elements of both aligned at the end; between them nothing is aligned. Also the places in those
 * ranges where the elements differ (replacements: indices from the start, and offsets from the end, each in
 * the order walked), so that no caller walks the aligned ranges a second time.
 */
function align<T>(before: readonly T[], after: readonly T[]): { head: number; tail: number; headReplaced: number[]; tailReplaced: number[] } {
  const nb = before.length;
  const na = after.length;
  const shortest = Math.min(nb, na);
  const headReplaced: number[] = [];
  const tailReplaced: number[] = [];
  let head = 0;
  while (head < shortest) {
    if (before[head] === after[head]) {
      head++;
      continue;
    }
    // A run of differing elements followed by an equal one at the same place is a replacement.
    let k = 1;
    while (k <= RESYNC && head + k < shortest && before[head + k] !== after[head + k]) k++;
    if (k > RESYNC || head + k >= shortest) break;
    for (let i = 0; i < k; i++) headReplaced.push(head + i);
    head += k;
  }
  let tail = 0;
  const room = shortest - head;
  while (tail < room) {
    if (before[nb - 1 - tail] === after[na - 1 - tail]) {
      tail++;
      continue;
    }
    let k = 1;
    while (k <= RESYNC && tail + k < room && before[nb - 1 - tail - k] !== after[na - 1 - tail - k]) k++;
    if (k > RESYNC || tail + k >= room) break;
    for (let j = 0; j < k; j++) tailReplaced.push(tail + j);
    tail += k;
  }
  return { head, tail, headReplaced, tailReplaced };
}

type Alignment = ReturnType<typeof align>;

/** The last alignment made for each list (by the list aligned against it). */
const alignments = new WeakMap<readonly unknown[], { readonly before: readonly unknown[]; readonly alignment: Alignment }>();

/**
 * align(before, after), once per pair of lists: every xDS mode maps the same targets (the clusters of three
 * modes, 20,000 targets each at 10,000 models), and several stages compare or map the same models (IR
 * validation, the FilterPolicy's rules, proxyless). Only for lists never changed once made.
 */
function alignedOnce<T>(before: readonly T[], after: readonly T[]): Alignment {
  const known = alignments.get(after);
  if (known && known.before === before) return known.alignment;
  const alignment = align(before, after);
  alignments.set(after, { before, alignment });
  return alignment;
}

/** The changes from `before` to `after`, or undefined when more than `limit` elements changed (lists never changed once made). */
export function listChanges<T>(before: readonly T[], after: readonly T[], limit: number): ListChanges<T> | undefined {
  const nb = before.length;
  const na = after.length;
  const { head, tail, headReplaced, tailReplaced } = alignedOnce(before, after);
  if (headReplaced.length + tailReplaced.length + (nb - tail - head) + (na - tail - head) > limit) return undefined;
  const removed: T[] = [];
  const added: T[] = [];
  for (const i of headReplaced) {
    removed.push(before[i] as T);
    added.push(after[i] as T);
  }
  for (const j of tailReplaced) {
    removed.push(before[nb - 1 - j] as T);
    added.push(after[na - 1 - j] as T);
  }
  for (let i = head; i < nb - tail; i++) removed.push(before[i] as T);
  for (let i = head; i < na - tail; i++) added.push(after[i] as T);
  return { removed, added };
}

/**
 * `after.map(fn)`, where an element that is the same object at the same place as in `before` gets the
 * result it had (`beforeOut`, the map of `before`) without calling `fn`. `before` and `after` are lists never
 * changed once made (their alignment is kept for the next call with the same pair).
 */
export function mapChanged<T, U>(before: readonly T[], beforeOut: readonly U[], after: readonly T[], fn: (item: T) => U, changes?: { removed: U[]; added: U[] }): U[] {
  const nb = before.length;
  const na = after.length;
  const { head, tail, headReplaced, tailReplaced } = alignedOnce(before, after);
  // The aligned ranges copied whole (one copy, no walk), then the replaced places and the middle made.
  const middle: U[] = [];
  const out = beforeOut.slice(0, head);
  for (const i of headReplaced) {
    changes?.removed.push(beforeOut[i] as U);
    out[i] = fn(after[i] as T);
    changes?.added.push(out[i]);
  }
  for (let i = head; i < nb - tail; i++) changes?.removed.push(beforeOut[i] as U);
  for (let i = head; i < na - tail; i++) middle.push(fn(after[i] as T));
  changes?.added.push(...middle);
  const result = out.concat(middle, beforeOut.slice(nb - tail, nb));
  for (let j = tailReplaced.length - 1; j >= 0; j--) {
    const offset = tailReplaced[j] as number;
    changes?.removed.push(beforeOut[nb - 1 - offset] as U);
    result[na - 1 - offset] = fn(after[na - 1 - offset] as T);
    changes?.added.push(result[na - 1 - offset] as U);
  }
  return result;
}

/** The limit callers use: past a quarter of the list (or 64 elements), a full rebuild is as cheap. */
export const changeLimit = (length: number): number => Math.max(64, length >> 2);

/** The last comparison made for each list (by the list compared against it). */
const compared = new WeakMap<readonly unknown[], { readonly before: readonly unknown[]; readonly limit: number; readonly changes: ListChanges<unknown> | undefined }>();

/**
 * listChanges(before, after, changeLimit(after.length)), computed once per pair of lists: the stages of one
 * build compare the same lists (the last IR's models with this IR's, a mode's resources with the last
 * ones), and a comparison walks both. Only for lists never changed once made (every memoised stage's output).
 */
export function sharedChanges<T>(before: readonly T[], after: readonly T[]): ListChanges<T> | undefined {
  const limit = changeLimit(after.length);
  const known = compared.get(after);
  if (known && known.before === before && known.limit === limit) return known.changes as ListChanges<T> | undefined;
  const changes = listChanges(before, after, limit);
  compared.set(after, { before, limit, changes });
  return changes;
}

/**
 * Records what differs from `before` to `after` (a valid change set: what a stage that made `after` from
 * `before` knows), so sharedChanges(before, after) does not walk them. Undefined when past the limit.
 */
export function recordChanges<T>(before: readonly T[], after: readonly T[], changes: ListChanges<T>): void {
  const limit = changeLimit(after.length);
  compared.set(after, { before, limit, changes: changes.removed.length + changes.added.length > limit ? undefined : changes });
}
