import type { LimitAlgorithm } from '../../../src/contract/filter-policy.js';
import { FlowgateError } from '../../../src/errors.js';
import { bucketOf, leavesAtMs, leavingOf, oldestCounted, type Leaving } from './sliding.js';

/**
 * The counters behind the rate limiter and the token quotas. A counter is named by a key, a window length and
 * an algorithm:
 *  - fixed: windows aligned to the epoch; the store adds the window start (floor(now / windowMs) * windowMs)
 *    to the key, so every process that shares a store and a clock counts into the same window;
 *  - sliding: the last windowMs, counted in buckets (sliding.ts), so no clock boundary resets it.
 * A counter also names the hash tag of its decision: Redis keeps every key of one decision in one Cluster
 * slot, so one script can count them all atomically.
 */

/** Which counter: its key, window, algorithm (default fixed) and the hash tag of its decision. */
export interface CounterRef {
  readonly key: string;
  readonly windowMs: number;
  readonly algorithm?: LimitAlgorithm;
  /** Every counter of one decision carries the same tag (the consumer); absent: none. */
  readonly tag?: string;
}

/** One increment: `amount` added to the counter now. */
export interface CounterHit extends CounterRef {
  readonly amount: number;
}

/** An increment that is only made if the request it counts is admitted (see CounterStore.admit). */
export interface LimitedHit extends CounterHit {
  readonly limit: number;
}

/** A counter now. */
export interface CounterState {
  /** The count after this call's increment (for `get`, and for a refused `admit` of a sliding counter, the count so far). */
  readonly count: number;
  /** When the count next goes down (epoch ms): the window's end (fixed), or when its oldest bucket leaves (sliding; now when empty). */
  readonly resetAtMs: number;
  /** Sliding counters: when each counted amount leaves the window, oldest first. */
  readonly leaving?: readonly Leaving[];
}

/** The answer of `admit`: whether every limit had room, and each counter's state. */
export interface Admission {
  readonly admitted: boolean;
  readonly states: CounterState[];
}

export interface CounterStore {
  /** Adds every hit atomically with respect to other callers and answers the counts in the same order. */
  incr(items: readonly CounterHit[]): Promise<CounterState[]>;
  /** The current counts, in the order asked, without changing them. */
  get(items: readonly CounterRef[]): Promise<CounterState[]>;
  /**
   * One request against several limits, decided atomically: fixed counters are always incremented (a refused
   * request still fills its fixed windows) and refuse when their count passes the limit; sliding counters
   * refuse when count + amount would pass it, and are incremented only when the whole request is admitted.
   */
  admit(items: readonly LimitedHit[]): Promise<Admission>;
  /** Releases timers and connections; the store answers nothing afterwards. */
  close(): Promise<void>;
  readonly kind: 'memory' | 'redis';
}

export type StoreErrorCode = 'store_unavailable' | 'store_timeout' | 'store_full' | 'store_closed' | 'store_reply';

/** A store could not answer: the limiter turns it into the model's fail-open or fail-closed decision. */
export class StoreError extends FlowgateError {
  constructor(
    override readonly code: StoreErrorCode,
    message: string,
    readonly store: CounterStore['kind'],
    /** The call that failed; `connect` only from RedisStore.ready(). */
    readonly op: 'incr' | 'get' | 'connect',
    options?: { cause?: unknown },
  ) {
    super(code, message, `${store} counter store`, options);
    this.name = 'StoreError';
  }
}

/** The start and end (epoch ms) of the fixed window of length `windowMs` that holds `nowMs`. */
export function windowOf(nowMs: number, windowMs: number): { startMs: number; endMs: number } {
  if (!(Number.isInteger(windowMs) && windowMs > 0)) throw new RangeError(`window length must be a positive whole number of ms (got ${windowMs})`);
  const startMs = Math.floor(nowMs / windowMs) * windowMs;
  return { startMs, endMs: startMs + windowMs };
}

/** The stored name of a counter in one window. */
export function windowKey(key: string, windowMs: number, startMs: number): string {
  return `${key}:${windowMs}:${startMs}`;
}

// ---- in-process store ---------------------------------------------------------------------------------------

export interface MemoryStoreOptions {
  /** The clock; tests move it to cross windows. */
  readonly now?: () => number;
  /** Live counters kept at most; past this, an increment of a new counter fails (and the policy's failOpen decides). */
  readonly maxCounters?: number;
  /** How often expired windows are dropped. */
  readonly sweepIntervalMs?: number;
}

interface FixedCounter {
  readonly kind: 'fixed';
  count: number;
  endMs: number;
}

interface SlidingCounter {
  readonly kind: 'sliding';
  /** bucket index -> amount */
  readonly buckets: Map<number, number>;
  /** When the newest bucket leaves: the counter is empty from then on. */
  endMs: number;
}

type MemoryCounter = FixedCounter | SlidingCounter;

/**
 * Counters in a Map, for one filter-service process (no sharing between replicas). Expired counters are
 * swept every `sweepIntervalMs`, and the number of live counters is bounded so a flood of distinct consumers
 * cannot grow the process without limit. JavaScript runs one call at a time, so every call is atomic.
 */
