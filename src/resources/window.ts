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

/** The changes from `before` to `after`, or undefined when more than `limit` elements changed. */
export function listChanges<T>(before: readonly T[], after: readonly T[], limit: number): ListChanges<T> | undefined {
  const removed: T[] = [];
  const added: T[] = [];
  const nb = before.length;
  const na = after.length;
  // From the start, aligned at the start: a run of differing elements followed by an equal one is replaced.
  let head = 0;
  const shortest = Math.min(nb, na);
  while (head < shortest) {
    if (before[head] === after[head]) {
      head++;
      continue;
    }
    let k = 1;
    while (k <= RESYNC && head + k < shortest && before[head + k] !== after[head + k]) k++;
    if (k > RESYNC || head + k >= shortest) break;
    for (let i = head; i < head + k; i++) {
      removed.push(before[i] as T);
      added.push(after[i] as T);
    }
    head += k;
  }
  // From the end, aligned at the end, down to what the first walk took.
  let tail = 0;
  const room = Math.min(nb, na) - head;
  while (tail < room) {
    if (before[nb - 1 - tail] === after[na - 1 - tail]) {
      tail++;
      continue;
    }
    let k = 1;
    while (k <= RESYNC && tail + k < room && before[nb - 1 - tail - k] !== after[na - 1 - tail - k]) k++;
    if (k > RESYNC || tail + k >= room) break;
    for (let i = tail; i < tail + k; i++) {
      removed.push(before[nb - 1 - i] as T);
      added.push(after[na - 1 - i] as T);
    }
    tail += k;
  }
  if (removed.length + (nb - tail - head) + (na - tail - head) > limit) return undefined;
  for (let i = head; i < nb - tail; i++) removed.push(before[i] as T);
  for (let i = head; i < na - tail; i++) added.push(after[i] as T);
  return { removed, added };
}

/** The limit callers use: past a quarter of the list (or 64 elements), a full rebuild is as cheap. */
export const changeLimit = (length: number): number => Math.max(64, length >> 2);
