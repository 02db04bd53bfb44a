import { openRedis, type RedisClient } from '../redis/client.js';
import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import type { RolloutPhase } from '../ir/types.js';
import type { CheckResult, Decision } from './analyzer.js';

/**
 * Each rollout's timeline: one event per decision the lease holder wrote (start, every check, step, pause,
 * rollback, promotion, manual command), with the numbers each check measured on both versions. The console
 * charts it. Kept in memory, and in a Redis list when there is one, so that every replica's console shows
 * the same timeline whoever made the decisions.
 */

const log = logger('rollout-timeline');

/** The numbers of one version in one check. */
export interface VersionPoint {
  readonly version: string;
  readonly requests: number;
  /** Percent of 5xx (and no-response) answers; null without requests. */
  readonly errorRate: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

export interface RolloutEvent {
  readonly at: number;
  readonly model: string;
  readonly canaryVersion: string;
  readonly stableVersion: string;
  readonly decision: Decision['kind'];
  readonly phase: RolloutPhase;
  readonly step: number;
  readonly weight: number;
  readonly reason: string | undefined;
  readonly check: { readonly verdict: string; readonly summary: string; readonly canary: VersionPoint; readonly stable: VersionPoint } | undefined;
  /** The lease holder that decided. */
  readonly by: string;
}

/** The chartable form of a check. */
export function checkPoints(check: CheckResult, canaryVersion: string, stableVersion: string): RolloutEvent['check'] {
  const point = (version: string, w: CheckResult['canary']): VersionPoint => ({
    version,
    requests: w.requests,
    errorRate: w.requests === 0 ? null : Number(((100 * w.errors5xx) / w.requests).toFixed(3)),
    p50Ms: w.latencyP50Ms === null ? null : Number(w.latencyP50Ms.toFixed(2)),
    p99Ms: w.latencyP99Ms === null ? null : Number(w.latencyP99Ms.toFixed(2)),
  });
  return { verdict: check.verdict, summary: check.summary, canary: point(canaryVersion, check.canary), stable: point(stableVersion, check.stable) };
}

const MAX_EVENTS = 500;

export class RolloutTimeline {
  private readonly local = new Map<string, RolloutEvent[]>();
  private readonly redis: RedisClient | undefined;

  constructor(options: { redisUrl?: string | undefined; keyPrefix?: string } = {}) {
    if (options.redisUrl) {
      this.redis = openRedis(options.redisUrl, { maxRetriesPerRequest: 1, commandTimeout: 2000, enableOfflineQueue: false });
      this.redis.on('error', (err: Error) => log.debug({ err: errorMessage(err) }, 'timeline redis connection error'));
    }
    this.prefix = options.keyPrefix ?? 'flowgate:rollout:events:';
  }

  private readonly prefix: string;

  /** Appends an event (newest last). */
  async add(event: RolloutEvent): Promise<void> {
    const list = this.local.get(event.model) ?? [];
    list.push(event);
    if (list.length > MAX_EVENTS) list.splice(0, list.length - MAX_EVENTS);
    this.local.set(event.model, list);
    if (!this.redis) return;
    try {
      await this.redis.pipeline().rpush(this.prefix + event.model, JSON.stringify(event)).ltrim(this.prefix + event.model, -MAX_EVENTS, -1).exec();
    } catch (err) {
      log.warn({ err: errorMessage(err), model: event.model }, 'rollout event not shared through redis');
    }
  }

  /** A model's events, oldest first (from Redis when there is one, else this replica's). */
  async events(model: string): Promise<RolloutEvent[]> {
    if (this.redis) {
      try {
        const items = await this.redis.lrange(this.prefix + model, 0, -1);
        return items.map((text) => JSON.parse(text) as RolloutEvent);
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'rollout events read from this replica only');
      }
    }
    return [...(this.local.get(model) ?? [])];
  }

  close(): void {
    this.redis?.disconnect();
  }
}
