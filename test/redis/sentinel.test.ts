import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RedisAnswers } from '../../filters/llm/cache.js';
import { RateLimiter } from '../../filters/ratelimit/limiter.js';
import { RedisStore } from '../../filters/store/counters/redis.js';
import { RedisLease } from '../../src/rollout/lease.js';
import { RedisTrafficWindows } from '../../src/traffic/redis-windows.js';
import { TestClock } from '../filters/ratelimit/fixtures.js';
import { waitFor } from '../harness/process.js';
import { decisionsUnderLoad, expectEachCountedOnce, expectExactOnTwoReplicas, failoverRules } from './failover-load.js';
import { redisCli, startRedisSentinel, type TestRedisSentinel } from '../harness/redis.js';

/**
 * Flowgate's Redis users behind real Sentinels (one master, one replica, three Sentinels, started here),
 * addressed as `redis+sentinel://S1,S2,S3/MASTER`: counters are exact; the master killed mid-load makes
 * decisions follow each model's failOpen until the Sentinels promote the replica, the clients find the new
 * master by themselves, and no decision after it is counted twice; the control plane's windows and lease
 * and the answer cache work through Sentinel too.
 */

let sentinel: TestRedisSentinel;
beforeAll(async () => {
  sentinel = await startRedisSentinel('flowgate-test');
}, 60_000);
afterAll(async () => {
  await sentinel?.stop();
});

const rules = failoverRules(20);
const { models, names, consumers, failOpen } = rules;

describe('through Sentinel', () => {
  test('two replicas of the filter service enforce each limit exactly on the master Sentinel names', async () => {
    await expectExactOnTwoReplicas(sentinel.url, rules);
    // The counters are on the master the Sentinels name, and nowhere else is written.
    const master = await sentinel.master();
    expect(master).toBe(sentinel.ports[0]);
    expect(Number(await redisCli(master, ['dbsize']))).toBeGreaterThan(0);
  });

  test('the master killed mid-load: failOpen decides until the replica is promoted, then each decision counts once', async () => {
    const clock = new TestClock();
    const store = await RedisStore.connect({ url: sentinel.url, now: clock.now, keyPrefix: 'flowgate:rl:failover:', commandTimeoutMs: 300 });
    const limiter = new RateLimiter(models, consumers, { store, failOpen, now: clock.now });
    try {
      const { outcomes, stop } = decisionsUnderLoad(limiter, names);
      await waitFor('decisions under load', () => (outcomes.ok > 50 ? true : undefined));
      const victim = await sentinel.master();
      await sentinel.replicated();
      await sentinel.kill(victim);
      await waitFor('decisions refused while the master is gone', () => (outcomes.closedOnError > 0 && outcomes.openOnError > 0 ? true : undefined), { timeoutMs: 20_000 });
      await waitFor('the Sentinels to promote the replica', async () => ((await sentinel.master()) !== victim ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
      const okAfterFailover = outcomes.ok;
      await waitFor('decisions from the new master', () => (outcomes.ok > okAfterFailover + 50 ? true : undefined), { timeoutMs: 30_000 });
      await stop();
      expect(await sentinel.master()).toBe(sentinel.ports[1]);

      await expectEachCountedOnce(limiter, names);
    } finally {
      await store.close();
    }
  }, 90_000);

  test('the control plane and the answer cache on the promoted master', async () => {
    const a = new RedisTrafficWindows({ url: sentinel.url, keyPrefix: 'test:tw:' });
    const b = new RedisTrafficWindows({ url: sentinel.url, keyPrefix: 'test:tw:' });
    const leases = ['one', 'two'].map((holder) => new RedisLease({ url: sentinel.url, holder, ttlMs: 2000, key: 'test:{lease}' }));
    const answers = new RedisAnswers(sentinel.url, 'test:cache:');
    try {
      await Promise.all([a.ready(), b.ready()]);
      const now = Date.now();
      for (const w of [a, b]) for (let i = 0; i < 10; i++) w.record('m', '1', { code: i < 3 ? 500 : 200, latencyMs: 5, firstByteMs: 1, cost: 0.002 });
      await Promise.all([a.flush(), b.flush()]);
      const window = await b.window('m', '1', now - 2000, Date.now() + 1);
      expect(window).toMatchObject({ requests: 20, errors5xx: 6 });
      expect(window.costPerRequest).toBeCloseTo(0.002, 9);

      for (const l of leases) l.start();
      await waitFor('one lease holder', () => (leases.filter((l) => l.generation() !== undefined).length === 1 ? true : undefined), { timeoutMs: 10_000 });

      await answers.set('k1', { version: '7', body: '{"ok":true}' }, 10_000);
      expect(await answers.get('k1')).toEqual({ version: '7', body: '{"ok":true}' });
      expect(Number(await redisCli(await sentinel.master(), ['exists', 'test:cache:k1']))).toBe(1);
    } finally {
      await Promise.all([a.close(), b.close(), ...leases.map((l) => l.stop()), answers.close()]);
    }
  });
});
