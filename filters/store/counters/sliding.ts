/**
 * The sliding window, as both counter stores count it (the memory store in TypeScript, Redis in the Lua of
 * redis-script.ts, with the same arithmetic). A window of length W is cut into SLIDING_BUCKETS buckets of
 * W / SLIDING_BUCKETS; an event is added to the bucket of the moment it happens, and the count at time t is
 * the sum of every bucket that overlaps (t - W, t]. So an event counts for at least W and at most
 * W + W / SLIDING_BUCKETS after it happened: a limit of L per W is never exceeded in any interval of length W
 * (it may refuse up to one bucket early), and no boundary of the clock resets it.
 *
 * Why buckets and not a log of events or GCRA: a token quota adds thousands of tokens per answer, so a log
 * would grow with use; GCRA (a leaky bucket) lets a caller who spent the whole limit at once spend it again
 * while it drains, almost twice the limit in one window — the very hole this closes. Buckets keep the state
 * of a counter at SLIDING_BUCKETS + 1 numbers, and the count exact to a bucket.
 */

/** Buckets per window: 1 s buckets for a minute, 1 min for an hour, 24 min for a day. */
export const SLIDING_BUCKETS = 60;

/** The index of the bucket holding `nowMs` for windows of `windowMs`. */
export function bucketOf(nowMs: number, windowMs: number): number {
  return Math.floor((nowMs * SLIDING_BUCKETS) / windowMs);
}

/** The oldest bucket still counted when the current one is `current`. */
export function oldestCounted(current: number): number {
  return current - SLIDING_BUCKETS;
}

/** When (epoch ms) the events of `bucket` stop being counted. */
export function leavesAtMs(bucket: number, windowMs: number): number {
  return Math.ceil(((bucket + SLIDING_BUCKETS + 1) * windowMs) / SLIDING_BUCKETS);
}

/** An amount counted now and when it stops being counted. */
export interface Leaving {
  readonly atMs: number;
  readonly amount: number;
}

/** Counted buckets (index -> amount, in any order) as the schedule of their leaving, oldest first. */
export function leavingOf(buckets: Iterable<readonly [number, number]>, windowMs: number): Leaving[] {
  const out: Leaving[] = [];
  for (const [bucket, amount] of buckets) if (amount > 0) out.push({ atMs: leavesAtMs(bucket, windowMs), amount });
  return out.sort((a, b) => a.atMs - b.atMs);
}

/** How long from `nowMs` until a count with this leaving schedule is at most `target` (0 when it already is). */
export function msUntilAtMost(count: number, leaving: readonly Leaving[], target: number, nowMs: number): number {
  let left = count;
  if (left <= target) return 0;
  for (const l of leaving) {
    left -= l.amount;
    if (left <= target) return Math.max(0, l.atMs - nowMs);
  }
  // Only reached when the schedule misses part of the count (it never does): wait for the last bucket.
  return Math.max(0, (leaving.at(-1)?.atMs ?? nowMs) - nowMs);
}
