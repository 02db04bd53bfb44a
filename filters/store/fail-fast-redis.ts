import { errorMessage } from '../../src/errors.js';
import { openRedis, type RedisClient } from '../../src/redis/client.js';
import type { ThrottledWarning } from '../ratelimit/telemetry.js';

/**
 * A Redis client for the filter service's side stores (the answer cache, budgets): no offline queue and no
 * retries, so a call fails at once (or after `commandTimeoutMs`) while Redis is away, reconnecting in the
 * background; connection errors go to `warning`, throttled.
 */
export function failFastRedis(url: string, warning: ThrottledWarning, commandTimeoutMs = 200): RedisClient {
  const redis = openRedis(url, {
    commandTimeout: commandTimeoutMs,
    connectTimeout: 1_000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
  });
  redis.on('error', (err: unknown) => warning.warn({ err: errorMessage(err) }));
  return redis;
}
