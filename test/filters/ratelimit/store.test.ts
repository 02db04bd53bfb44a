import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../../../filters/store/counters/redis.js';
import { MemoryStore, StoreError, windowOf, type CounterStore } from '../../../filters/store/counters/store.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { TestClock, storeFactories } from './fixtures.js';

let redis: TestRedis | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('windowOf', () => {
  it('aligns windows to the epoch', () => {
    expect(windowOf(125_500, 60_000)).toEqual({ startMs: 120_000, endMs: 180_000 });
    expect(windowOf(120_000, 60_000)).toEqual({ startMs: 120_000, endMs: 180_000 });
    expect(() => windowOf(0, 0)).toThrow(RangeError);
  });
});

describe.each(storeFactories(() => (redis as TestRedis).url))('the $kind counter store', (factory) => {
  let store: CounterStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  it('adds every hit and answers the counts in order, with the end of each window', async () => {
    const clock = new TestClock();
    store = await factory.make(clock.now);
    expect(store.kind).toBe(factory.kind);
    const minuteEnd = windowOf(clock.ms, 60_000).endMs;
    const hourEnd = windowOf(clock.ms, 3_600_000).endMs;
    expect(await store.incr([{ key: 'a', windowMs: 60_000, amount: 1 }, { key: 'b', windowMs: 60_000, amount: 5 }, { key: 'a', windowMs: 3_600_000, amount: 2 }])).toEqual([
      { count: 1, resetAtMs: minuteEnd },
      { count: 5, resetAtMs: minuteEnd },
      { count: 2, resetAtMs: hourEnd },
    ]);
    expect(await store.incr([{ key: 'a', windowMs: 60_000, amount: 3 }])).toEqual([{ count: 4, resetAtMs: minuteEnd }]);
    expect(await store.incr([])).toEqual([]);
  });

  it('reads counts without changing them, 0 for counters never hit', async () => {
    const clock = new TestClock();
    store = await factory.make(clock.now);
    await store.incr([{ key: 'a', windowMs: 60_000, amount: 7 }]);
    const read = [
      { key: 'a', windowMs: 60_000 },
      { key: 'never', windowMs: 60_000 },
    ];
    const end = windowOf(clock.ms, 60_000).endMs;
    expect(await store.get(read)).toEqual([
      { count: 7, resetAtMs: end },
      { count: 0, resetAtMs: end },
    ]);
    expect((await store.get(read))[0]?.count).toBe(7);
  });

  it('starts every counter again in the next window', async () => {
    const clock = new TestClock();
    store = await factory.make(clock.now);
    await store.incr([{ key: 'a', windowMs: 60_000, amount: 9 }]);
    clock.advance(40_000);
    expect(await store.incr([{ key: 'a', windowMs: 60_000, amount: 1 }])).toEqual([{ count: 1, resetAtMs: windowOf(clock.ms, 60_000).endMs }]);
  });

  it('keeps a count exact under concurrent increments', async () => {
    const clock = new TestClock();
    const s = await factory.make(clock.now);
    store = s;
    const answers = await Promise.all(Array.from({ length: 50 }, () => s.incr([{ key: 'hot', windowMs: 60_000, amount: 1 }])));
    expect(answers.map((a) => a[0]?.count).sort((x = 0, y = 0) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });
});

describe('MemoryStore', () => {
  it('is bounded: a new counter past maxCounters fails with store_full, after expired ones are swept', async () => {
    const clock = new TestClock();
    const store = new MemoryStore({ now: clock.now, maxCounters: 2 });
    await store.incr([{ key: 'a', windowMs: 1_000, amount: 1 }, { key: 'b', windowMs: 60_000, amount: 1 }]);
    const full = await store.incr([{ key: 'c', windowMs: 60_000, amount: 1 }]).catch((err: unknown) => err);
    expect(full).toBeInstanceOf(StoreError);
    expect(full).toMatchObject({ code: 'store_full', store: 'memory', op: 'incr' });
    // Existing counters still count.
    expect(await store.incr([{ key: 'b', windowMs: 60_000, amount: 1 }])).toMatchObject([{ count: 2 }]);
    clock.advance(1_000); // 'a' has ended, so there is room again
    expect(await store.incr([{ key: 'c', windowMs: 60_000, amount: 1 }])).toMatchObject([{ count: 1 }]);
    expect(store.size).toBe(2);
    await store.close();
  });

  it('sweeps ended windows', async () => {
    const clock = new TestClock();
    const store = new MemoryStore({ now: clock.now });
    await store.incr([{ key: 'a', windowMs: 1_000, amount: 1 }, { key: 'b', windowMs: 3_600_000, amount: 1 }]);
    clock.advance(1_000);
    store.sweep();
    expect(store.size).toBe(1);
    await store.close();
    await expect(store.incr([{ key: 'b', windowMs: 3_600_000, amount: 1 }])).rejects.toMatchObject({ code: 'store_closed' });
  });
});

describe('RedisStore', () => {
  it('prefixes its keys and lets them expire shortly after their window', async () => {
    const clock = new TestClock();
    const store = await RedisStore.connect({ url: (redis as TestRedis).url, now: clock.now, keyPrefix: 'flowgate:rl:ttl-test:', expirySlackMs: 5_000 });
    const raw = new Redis((redis as TestRedis).url);
    try {
      await store.incr([{ key: 'req:c=alice:m=chat', windowMs: 60_000, amount: 1 }]);
      const start = windowOf(clock.ms, 60_000).startMs;
      const key = `flowgate:rl:ttl-test:req:c=alice:m=chat:60000:${start}`;
      expect(await raw.keys('flowgate:rl:ttl-test:*')).toEqual([key]);
      const ttl = await raw.pttl(key);
      // 40 s left in the window (the test clock is 20 s into it) plus 5 s of slack.
      expect(ttl).toBeGreaterThan(44_000);
      expect(ttl).toBeLessThanOrEqual(45_000);
    } finally {
      raw.disconnect();
      await store.close();
    }
  });

  it('fails fast with a StoreError when Redis is not there', async () => {
    await expect(RedisStore.connect({ port: 1, connectTimeoutMs: 300 })).rejects.toMatchObject({ code: 'store_unavailable', store: 'redis' });
    const store = new RedisStore({ port: 1 });
    const err = await store.incr([{ key: 'a', windowMs: 1_000, amount: 1 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ code: 'store_unavailable', op: 'incr' });
    await store.close();
  });
});
