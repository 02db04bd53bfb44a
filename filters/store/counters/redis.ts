import { Redis, type RedisOptions } from 'ioredis';
import { openRedis, type RedisClient } from '../../../src/redis/client.js';
import { monotonicMs, RedisClock } from '../../../src/redis/clock.js';
import { answerWithin } from '../../../src/redis/deadline.js';
import { errorMessage } from '../../../src/errors.js';
import { COUNTER_SCRIPT } from './redis-script.js';
import { leavingOf, SLIDING_BUCKETS } from './sliding.js';
import { slidingKey, StoreError, windowKey, windowOf, type Admission, type CounterHit, type CounterRef, type CounterState, type CounterStore, type LimitedHit, type StoreErrorCode } from './store.js';
import { ThrottledWarning } from '../../ratelimit/telemetry.js';
import { lateStoreCallsTotal, scriptBudgetMs } from '../late-calls.js';

/**
 * Counters in Redis, shared by every filter-service replica. One call is one round trip: one Lua script
 * (redis-script.ts) reads, adds or admits every counter of the call and sets their expiry atomically. Every
 * call of one event-loop tick is written together (ioredis auto-pipelining). Every
 * key of one call carries its decision's hash tag (`{c=consumer}`), so under Redis Cluster they share a slot
 * and the script may touch them all. The client never queues: while Redis is unreachable each call fails at
 * once (or after commandTimeoutMs), so a Redis outage costs a decision, not a stalled request.
 *
 * A decision answered without Redis (timed out: refused, or let through by failOpen) must not use up the
 * caller's limit when Redis gets to it later. Every admit carries a deadline in the Redis server's clock
 * (RedisClock): a script that starts past it counts nothing. One that started in time but whose reply came
 * after the answer is taken back at once (a 'refund' of what it counted). Charges of real usage (incr) are
 * kept however late: those tokens were spent.
 */

export interface RedisStoreOptions {
  /** redis://[user:pass@]host:port[/db], redis+cluster://host:port,… or redis+sentinel://host:port,…/MASTER (src/redis/client.ts); or host and port. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  /**
   * Redis Cluster: its nodes (any of them; the client discovers the rest). Every key of one decision carries
   * the decision's hash tag, so each script call runs in one slot on one master. Instead of url/host/port.
   */
  readonly cluster?: readonly { readonly host: string; readonly port: number }[];
  /** Prepended to every key, so Flowgate can share a Redis with others; no braces (they would become the hash tag). */
  readonly keyPrefix?: string;
  /** A call not answered in this time fails (and the model's failOpen decides). */
  readonly commandTimeoutMs?: number;
  /** How long a (re)connection attempt may take. */
  readonly connectTimeoutMs?: number;
  /** Kept past the window end, so a slightly slow clock on another replica still finds the counter. */
  readonly expirySlackMs?: number;
  /** The clock; tests move it to cross windows. */
  readonly now?: () => number;
}

interface ScriptedRedis {
  flowgateCounters(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<unknown>;
}

type Mode = 'incr' | 'get' | 'admit' | 'refund';
type Item = CounterRef & { readonly amount?: number; readonly limit?: number };

const connectionWarning = new ThrottledWarning('redis counter store connection failed');
const refundWarning = new ThrottledWarning('redis counter store could not give back a late admission');

/** The script's first reply value when it started past its deadline and counted nothing. */
const EXPIRED = -1;

export class RedisStore implements CounterStore {
  readonly kind = 'redis' as const;
  private readonly redis: RedisClient;
  private readonly keyPrefix: string;
  private readonly expirySlackMs: number;
  private readonly connectTimeoutMs: number;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly clock: RedisClock;

