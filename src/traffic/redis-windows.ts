import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import { openRedis, type RedisClient } from '../redis/client.js';
import type { TrafficWindowSource, VersionWindow } from './window-stats.js';
import { addSample, emptyBucket, mergeBucket, secondsOf, windowOf, type SecondBucket, type WindowSample } from './windows.js';

/**
 * Traffic windows shared by every control-plane replica through Redis. Each replica adds what its own
 * Envoys reported into one hash per (model, version, second), flushed in one pipeline a few times a second;
 * the lease holder reads the seconds of a window from every replica at once. A hash expires after the
 * retention period, so Redis holds only the recent past.
 *
 * Fields: n (requests), e5, e4, l<i> and t<i> (latency and first-byte histogram buckets, see windows.ts),
 * cm and cn (cost in millionths, and the requests that reported one). Keys are PREFIX{model:version}:second:
 * under Redis Cluster a version's seconds live in one slot, and a flush sends one pipeline per version.
 */

const log = logger('traffic-redis');

export interface RedisWindowsOptions {
  readonly url: string;
  readonly keyPrefix?: string;
  readonly retentionMs?: number;
  readonly flushMs?: number;
  readonly now?: () => number;
}

export class RedisTrafficWindows implements TrafficWindowSource {
  readonly kind = 'redis';
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private pending = new Map<string, SecondBucket>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private failures = 0;

  constructor(options: RedisWindowsOptions) {
    this.redis = openRedis(options.url, { maxRetriesPerRequest: 1, commandTimeout: 2000, enableOfflineQueue: false, lazyConnect: false });
    this.redis.on('error', (err: Error) => {
      if (this.failures++ % 100 === 0) log.warn({ err: errorMessage(err) }, 'redis traffic windows: connection failed');
    });
    this.prefix = options.keyPrefix ?? 'flowgate:tw:';
    this.retentionMs = options.retentionMs ?? 15 * 60_000;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? 250);
    this.timer.unref();
  }

  /** One version's seconds share a hash tag, so a window's read stays on one Redis Cluster node. */
  private key(model: string, version: string, second: number): string {
    return `${this.prefix}{${model}:${version}}:${second}`;
  }

  /** Counts one request locally; the next flush adds it in Redis. */
  record(model: string, version: string, sample: WindowSample): void {
    const key = this.key(model, version, Math.floor(this.now() / 1000));
    let bucket = this.pending.get(key);
    if (!bucket) {
      // Bounded: while Redis is down, at most this many unflushed seconds are kept.
      if (this.pending.size >= 10_000) return;
      bucket = emptyBucket();
      this.pending.set(key, bucket);
    }
    addSample(bucket, sample);
  }

  /** Writes what was counted since the last flush; resolves when Redis has it (or the attempt failed). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushOnce());
    return this.flushing;
  }

  /** Resolves once the connection to Redis is up. */
  ready(): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve) => this.redis.once('ready', () => resolve()));
  }

  private async flushOnce(): Promise<void> {
    // Before the connection is up (at start, after an outage) the counts wait here instead of being dropped.
    if (this.pending.size === 0 || this.redis.status !== 'ready') return;
    const batch = this.pending;
    this.pending = new Map();
    // One pipeline per version (its keys share a slot); on a single Redis they go out back to back anyway.
    const byVersion = new Map<string, ReturnType<RedisClient['pipeline']>>();
    for (const [key, b] of batch) {
      const tag = key.slice(0, key.indexOf('}') + 1);
      let pipeline = byVersion.get(tag);
      if (!pipeline) {
        pipeline = this.redis.pipeline();
        byVersion.set(tag, pipeline);
      }
      if (b.requests) pipeline.hincrby(key, 'n', b.requests);
      if (b.errors5xx) pipeline.hincrby(key, 'e5', b.errors5xx);
      if (b.errors4xx) pipeline.hincrby(key, 'e4', b.errors4xx);
      for (const [i, c] of b.latency) pipeline.hincrby(key, `l${i}`, c);
      for (const [i, c] of b.firstByte) pipeline.hincrby(key, `t${i}`, c);
      if (b.costed) pipeline.hincrby(key, 'cm', b.costMicros).hincrby(key, 'cn', b.costed);
      pipeline.pexpire(key, this.retentionMs);
    }
    try {
      for (const results of await Promise.all([...byVersion.values()].map((p) => p.exec()))) {
        const failed = results?.find(([err]) => err);
        if (failed?.[0]) throw failed[0];
      }
    } catch (err) {
      // A lost second of counts makes a window thinner, never wrong in kind: the check may come out inconclusive.
      if (this.failures++ % 20 === 0) log.warn({ err: errorMessage(err), seconds: batch.size }, 'redis traffic windows: flush failed; those counts are lost');
    }
  }

  /** The fleet's traffic of model/version in [fromMs, toMs), summed over every replica. Rejects when Redis does not answer. */
  async window(model: string, version: string, fromMs: number, toMs: number): Promise<VersionWindow> {
    const pipeline = this.redis.pipeline();
    for (const s of secondsOf(fromMs, toMs)) pipeline.hgetall(this.key(model, version, s));
    const results = (await pipeline.exec()) ?? [];
    const sum = emptyBucket();
    for (const [err, value] of results) {
      if (err) throw err;
      mergeBucket(sum, bucketOfHash(value as Record<string, string>));
    }
    return windowOf(sum);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.redis.disconnect();
  }
}

/** A Redis hash of one second back into a bucket. */
export function bucketOfHash(hash: Readonly<Record<string, string>>): SecondBucket {
  const b = emptyBucket();
  for (const [field, text] of Object.entries(hash)) {
    const n = Number(text);
    if (!Number.isFinite(n)) continue;
    if (field === 'n') b.requests = n;
    else if (field === 'e5') b.errors5xx = n;
    else if (field === 'e4') b.errors4xx = n;
    else if (field === 'cm') b.costMicros = n;
    else if (field === 'cn') b.costed = n;
    else if (field[0] === 'l') b.latency.set(Number(field.slice(1)), n);
    else if (field[0] === 't') b.firstByte.set(Number(field.slice(1)), n);
  }
  return b;
}
