import { createRequire } from 'node:module';
import type * as IORedis from 'ioredis';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { parseRedisUrl } from './url.js';

export { parseRedisUrl, RedisUrlError, type RedisNode, type RedisTarget } from './url.js';

/**
 * The Redis addresses both processes accept (`--redis-url` of `flowgate serve` and `flowgate filters`), read
 * the same way on both sides:
 *  - `redis://[user:pass@]host:port[/db]` or `rediss://…` (TLS): one Redis;
 *  - `redis+cluster://[user:pass@]host:port,host:port,…` (or `rediss+cluster://`): a Redis Cluster, from any of
 *    its nodes (the client learns the rest); the keys of one decision share a hash tag, so one script call
 *    stays in one slot;
 *  - `redis+sentinel://[user:pass@]host:port,host:port,…/MASTER` (or `rediss+sentinel://`): the master Sentinel
 *    names MASTER, followed through failovers.
 * A platform helper like src/tls: the control plane (rollout windows, lease, timeline) and the filter service
 * (counters, budgets, the answer cache) open their clients here.
 */

// ioredis is loaded the first time a client is opened: a control plane without --redis-url never holds it
// (its modules are ~0.4 MB of source kept in the heap for the process's life). It is CommonJS, so a
// synchronous require keeps openRedis synchronous.
const requireModule = createRequire(import.meta.url);
let ioredis: typeof IORedis | undefined;
function client(): typeof IORedis {
  ioredis ??= requireModule('ioredis') as typeof IORedis;
  return ioredis;
}

/** A client of one Redis, a Redis Cluster or a Sentinel-managed master: the commands Flowgate uses work on each. */
export type RedisClient = Redis | Cluster;

/**
 * Opens the client `url` names, with `options` for every connection it makes. A cluster client follows
 * MOVED/ASK after a failover by itself and retries only what was redirected or refused (which ran nowhere),
 * so a failover never runs a command twice; like a single client it never queues unless `options` say so.
 */
export function openRedis(url: string, options: RedisOptions): RedisClient {
  const target = parseRedisUrl(url);
  const { Cluster, Redis } = client();
  if (target.kind === 'single') return new Redis(url, options);
  const auth = { username: target.username, password: target.password, ...(target.tls && { tls: {} }) };
  if (target.kind === 'sentinel') return new Redis({ ...options, ...auth, sentinels: [...target.sentinels], name: target.masterName, db: target.db });
  return new Cluster([...target.nodes], {
    redisOptions: { ...options, ...auth },
    // ioredis files an auto-pipelined script call under the wrong slot and rejects the batch: one command, one slot.
    enableAutoPipelining: false,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    clusterRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1_000),
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    slotsRefreshTimeout: 1_000,
  });
}
