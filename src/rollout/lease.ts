import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { openRedis, type RedisClient } from '../redis/client.js';
import { errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';

/**
 * The rollout lease: one control-plane replica at a time decides rollouts. In Redis, a key holding
 * "<holder> <generation>" with an expiry, renewed at a third of it; the generation comes from a counter
 * incremented at each acquisition (and never below the clock in ms), so a newer holder always has a higher one. Every state the holder writes
 * to MLflow carries its generation, and a holder that reads a higher one there stops writing: a replica
 * that was paused past its lease (GC, SIGSTOP, a partition) cannot overwrite its successor's decisions.
 * Without Redis (one replica) the lease is always held.
 */

export interface RolloutLease {
  /** This replica's name in the lease. */
  readonly holder: string;
  /** The generation while held with time to spare, else undefined. */
  generation(): number | undefined;
  /** Who holds it now, as last seen (for the console and status). */
  currentHolder(): string | undefined;
  start(): void;
  stop(): Promise<void>;
}

/** A holder id unique across replicas and restarts: host, pid and a random suffix. */
export function holderId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** The lease of a single replica: always held, with a generation from the clock so a restart counts higher. */
export class LocalLease implements RolloutLease {
  private readonly gen = Date.now();
  constructor(readonly holder: string = holderId()) {}
  generation(): number {
    return this.gen;
  }
  currentHolder(): string {
    return this.holder;
  }
  start(): void {}
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

// KEYS[1] lease, KEYS[2] generation counter; ARGV[1] holder, ARGV[2] ttl ms, ARGV[3] the caller's clock in
// ms. Returns the new generation or 0. The clock is a floor, so generations keep growing across a Redis that
// lost its data and past the clock-based ones a single replica (LocalLease) wrote before Redis was added.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local g = redis.call('INCR', KEYS[2])
if g < tonumber(ARGV[3]) then g = tonumber(ARGV[3]) redis.call('SET', KEYS[2], g) end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. g, 'PX', ARGV[2])
return g`;
// KEYS[1] lease; ARGV[1] "holder generation", ARGV[2] ttl ms. 1 when renewed, 0 when it is someone else's.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

interface LeaseScripts {
  flowgateLeaseAcquire(lease: string, counter: string, holder: string, ttl: number, now: number): Promise<number>;
  flowgateLeaseRenew(lease: string, value: string, ttl: number): Promise<number>;
  flowgateLeaseRelease(lease: string, value: string): Promise<number>;
}

export interface RedisLeaseOptions {
  readonly url: string;
  readonly ttlMs?: number;
  /** The lease's key; its generation counter is KEY:generation. Give it a hash tag ({…}) for Redis Cluster: both keys must share a slot. */
  readonly key?: string;
  readonly holder?: string;
  readonly onChange?: (held: boolean, generation: number | undefined) => void;
  readonly log?: Logger;
}

export class RedisLease implements RolloutLease {
  readonly holder: string;
  private readonly redis: RedisClient & LeaseScripts;
  private readonly ttlMs: number;
  private readonly key: string;
  private readonly log: Logger;
  private held: { generation: number; until: number } | undefined;
  private seenHolder: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly options: RedisLeaseOptions) {
    this.holder = options.holder ?? holderId();
    this.ttlMs = options.ttlMs ?? 10_000;
    // The hash tag keeps the lease and its generation counter in one Redis Cluster slot (one script touches both).
    this.key = options.key ?? 'flowgate:rollout:{lease}';
    this.log = options.log ?? logger('rollout-lease');
    const redis = openRedis(options.url, { maxRetriesPerRequest: 1, commandTimeout: Math.max(200, Math.floor(this.ttlMs / 4)), enableOfflineQueue: false });
    redis.on('error', (err: Error) => this.log.debug({ err: errorMessage(err) }, 'lease redis connection error'));
    redis.defineCommand('flowgateLeaseAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand('flowgateLeaseRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('flowgateLeaseRelease', { numberOfKeys: 1, lua: RELEASE });
    this.redis = redis as RedisClient & LeaseScripts;
  }

  generation(): number | undefined {
    // A third of the ttl to spare: a write that starts now finishes before anyone else can hold the lease.
    if (this.held && Date.now() < this.held.until - this.ttlMs / 3) return this.held.generation;
    return undefined;
  }

  currentHolder(): string | undefined {
    return this.held ? this.holder : this.seenHolder;
  }

  start(): void {
    const tick = (): void => {
      this.running = this.running.then(() => this.attempt());
      this.timer = setTimeout(tick, Math.max(100, Math.floor(this.ttlMs / 3)));
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.running;
    if (this.held) {
      const value = `${this.holder} ${this.held.generation}`;
      this.set(undefined, 'released');
      // Released at once, so the next replica need not wait for the expiry.
      await this.redis.flowgateLeaseRelease(this.key, value).catch(() => 0);
    }
    this.redis.disconnect();
  }

  private async attempt(): Promise<void> {
    const sentAt = Date.now();
    try {
      if (this.held) {
        const renewed = await this.redis.flowgateLeaseRenew(this.key, `${this.holder} ${this.held.generation}`, this.ttlMs);
        if (renewed === 1) this.held = { generation: this.held.generation, until: sentAt + this.ttlMs };
        else this.set(undefined, 'the lease was taken over');
        return;
      }
      const generation = Number(await this.redis.flowgateLeaseAcquire(this.key, `${this.key}:generation`, this.holder, this.ttlMs, Date.now()));
      if (generation > 0) {
        this.set({ generation, until: sentAt + this.ttlMs });
      } else {
        const value = await this.redis.get(this.key);
        this.seenHolder = value?.split(' ')[0];
      }
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'lease attempt failed');
      // Unreachable Redis: the lease runs out on its own; until then the holder may still decide.
      if (this.held && Date.now() >= this.held.until) this.set(undefined, `redis unreachable: ${errorMessage(err)}`);
    }
  }

  private set(next: { generation: number; until: number } | undefined, why?: string): void {
    const was = this.held;
    this.held = next;
    if (next && !was) {
      this.seenHolder = this.holder;
      this.log.info({ holder: this.holder, generation: next.generation }, 'rollout lease acquired: this replica decides rollouts');
      this.options.onChange?.(true, next.generation);
    } else if (!next && was) {
      this.log[why === 'released' ? 'info' : 'warn']({ holder: this.holder, generation: was.generation, why }, why === 'released' ? 'rollout lease released' : 'rollout lease lost');
      this.options.onChange?.(false, undefined);
    }
  }
}
