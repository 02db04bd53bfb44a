import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { RateLimiter } from '../../filters/ratelimit/limiter.js';
import { TokenQuotas } from '../../filters/ratelimit/quotas.js';
import { RedisStore } from '../../filters/store/counters/redis.js';
import { consumer, model } from '../filters/ratelimit/fixtures.js';
import { startRedisCluster, type TestRedisCluster } from '../harness/redis.js';

/**
 * Counters on a real Redis Cluster of 3 masters (no replicas): every key of one decision carries the
 * consumer's hash tag, so the one script call of a decision runs in one slot, on one master, and the
 * decisions of many consumers spread over all three.
 */

let cluster: TestRedisCluster;
let store: RedisStore;

const CONSUMERS = 30;
const LIMIT = 4;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  store = await RedisStore.connect({ url: cluster.url, connectTimeoutMs: 10_000, commandTimeoutMs: 1_000 });
}, 60_000);

afterAll(async () => {
  await store?.close();
  await cluster?.stop();
});

/** Every key on one master: KEYS on each node (a test-sized key space). */
async function keysByNode(): Promise<string[][]> {
  return (await cluster.masters()).map((port) => execFileSync('redis-cli', ['-p', String(port), '--raw', 'keys', 'flowgate:rl:*'], { encoding: 'utf8' }).split('\n').filter((k) => k !== ''));
}

test('a limit of each of 30 consumers holds exactly, with fixed and sliding windows, across 3 masters', async () => {
  const names = Array.from({ length: CONSUMERS }, (_, i) => `consumer-${i}`);
  const limiter = new RateLimiter(
    [model('chat', { rateLimits: [{ requests: LIMIT, per: 'minute', algorithm: 'sliding' }] })],
    names.map((n) => consumer(n, { rateLimits: [{ requests: LIMIT + 1, per: 'hour', algorithm: 'fixed', model: 'chat' }] })),
    { store, failOpen: () => false },
  );
  const results = await Promise.all(names.map(async (name) => {
    const allowed: boolean[] = [];
    for (let i = 0; i < LIMIT + 2; i++) allowed.push((await limiter.check({ consumer: name, model: 'chat' })).allowed);
    return allowed;
  }));
  for (const allowed of results) expect(allowed).toEqual([...Array<boolean>(LIMIT).fill(true), false, false]);
  const byNode = await keysByNode();
  // Both counters of a consumer (sliding and fixed) are on one master; the consumers are on all three.
  for (const name of names) {
    const holders = byNode.filter((keys) => keys.some((k) => k.includes(`{c=${name}}`)));
    expect(holders).toHaveLength(1);
    expect(holders[0]?.filter((k) => k.includes(`{c=${name}}`))).toHaveLength(2);
  }
  expect(byNode.every((keys) => keys.length > 0)).toBe(true);
});

test('token quotas charge and refuse on the cluster too', async () => {
  const quotas = new TokenQuotas([model('chat')], [consumer('q', { tokenQuotas: [{ tokens: 100, per: 'hour', model: 'chat' }] })], { store, failOpen: () => false });
  expect((await quotas.check({ consumer: 'q', model: 'chat' })).allowed).toBe(true);
  await quotas.charge({ consumer: 'q', model: 'chat', usage: { input: 60, output: 60, total: 120 } });
  expect((await quotas.check({ consumer: 'q', model: 'chat' })).allowed).toBe(false);
});
