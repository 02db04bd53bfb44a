import { Redis, type RedisOptions } from 'ioredis';
import { errorMessage } from '../../../src/errors.js';
import { StoreError, windowKey, windowOf, type CounterHit, type CounterState, type CounterStore, type StoreErrorCode } from './store.js';
import { ThrottledWarning } from '../../ratelimit/telemetry.js';

/**
 * Counters in Redis, shared by every filter-service replica. One call is one round trip: a Lua script adds
 * every hit and sets its expiry atomically. The client never queues: while Redis is unreachable each call
 * fails at once (or after commandTimeoutMs), so a Redis outage costs a decision, not a stalled request.
 */

export interface RedisStoreOptions {
  /** redis://[user:pass@]host:port[/db]; or host and port. */
  readonly url?: string;
  readonly host?: string;
  readonly port?: number;
  /** Prepended to every key, so Flowgate can share a Redis with others. */
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

// KEYS[i] is a counter; ARGV[2i-1] its increment and ARGV[2i] its time to live in ms. A relative expiry (not
// PEXPIREAT) keeps the TTL right when the Redis host's clock and ours disagree.
const COUNT_SCRIPT = `
local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
end
return counts
`;

interface ScriptedRedis {
  flowgateCount(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<unknown>;
}

const connectionWarning = new ThrottledWarning('redis counter store connection failed');

export class RedisStore implements CounterStore {
  readonly kind = 'redis' as const;
  private readonly redis: Redis;
  private readonly keyPrefix: string;
  private readonly expirySlackMs: number;
  private readonly connectTimeoutMs: number;
  private readonly now: () => number;

  constructor(options: RedisStoreOptions) {
    this.keyPrefix = options.keyPrefix ?? 'flowgate:rl:';
    this.expirySlackMs = options.expirySlackMs ?? 5_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1_000;
    this.now = options.now ?? Date.now;
    const clientOptions: RedisOptions = {
      commandTimeout: options.commandTimeoutMs ?? 100,
      connectTimeout: this.connectTimeoutMs,
      // Fail fast while disconnected: nothing waits in a queue for a Redis that may take minutes to return.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // Keep trying to reconnect, quickly at first, so decisions come back soon after Redis does.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
      lazyConnect: false,
    };
    this.redis =
      options.url !== undefined
        ? new Redis(options.url, clientOptions)
        : new Redis({ ...clientOptions, host: options.host ?? '127.0.0.1', port: options.port ?? 6379 });
    this.redis.defineCommand('flowgateCount', { lua: COUNT_SCRIPT });
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

  /** Resolves once the connection is ready (calls made before then fail: nothing is queued). */
  async ready(): Promise<void> {
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
    if (items.length === 0) return [];
    const now = this.now();
    const keys: string[] = [];
    const args: (string | number)[] = [];
    const resets: number[] = [];
    for (const { key, windowMs, amount } of items) {
      const { startMs, endMs } = windowOf(now, windowMs);
      keys.push(this.keyPrefix + windowKey(key, windowMs, startMs));
      args.push(Math.trunc(amount), endMs - now + this.expirySlackMs);
      resets.push(endMs);
    }
    let reply: unknown;
    try {
      reply = await (this.redis as unknown as ScriptedRedis).flowgateCount(keys.length, ...keys, ...args);
    } catch (err) {
      throw storeError('incr', err);
    }
    if (!Array.isArray(reply) || reply.length !== keys.length) {
      throw new StoreError('store_reply', `redis answered the count script with ${describe(reply)}; expected ${keys.length} counts`, 'redis', 'incr');
    }
    return reply.map((count, i) => ({ count: Number(count), resetAtMs: resets[i] as number }));
  }

  async get(items: readonly { readonly key: string; readonly windowMs: number }[]): Promise<CounterState[]> {
    if (items.length === 0) return [];
    const now = this.now();
    const windows = items.map(({ key, windowMs }) => ({ key, windowMs, ...windowOf(now, windowMs) }));
    let reply: (string | null)[];
    try {
      reply = await this.redis.mget(windows.map((w) => this.keyPrefix + windowKey(w.key, w.windowMs, w.startMs)));
    } catch (err) {
      throw storeError('get', err);
    }
    return windows.map((w, i) => ({ count: Number(reply[i] ?? 0), resetAtMs: w.endMs }));
  }

  async close(): Promise<void> {
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
