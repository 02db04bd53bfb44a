import { FlowgateError } from '../../../src/errors.js';

/**
 * Fixed-window counters behind the rate limiter and the token quotas. A counter is named by a key and a
 * window length; the store adds the window start (floor(now / windowMs) * windowMs, aligned to the epoch),
 * so every process that shares a store and a clock counts into the same window without coordination.
 */

/** One increment: `amount` added to the counter `key` in the current window of length `windowMs`. */
export interface CounterHit {
  readonly key: string;
  readonly windowMs: number;
  readonly amount: number;
}

/** A counter in its current window. */
export interface CounterState {
  /** The count after this call's increment (for `get`, the count so far; 0 when never counted). */
  readonly count: number;
  /** When the current window ends (epoch ms): the counter starts again from 0 then. */
  readonly resetAtMs: number;
}

export interface CounterStore {
  /** Adds every hit atomically with respect to other callers and answers the counts in the same order. */
  incr(items: readonly CounterHit[]): Promise<CounterState[]>;
  /** The current counts, in the order asked, without changing them. */
  get(items: readonly { readonly key: string; readonly windowMs: number }[]): Promise<CounterState[]>;
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

interface MemoryCounter {
  count: number;
  endMs: number;
}

/**
 * Counters in a Map, for one filter-service process (no sharing between replicas). Expired windows are swept
 * every `sweepIntervalMs`, and the number of live counters is bounded so a flood of distinct consumers cannot
 * grow the process without limit.
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
    for (const { key, windowMs, amount } of items) {
      const { startMs, endMs } = windowOf(now, windowMs);
      const name = windowKey(key, windowMs, startMs);
      let counter = this.counters.get(name);
      if (counter === undefined) {
        if (this.counters.size >= this.maxCounters) this.sweep();
        if (this.counters.size >= this.maxCounters) {
          return Promise.reject(new StoreError('store_full', `the memory store holds its maximum of ${this.maxCounters} counters; raise maxCounters or use Redis`, 'memory', 'incr'));
        }
        counter = { count: 0, endMs };
        this.counters.set(name, counter);
      }
      counter.count += amount;
      states.push({ count: counter.count, resetAtMs: endMs });
    }
    return Promise.resolve(states);
  }

  get(items: readonly { readonly key: string; readonly windowMs: number }[]): Promise<CounterState[]> {
    if (this.closed) return Promise.reject(closedError('get'));
    const now = this.now();
    return Promise.resolve(
      items.map(({ key, windowMs }) => {
        const { startMs, endMs } = windowOf(now, windowMs);
        return { count: this.counters.get(windowKey(key, windowMs, startMs))?.count ?? 0, resetAtMs: endMs };
      }),
    );
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
}

function closedError(op: 'incr' | 'get'): StoreError {
  return new StoreError('store_closed', 'the memory store was closed', 'memory', op);
}
