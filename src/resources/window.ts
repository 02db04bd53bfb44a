/**
 * What differs between two lists whose unchanged elements are the same objects in the same order (memoised
 * pipeline stages hand back the same objects for what did not change): found by pointer comparisons only,
 * so one model's change costs its own entries, not a walk of maps over the whole list.
 *
 * Both lists are walked from the start and from the end; a lone element that differs between two equal
 * ones (a model whose cluster was replaced, a resource that is rebuilt on every change) is a replacement,
 * and where two in a row differ (something was inserted or removed) the rest up to the other walk is
 * taken as replaced.
 */
export interface ListChanges<T> {
  /** Elements of `before` that `after` does not have at their place (removed or replaced). */
  readonly removed: readonly T[];
  /** Elements of `after` that were not at their place in `before` (added or replacements). */
  readonly added: readonly T[];
}

/** The changes from `before` to `after`, or undefined when more than `limit` elements changed. */
export function listChanges<T>(before: readonly T[], after: readonly T[], limit: number): ListChanges<T> | undefined {
  const removed: T[] = [];
  const added: T[] = [];
  const nb = before.length;
  const na = after.length;
  const shortest = Math.min(nb, na);
  // From the start, aligned at the start.
  let head = 0;
  while (head < shortest) {
    if (before[head] === after[head]) {
      head++;
      continue;
    }
    if (head + 1 < shortest && before[head + 1] === after[head + 1]) {
      removed.push(before[head] as T);
      added.push(after[head] as T);
      head++;
      continue;
    }
    break;
  }
  // From the end, aligned at the end, down to what the first walk took.
  let tail = 0;
  while (nb - tail > head && na - tail > head) {
    const b = before[nb - 1 - tail] as T;
    const a = after[na - 1 - tail] as T;
    if (b === a) {
      tail++;
      continue;
    }
    if (nb - tail - 1 > head && na - tail - 1 > head && before[nb - 2 - tail] === after[na - 2 - tail]) {
      removed.push(b);
      added.push(a);
      tail++;
      continue;
    }
    break;
  }
  if (removed.length + (nb - tail - head) + (na - tail - head) > limit) return undefined;
  for (let i = head; i < nb - tail; i++) removed.push(before[i] as T);
  for (let i = head; i < na - tail; i++) added.push(after[i] as T);
  return { removed, added };
}

/** The limit callers use: past a quarter of the list (or 64 elements), a full rebuild is as cheap. */
export const changeLimit = (length: number): number => Math.max(64, length >> 2);
