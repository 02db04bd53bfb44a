import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RedisAnswers } from '../../filters/llm/cache.js';
import { RateLimiter } from '../../filters/ratelimit/limiter.js';
import { RedisStore } from '../../filters/store/counters/redis.js';
import { parseRedisUrl, RedisUrlError } from '../../src/redis/client.js';
import { slotOf } from '../../src/redis/clock.js';
import { RedisLease } from '../../src/rollout/lease.js';
import { RedisTrafficWindows } from '../../src/traffic/redis-windows.js';
import { TestClock, counterValue } from '../filters/ratelimit/fixtures.js';
import { waitFor } from '../harness/process.js';
import { decisionsUnderLoad, expectEachCountedOnce, expectExactOnTwoReplicas, failoverRules } from './failover-load.js';
import { redisCli, startRedisCluster, type TestRedisCluster } from '../harness/redis.js';

/**
 * Every Redis user of Flowgate on a real Redis Cluster (3 masters, 3 replicas, started here): rate-limit
 * counters (one Lua call per decision, its keys on one slot by their hash tag) spread over the masters and
 * stay exact; a master killed mid-load makes decisions follow each model's failOpen until its replica takes
 * over, and no decision after it is counted twice; the control plane's traffic windows and rollout lease and
 * the answer cache work on the cluster too.
 */

let cluster: TestRedisCluster;
beforeAll(async () => {
  cluster = await startRedisCluster(3);
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

const rules = failoverRules(40);
const { models, names, consumers, failOpen } = rules;

async function keysPerMaster(): Promise<number[]> {
  return Promise.all((await cluster.masters()).map(async (port) => Number(await redisCli(port, ['dbsize']))));
}

describe('addresses', () => {
  test('single, cluster and sentinel forms; bad ones are refused without showing the password', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6379/2')).toMatchObject({ kind: 'single', tls: false });
    expect(parseRedisUrl('rediss+cluster://:s3cret@a:7000,b:7001,[::1]:7002')).toEqual({
      kind: 'cluster',
      nodes: [{ host: 'a', port: 7000 }, { host: 'b', port: 7001 }, { host: '::1', port: 7002 }],
      username: undefined,
      password: 's3cret',
      tls: true,
    });
    expect(parseRedisUrl('redis+sentinel://app:pw@s1:26379,s2/mymaster/3')).toMatchObject({ kind: 'sentinel', masterName: 'mymaster', db: 3, username: 'app', password: 'pw', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 6379 }] });
    expect(() => parseRedisUrl('http://x:6379')).toThrow(RedisUrlError);
    expect(() => parseRedisUrl('redis+cluster://:hunter2@a:99999')).toThrow(/'a:99999' is not host:port/);
    expect(() => parseRedisUrl('redis+cluster://:hunter2@a:99999')).not.toThrow(/hunter2/);
    expect(() => parseRedisUrl('redis+sentinel://s1:26379')).toThrow(/name the master/);
    expect(() => parseRedisUrl('redis+cluster://a:1/0')).toThrow(/no database number/);
  });
});

describe('rate-limit counters on the cluster', () => {
  test('two replicas enforce each limit exactly, with the counters spread over every master', async () => {
    await expectExactOnTwoReplicas(cluster.url, rules);
    const perMaster = await keysPerMaster();
    expect(perMaster).toHaveLength(3);
    expect(perMaster.every((n) => n > 0)).toBe(true);
  });

  test('a master killed mid-load: decisions follow failOpen until its replica takes over, then count once each', async () => {
    const clock = new TestClock();
    const store = await RedisStore.connect({ url: cluster.url, now: clock.now, keyPrefix: 'flowgate:rl:failover:', commandTimeoutMs: 300 });
    const limiter = new RateLimiter(models, consumers, { store, failOpen, now: clock.now });
    try {
      const { outcomes, stop } = decisionsUnderLoad(limiter, names);
      await waitFor('decisions under load', () => (outcomes.ok > 50 ? true : undefined));
      const [victim] = await cluster.masters();
      await cluster.kill(victim as number);
      await waitFor('decisions refused while the master is gone', () => (outcomes.closedOnError > 0 && outcomes.openOnError > 0 ? true : undefined), { timeoutMs: 20_000 });
      await cluster.healthy(30_000);
      const okAfterFailover = outcomes.ok;
      await waitFor('decisions from the cluster again', () => (outcomes.ok > okAfterFailover + 50 ? true : undefined), { timeoutMs: 20_000 });
      await stop();
      expect(await cluster.masters()).not.toContain(victim);

      // After the failover: every consumer's next N billing decisions raise its counter by exactly N.
      await expectEachCountedOnce(limiter, names);
    } finally {
      await store.close();
    }
  }, 90_000);
});