  constructor(options: RedisStoreOptions) {
    this.keyPrefix = options.keyPrefix ?? 'flowgate:rl:';
    if (/[{}]/.test(this.keyPrefix)) throw new RangeError(`the Redis key prefix may not contain braces (got ${this.keyPrefix}): they would become every key's cluster hash tag`);
    this.expirySlackMs = options.expirySlackMs ?? 5_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1_000;
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.commandTimeoutMs ?? 100;
    const clientOptions: RedisOptions = {
      // No commandTimeout: each call's limit is timeoutMs (answerWithin, which still sees late replies); a
      // client-side one would only drop the late reply (the command stays queued until Redis answers or the
      // connection closes either way) and cost a second timer per call.
      connectTimeout: this.connectTimeoutMs,
      // Fail fast while disconnected: nothing waits in a queue for a Redis that may take minutes to return.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // Keep trying to reconnect, quickly at first, so decisions come back soon after Redis does.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
      lazyConnect: false,
      // Every call made in one tick of the event loop goes out in one write (one syscall, one packet)
      // instead of one write each: under load the script calls of concurrent decisions share round trips.
      enableAutoPipelining: true,
    };
    this.redis =
      options.url !== undefined
        ? openRedis(options.url, clientOptions)
        : new Redis({ ...clientOptions, host: options.host ?? '127.0.0.1', port: options.port ?? 6379 });
    this.redis.defineCommand('flowgateCounters', { lua: COUNTER_SCRIPT });
    this.clock = new RedisClock(this.redis);
    // Without a listener ioredis prints every reconnection failure; these go to the throttled log instead.
    this.redis.on('error', (err: unknown) => connectionWarning.warn({ err: errorMessage(err) }));
  }

  /** A store whose connection is ready; fails with a StoreError when Redis does not answer within connectTimeoutMs. */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(options);
    try {
      await store.ready();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Resolves once the connection is ready and Redis's clock read (calls made before then fail: nothing is queued). */
  async ready(): Promise<void> {
    await this.connected();
    if (!this.clock.known) await this.clock.read();
  }

  private async connected(): Promise<void> {
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new StoreError('store_unavailable', `redis did not become ready within ${this.connectTimeoutMs}ms`, 'redis', 'connect'));
      }, this.connectTimeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }

  async incr(items: readonly CounterHit[]): Promise<CounterState[]> {
    return (await this.run('incr', items)).states;
  }

  async get(items: readonly CounterRef[]): Promise<CounterState[]> {
    return (await this.run('get', items)).states;
  }

  admit(items: readonly LimitedHit[]): Promise<Admission> {
    return this.run('admit', items);
  }

  /** The stored name of a counter now: prefix, hash tag, key, window (and a fixed window's start). */
  keyOf(ref: CounterRef, now: number): string {
    const tag = ref.tag === undefined ? '' : `{${ref.tag}}:`;
    const name = ref.algorithm === 'sliding' ? slidingKey(ref.key, ref.windowMs) : windowKey(ref.key, ref.windowMs, windowOf(now, ref.windowMs).startMs);
    return this.keyPrefix + tag + name;
  }