export class MemoryStore implements CounterStore {
  readonly kind = 'memory' as const;
  private readonly counters = new Map<string, MemoryCounter>();
  private readonly now: () => number;
  private readonly maxCounters: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.maxCounters = options.maxCounters ?? 200_000;
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 10_000);
    this.sweeper.unref();
  }

  /** The number of counters held (live or not yet swept). */
  get size(): number {
    return this.counters.size;
  }

  incr(items: readonly CounterHit[]): Promise<CounterState[]> {
    if (this.closed) return Promise.reject(closedError('incr'));
    const now = this.now();
    const states: CounterState[] = [];
    for (const item of items) {
      const counter = this.counterOrNew(item, now);
      if (counter instanceof StoreError) return Promise.reject(counter);
      states.push(add(counter, item, now));
    }
    return Promise.resolve(states);
  }

  get(items: readonly CounterRef[]): Promise<CounterState[]> {
    if (this.closed) return Promise.reject(closedError('get'));
    const now = this.now();
    return Promise.resolve(items.map((item) => read(this.counters.get(storedName(item, now)), item, now)));
  }

  admit(items: readonly LimitedHit[]): Promise<Admission> {
    if (this.closed) return Promise.reject(closedError('incr'));
    const now = this.now();
    const counters: MemoryCounter[] = [];
    for (const item of items) {
      const counter = this.counterOrNew(item, now);
      if (counter instanceof StoreError) return Promise.reject(counter);
      counters.push(counter);
    }
    // First every counter as this request finds it (fixed ones counting it already), then the sliding ones.
    let admitted = true;
    const states = items.map((item, i) => {
      const counter = counters[i] as MemoryCounter;
      if (counter.kind === 'fixed') {
        const state = add(counter, item, now);
        if (state.count > item.limit) admitted = false;
        return state;
      }
      const state = read(counter, item, now);
      if (state.count + item.amount > item.limit) admitted = false;
      return state;
    });
    if (admitted) {
      items.forEach((item, i) => {
        const counter = counters[i] as MemoryCounter;
        if (counter.kind === 'sliding') states[i] = add(counter, item, now);
      });
    }
    return Promise.resolve({ admitted, states });
  }

  close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.counters.clear();
    return Promise.resolve();
  }

  /** Drops every counter whose window has ended. */
  sweep(): void {
    const now = this.now();
    for (const [name, counter] of this.counters) if (counter.endMs <= now) this.counters.delete(name);
  }

  /** The counter `ref` names now, made when missing (or a store_full error when there is no room). */
  private counterOrNew(ref: CounterRef, now: number): MemoryCounter | StoreError {
    const name = storedName(ref, now);
    let counter = this.counters.get(name);
    if (counter !== undefined) return counter;
    if (this.counters.size >= this.maxCounters) this.sweep();
    if (this.counters.size >= this.maxCounters) {
      return new StoreError('store_full', `the memory store holds its maximum of ${this.maxCounters} counters; raise maxCounters or use Redis`, 'memory', 'incr');
    }
    counter = ref.algorithm === 'sliding' ? { kind: 'sliding', buckets: new Map(), endMs: 0 } : { kind: 'fixed', count: 0, endMs: windowOf(now, ref.windowMs).endMs };
    this.counters.set(name, counter);
    return counter;
  }
}

function storedName(ref: CounterRef, now: number): string {
  return ref.algorithm === 'sliding' ? slidingKey(ref.key, ref.windowMs) : windowKey(ref.key, ref.windowMs, windowOf(now, ref.windowMs).startMs);
}

function add(counter: MemoryCounter, hit: CounterHit, now: number): CounterState {
  if (counter.kind === 'fixed') {
    counter.count += hit.amount;
    return { count: counter.count, resetAtMs: counter.endMs };
  }
  const current = bucketOf(now, hit.windowMs);
  if (hit.amount > 0) {
    counter.buckets.set(current, (counter.buckets.get(current) ?? 0) + hit.amount);
    counter.endMs = Math.max(counter.endMs, leavesAtMs(current, hit.windowMs));
  }
  return read(counter, hit, now);
}

function read(counter: MemoryCounter | undefined, ref: CounterRef, now: number): CounterState {
  if (ref.algorithm !== 'sliding') {
    const fixed = counter?.kind === 'fixed' ? counter : undefined;
    return { count: fixed?.count ?? 0, resetAtMs: windowOf(now, ref.windowMs).endMs };
  }
  const buckets = counter?.kind === 'sliding' ? counter.buckets : undefined;
  const oldest = oldestCounted(bucketOf(now, ref.windowMs));
  let count = 0;
  for (const [bucket, amount] of buckets ?? []) {
    if (bucket < oldest) buckets?.delete(bucket);
    else count += amount;
  }
  const leaving = leavingOf(buckets ?? [], ref.windowMs);
  return { count, resetAtMs: leaving[0]?.atMs ?? now, leaving };
}

/** The stored name of a sliding counter. */
export function slidingKey(key: string, windowMs: number): string {
  return `${key}:${windowMs}:s`;
}

function closedError(op: 'incr' | 'get'): StoreError {
  return new StoreError('store_closed', 'the memory store was closed', 'memory', op);
}
