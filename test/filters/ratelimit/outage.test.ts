import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../filters/ratelimit/limiter.js';
import { TokenQuotas } from '../../../filters/ratelimit/quotas.js';
import { RedisStore } from '../../../filters/store/counters/redis.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { waitFor } from '../../harness/process.js';
import { TestClock, consumer, counterValue, model } from './fixtures.js';

// Redis as the shared store of several filter-service replicas, and what happens when it goes away.

let redis: TestRedis | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const models = [
  model('chat', { rateLimits: [{ requests: 5, per: 'minute' }], tokenQuotas: [{ tokens: 1000, per: 'hour' }], failOpen: true }),
  model('billing', { rateLimits: [{ requests: 5, per: 'minute' }], tokenQuotas: [{ tokens: 1000, per: 'hour' }], failOpen: false }),
];
const consumers = [consumer('alice')];
const failOpen = (name: string): boolean => models.find((m) => m.name === name)?.failOpen ?? false;

describe('two RateLimiters', () => {
  it('sharing one Redis enforce one limit together: 5 passes in all', async () => {
    const clock = new TestClock();
    const options = { url: (redis as TestRedis).url, now: clock.now, keyPrefix: 'flowgate:rl:shared-test:' };
    const stores = [await RedisStore.connect(options), await RedisStore.connect(options)];
    const limiters = stores.map((store) => new RateLimiter(models, consumers, { store, failOpen, now: clock.now }));
    try {
      const passed: boolean[] = [];
      for (let i = 0; i < 8; i++) passed.push((await (limiters[i % 2] as RateLimiter).check({ consumer: 'alice', model: 'chat' })).allowed);
      expect(passed).toEqual([true, true, true, true, true, false, false, false]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('on separate memory stores count separately (the reason replicas need Redis)', async () => {
    const clock = new TestClock();
    const limiters = [0, 1].map(() => new RateLimiter(models, consumers, { store: new MemoryStore({ now: clock.now }), failOpen, now: clock.now }));
    let passed = 0;
    for (let i = 0; i < 8; i++) if ((await (limiters[i % 2] as RateLimiter).check({ consumer: 'alice', model: 'chat' })).allowed) passed++;
    expect(passed).toBe(8);
  });
});

describe('a Redis outage', () => {
  it('fails open or closed per model, counts the errors, and recovers when Redis returns', async () => {
    const server = redis as TestRedis;
    const clock = new TestClock();
    const store = await RedisStore.connect({ url: server.url, now: clock.now, keyPrefix: 'flowgate:rl:outage-test:', commandTimeoutMs: 200 });
    const limiter = new RateLimiter(models, consumers, { store, failOpen, now: clock.now });
    const quotas = new TokenQuotas(models, consumers, { store, failOpen, now: clock.now });
    try {
      expect(await limiter.check({ consumer: 'alice', model: 'chat' })).toMatchObject({ allowed: true, storeError: false });
      const incrErrors = await counterValue('flowgate_filter_store_errors_total', { store: 'redis', op: 'incr' });
      const getErrors = await counterValue('flowgate_filter_store_errors_total', { store: 'redis', op: 'get' });

      await server.kill();

      const started = Date.now();
      const open = await limiter.check({ consumer: 'alice', model: 'chat' });
      // Nothing queues while Redis is away: the decision comes at once, not when Redis returns.
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(open).toEqual({ allowed: true, storeError: true, limits: [], tightest: undefined, headers: {} });
      const closed = await limiter.check({ consumer: 'alice', model: 'billing' });
      expect(closed).toMatchObject({ allowed: false, reason: 'store_unavailable', storeError: true, headers: {} });
      expect(await limiter.shouldRateLimit('flowgate', [{ entries: [{ key: 'consumer', value: 'alice' }, { key: 'model', value: 'billing' }] }], 1)).toMatchObject({
        overallCode: 'OVER_LIMIT',
        storeError: true,
      });
      expect(await counterValue('flowgate_filter_store_errors_total', { store: 'redis', op: 'incr' })).toBe(incrErrors + 3);

      expect(await quotas.check({ consumer: 'alice', model: 'chat' })).toMatchObject({ allowed: true, storeError: true });
      expect(await quotas.check({ consumer: 'alice', model: 'billing' })).toMatchObject({ allowed: false, reason: 'store_unavailable', storeError: true });
      await expect(quotas.charge({ consumer: 'alice', model: 'chat', usage: { input: 1, output: 1, total: 2 } })).resolves.toBeUndefined();
      expect(await counterValue('flowgate_filter_store_errors_total', { store: 'redis', op: 'get' })).toBe(getErrors + 2);
      expect(await counterValue('flowgate_filter_store_errors_total', { store: 'redis', op: 'incr' })).toBe(incrErrors + 4);

      await server.restart();

      // The client reconnects on its own; the restarted Redis is empty, so counting starts again.
      const back = await waitFor('decisions from Redis again', async () => {
        const d = await limiter.check({ consumer: 'alice', model: 'billing' });
        return d.storeError ? undefined : d;
      });
      expect(back).toMatchObject({ allowed: true, headers: { 'RateLimit-Remaining': '4' } });
      await quotas.charge({ consumer: 'alice', model: 'billing', usage: { input: 0, output: 400, total: 400 } });
      expect(await quotas.check({ consumer: 'alice', model: 'billing' })).toMatchObject({ allowed: true, storeError: false, tightest: { used: 400 } });
    } finally {
      await store.close();
    }
  });
});