  private async run(mode: Exclude<Mode, 'refund'>, items: readonly Item[]): Promise<Admission> {
    if (items.length === 0) return { admitted: true, states: [] };
    const issuedAt = monotonicMs();
    const now = this.now();
    const keys = items.map((item) => this.keyOf(item, now));
    // Only an admission is refused when late: its caller decides on the reply, and has moved on without it.
    const deadline = mode === 'admit' ? (this.clock.deadline(issuedAt, scriptBudgetMs(this.timeoutMs), keys[0] as string) ?? 0) : 0;
    const op = mode === 'get' ? 'get' : 'incr';
    let reply: unknown;
    try {
      reply = await answerWithin(
        this.script(mode, now, deadline, keys, items),
        this.timeoutMs,
        () => new StoreError('store_timeout', `redis ${op} failed: no answer within ${this.timeoutMs}ms`, 'redis', op),
        (late) => {
          if (mode === 'admit') this.giveBack(late, now, keys, items);
        },
      );
    } catch (err) {
      throw err instanceof StoreError ? err : storeError(op, err);
    }
    const timed = deadline > 0 ? 1 : 0;
    if (timed === 1 && Array.isArray(reply)) this.clock.observe(keys[0] as string, Number(reply[reply.length - 1]), monotonicMs());
    if (Array.isArray(reply) && reply.length === 2 && Number(reply[0]) === EXPIRED) {
      lateStoreCallsTotal.inc({ store: 'counters', outcome: 'expired' });
      throw new StoreError('store_timeout', `redis ${op} failed: the counter script started after its deadline (${this.timeoutMs}ms after the call), so nothing was counted`, 'redis', op);
    }
    if (!Array.isArray(reply) || reply.length !== keys.length + 1 + timed) {
      throw new StoreError('store_reply', `redis answered the counter script with ${describe(reply)}; expected ${keys.length + 1 + timed}`, 'redis', op);
    }
    const states = items.map((item, i): CounterState => {
      const entry = reply[i + 1] as unknown[];
      const count = Number(entry[0]);
      if (item.algorithm !== 'sliding') return { count, resetAtMs: windowOf(now, item.windowMs).endMs };
      const buckets: [number, number][] = [];
      for (let j = 1; j + 1 < entry.length; j += 2) buckets.push([Number(entry[j]), Number(entry[j + 1])]);
      const leaving = leavingOf(buckets, item.windowMs);
      return { count, resetAtMs: leaving[0]?.atMs ?? now, leaving };
    });
    return { admitted: Number(reply[0]) === 1, states };
  }

  private script(mode: Mode, now: number, deadline: number, keys: readonly string[], items: readonly Item[]): Promise<unknown> {
    const args: (string | number)[] = [mode, now, SLIDING_BUCKETS, this.expirySlackMs, deadline];
    for (const item of items) args.push(item.algorithm === 'sliding' ? 's' : 'f', item.windowMs, Math.trunc(item.amount ?? 0), Math.trunc(item.limit ?? 0));
    return (this.redis as unknown as ScriptedRedis).flowgateCounters(keys.length, ...keys, ...args);
  }

  /**
   * An admission answered (as a timeout) before its reply came: what the script counted goes back. Fixed
   * counters were counted whatever the outcome, sliding ones only when it admitted.
   */
  private giveBack(reply: unknown, now: number, keys: readonly string[], items: readonly Item[]): void {
    const first = Array.isArray(reply) ? Number(reply[0]) : EXPIRED;
    if (first === EXPIRED) {
      lateStoreCallsTotal.inc({ store: 'counters', outcome: 'expired' });
      return;
    }
    const counted = items.map((item, i) => ({ item, key: keys[i] as string })).filter(({ item }) => item.algorithm !== 'sliding' || first === 1);
    lateStoreCallsTotal.inc({ store: 'counters', outcome: 'refunded' });
    if (counted.length === 0) return;
    this.script(
      'refund',
      now,
      0,
      counted.map((c) => c.key),
      counted.map((c) => c.item),
    ).catch((err: unknown) => refundWarning.warn({ err: errorMessage(err) }));
  }

  async close(): Promise<void> {
    this.clock.close();
    if (this.redis.status === 'end') return;
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    try {
      await this.redis.quit();
    } catch {
      // The connection is going away either way; quit only waits for replies in flight.
      this.redis.disconnect();
    }
  }
}

function storeError(op: 'incr' | 'get', err: unknown): StoreError {
  const message = errorMessage(err);
  let code: StoreErrorCode = 'store_unavailable';
  if (/timed out/i.test(message)) code = 'store_timeout';
  else if (err instanceof Error && err.name === 'ReplyError') code = 'store_reply';
  return new StoreError(code, `redis ${op} failed: ${message}`, 'redis', op, { cause: err });
}

function describe(value: unknown): string {
  return Array.isArray(value) ? `${value.length} values` : typeof value;
}