describe('a late admission on the cluster', () => {
  test("counts nothing on the key's master; the slot is found as Redis finds it; in time, it counts once", async () => {
    const clock = new TestClock();
    const keyPrefix = 'flowgate:rl:late:';
    const store = await RedisStore.connect({ url: cluster.url, now: clock.now, keyPrefix, commandTimeoutMs: 150 });
    const reader = await RedisStore.connect({ url: cluster.url, now: clock.now, keyPrefix, commandTimeoutMs: 5_000 });
    const hits = ['alice', 'bob', 'carol'].map((c) => ({ key: `${c}:chat`, windowMs: 60_000, tag: `c=${c}`, amount: 1, limit: 10 }));
    try {
      const [port] = await cluster.masters();
      for (const hit of hits) {
        const key = store.keyOf(hit, clock.ms);
        expect(slotOf(key)).toBe(Number(await redisCli(port as number, ['cluster', 'keyslot', key])));
      }
      const expired = await counterValue('flowgate_filter_store_late_total', { store: 'counters', outcome: 'expired' });
      await Promise.all((await cluster.masters()).map((p) => redisCli(p, ['client', 'pause', '600', 'ALL'])));
      const answers = await Promise.allSettled(hits.map((hit) => store.admit([hit])));
      expect(answers.map((a) => a.status)).toEqual(['rejected', 'rejected', 'rejected']);
      await waitFor('the late scripts to answer', async () => ((await counterValue('flowgate_filter_store_late_total', { store: 'counters', outcome: 'expired' })) >= expired + 3 ? true : undefined), { timeoutMs: 10_000 });
      expect((await Promise.all(hits.map((hit) => reader.get([hit])))).map(([s]) => s?.count)).toEqual([0, 0, 0]);
      await Promise.all(hits.map((hit) => store.admit([hit])));
      expect((await Promise.all(hits.map((hit) => reader.get([hit])))).map(([s]) => s?.count)).toEqual([1, 1, 1]);
    } finally {
      await store.close();
      await reader.close();
    }
  });
});

describe('the control plane and the answer cache on the cluster', () => {
  test('traffic windows summed over two replicas, one lease holder, cached answers', async () => {
    const a = new RedisTrafficWindows({ url: cluster.url, keyPrefix: 'test:tw:' });
    const b = new RedisTrafficWindows({ url: cluster.url, keyPrefix: 'test:tw:' });
    const leases = ['one', 'two'].map((holder) => new RedisLease({ url: cluster.url, holder, ttlMs: 2000, key: 'test:{lease}' }));
    const answers = new RedisAnswers(cluster.url, 'test:cache:');
    try {
      await Promise.all([a.ready(), b.ready()]);
      const now = Date.now();
      for (const [w, version] of [[a, '1'], [b, '1'], [a, '2'], [b, '3']] as const) for (let i = 0; i < 10; i++) w.record('m', version, { code: i < 2 ? 500 : 200, latencyMs: 5, firstByteMs: 1, cost: 0.001 });
      await Promise.all([a.flush(), b.flush()]);
      const w1 = await b.window('m', '1', now - 2000, Date.now() + 1);
      expect(w1).toMatchObject({ requests: 20, errors5xx: 4 });
      expect(w1.costPerRequest).toBeCloseTo(0.001, 9);
      expect((await a.window('m', '3', now - 2000, Date.now() + 1)).requests).toBe(10);

      for (const l of leases) l.start();
      await waitFor('one lease holder', () => (leases.filter((l) => l.generation() !== undefined).length === 1 ? true : undefined), { timeoutMs: 10_000 });

      await answers.set('k1', { version: '4', body: '{"ok":true}' }, 10_000);
      expect(await answers.get('k1')).toEqual({ version: '4', body: '{"ok":true}' });
      expect(await answers.get('k2')).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close(), ...leases.map((l) => l.stop()), answers.close()]);
    }
  });
});
