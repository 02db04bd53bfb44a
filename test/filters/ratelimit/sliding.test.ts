import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../filters/ratelimit/limiter.js';
import { TokenQuotas } from '../../../filters/ratelimit/quotas.js';
import { RedisStore } from '../../../filters/store/counters/redis.js';
import { bucketOf, leavesAtMs, leavingOf, msUntilAtMost, SLIDING_BUCKETS } from '../../../filters/store/counters/sliding.js';
import { MemoryStore, type CounterStore, type LimitedHit } from '../../../filters/store/counters/store.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { TestClock, consumer, model, storeFactories } from './fixtures.js';

// Sliding windows: the same decisions from the memory store and from Redis (one Lua call per decision).

let redis: TestRedis | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const MINUTE = 60_000;
const BUCKET = MINUTE / SLIDING_BUCKETS;

describe('sliding-window arithmetic', () => {
  it('counts an event from its bucket until one window and one bucket later at most', () => {
    const t = 1_700_000_012_345;
    const b = bucketOf(t, MINUTE);
    expect(b).toBe(Math.floor(t / BUCKET));
    const leaves = leavesAtMs(b, MINUTE);
    expect(leaves - t).toBeGreaterThan(MINUTE);
    expect(leaves - t).toBeLessThanOrEqual(MINUTE + BUCKET);
    // Counted up to the last millisecond before it leaves, and not from then on.
    expect(bucketOf(leaves - 1, MINUTE) - SLIDING_BUCKETS).toBeLessThanOrEqual(b);
    expect(bucketOf(leaves, MINUTE) - SLIDING_BUCKETS).toBeGreaterThan(b);
  });

  it('tells how long until a count falls to a target, oldest amounts leaving first', () => {
    const leaving = leavingOf([[10, 3], [8, 2], [12, 0]], MINUTE);
    expect(leaving).toEqual([
      { atMs: leavesAtMs(8, MINUTE), amount: 2 },
      { atMs: leavesAtMs(10, MINUTE), amount: 3 },
    ]);
    const now = leavesAtMs(8, MINUTE) - 500;
    expect(msUntilAtMost(5, leaving, 5, now)).toBe(0);
    expect(msUntilAtMost(5, leaving, 3, now)).toBe(500);
    expect(msUntilAtMost(5, leaving, 2, now)).toBe(leavesAtMs(10, MINUTE) - now);
  });
});

describe.each(storeFactories(() => (redis as TestRedis).url))('sliding counters on the $kind store', (factory) => {
  let store: CounterStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  const hit = (limit: number, extra: Partial<LimitedHit> = {}): LimitedHit => ({ key: 'req:a', windowMs: MINUTE, algorithm: 'sliding', tag: 'c=a', amount: 1, limit, ...extra });

  it('admits up to the limit within any window, whatever the clock boundaries', async () => {
    const clock = new TestClock(); // 20 s into a minute
    const s = await factory.make(clock.now);
    store = s;
    clock.advance(35_000); // 55 s into the minute: a fixed window would turn in 5 s
    for (let i = 1; i <= 5; i++) expect(await s.admit([hit(5)])).toMatchObject({ admitted: true, states: [{ count: i }] });
    expect((await s.admit([hit(5)])).admitted).toBe(false);
    clock.advance(10_000); // into the next minute: still within 60 s of the five
    expect(await s.admit([hit(5)])).toMatchObject({ admitted: false, states: [{ count: 5 }] });
    clock.advance(MINUTE - 10_000 + BUCKET); // one window and one bucket after the five
    expect(await s.admit([hit(5)])).toMatchObject({ admitted: true, states: [{ count: 1 }] });
  });

  it('never counts a refused request, and counts nothing of a request any limit refused', async () => {
    const clock = new TestClock();
    const s = await factory.make(clock.now);
    store = s;
    const roomy = hit(100, { key: 'req:roomy' });
    const tight = hit(1, { key: 'req:tight' });
    const fixed: LimitedHit = { key: 'req:fixed', windowMs: MINUTE, tag: 'c=a', amount: 1, limit: 100 };
    expect((await s.admit([roomy, tight, fixed])).admitted).toBe(true);
    const refused = await s.admit([roomy, tight, fixed]);
    expect(refused.admitted).toBe(false);
    // The sliding counters are as the request found them; the fixed one counts the refusal, as fixed windows do.
    expect(refused.states.map((st) => st.count)).toEqual([1, 1, 2]);
    expect((await s.get([roomy, tight, fixed])).map((st) => st.count)).toEqual([1, 1, 2]);
  });

  it('adds and reads amounts (token quotas) and reports when they leave', async () => {
    const clock = new TestClock();
    const s = await factory.make(clock.now);
    store = s;
    const tokens = { key: 'tok:total:a', windowMs: MINUTE, algorithm: 'sliding' as const, tag: 'c=a' };
    await s.incr([{ ...tokens, amount: 400 }]);
    clock.advance(30_000);
    const [state] = await s.incr([{ ...tokens, amount: 250 }]);
    expect(state?.count).toBe(650);
    expect(state?.leaving?.map((l) => l.amount)).toEqual([400, 250]);
    expect(state?.resetAtMs).toBe(leavesAtMs(bucketOf(clock.ms - 30_000, MINUTE), MINUTE));
    clock.advance(30_000 + BUCKET);
    expect((await s.get([tokens]))[0]).toMatchObject({ count: 250 });
    clock.advance(MINUTE);
    expect((await s.get([tokens]))[0]).toMatchObject({ count: 0, leaving: [] });
  });

  it('stays exact under concurrent decisions: exactly the limit is admitted', async () => {
    const clock = new TestClock();
    const s = await factory.make(clock.now);
    store = s;
    const answers = await Promise.all(Array.from({ length: 60 }, () => s.admit([hit(20, { key: 'req:hot' })])));
    expect(answers.filter((a) => a.admitted)).toHaveLength(20);
    expect((await s.get([hit(20, { key: 'req:hot' })]))[0]?.count).toBe(20);
  });
});

describe.each(storeFactories(() => (redis as TestRedis).url))('sliding limits and quotas on the $kind store', (factory) => {
  let store: CounterStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  it('a limit spent before a minute turns is still spent after it, and Retry-After says when it frees up', async () => {
    const clock = new TestClock();
    store = await factory.make(clock.now);
    // The Model's limit and erin's limit on it watch one counter: counted once, the tighter (4) decides.
    const rl = new RateLimiter([model('chat', { rateLimits: [{ requests: 5, per: 'minute' }] })], [consumer('erin', { rateLimits: [{ requests: 4, per: 'minute', model: 'chat' }] })], {
      store,
      failOpen: () => false,
      now: clock.now,
    });
    clock.advance(39_000); // 59 s into the minute
    for (let i = 0; i < 4; i++) expect((await rl.check({ consumer: 'erin', model: 'chat' })).allowed).toBe(true);
    clock.advance(2_000); // 1 s into the next minute
    const refused = await rl.check({ consumer: 'erin', model: 'chat' });
    expect(refused.allowed).toBe(false);
    expect(refused.tightest).toMatchObject({ limit: 4, remaining: 0, exceeded: true });
    // The four leave about 60 s after they were counted (2 s ago), within one bucket.
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(58);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(59);
    expect(refused.headers['Retry-After']).toBe(String(refused.retryAfterSeconds));
    clock.advance((refused.retryAfterSeconds ?? 0) * 1000);
    const back = await rl.check({ consumer: 'erin', model: 'chat' });
    expect(back.allowed).toBe(true);
    expect(back.headers['RateLimit-Remaining']).toBe('3');
  });

  it('a day of tokens spent at 23:59 is not given back at 00:00', async () => {
    const clock = new TestClock();
    store = await factory.make(clock.now);
    const q = new TokenQuotas([model('llm', { tokenQuotas: [{ tokens: 1000, per: 'day' }] })], [], { store, failOpen: () => false, now: clock.now });
    clock.advance(86_400_000 - 20_000 - 60_000); // 23:59
    for (let i = 0; i < 2; i++) {
      expect((await q.check({ consumer: 'alice', model: 'llm' })).allowed).toBe(true);
      await q.charge({ consumer: 'alice', model: 'llm', usage: { input: 100, output: 300, total: 400 } });
    }
    expect((await q.check({ consumer: 'alice', model: 'llm' })).allowed).toBe(false);
    clock.advance(120_000); // 00:01 the next day
    const refused = await q.check({ consumer: 'alice', model: 'llm' });
    expect(refused).toMatchObject({ allowed: false, reason: 'quota_exhausted' });
    expect(refused.tightest).toMatchObject({ used: 800, averageCharge: 400 });
    // Room for one more 400-token answer comes back when the first one leaves, about a day after 23:59.
    expect(refused.retryAfterSeconds).toBeGreaterThan(86_400 - 180);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(86_400 - 120 + 24 * 60);
  });
});

describe('RedisStore keys', () => {
  it('puts every key of one decision under its cluster hash tag, and lets a sliding key expire after its last bucket', async () => {
    const clock = new TestClock();
    const store = await RedisStore.connect({ url: (redis as TestRedis).url, now: clock.now, keyPrefix: 'flowgate:rl:tag-test:', expirySlackMs: 5_000 });
    const raw = new Redis((redis as TestRedis).url);
    try {
      // A name no policy has (descriptors carry whatever Envoy sends): the Model's per-consumer limits apply.
      const rl = new RateLimiter([model('chat', { rateLimits: [{ requests: 5, per: 'minute' }, { requests: 100, per: 'hour', algorithm: 'fixed' }] })], [], {
        store,
        failOpen: () => false,
        now: clock.now,
      });
      await rl.check({ consumer: 'we{ir}d', model: 'chat' });
      const keys = (await raw.keys('flowgate:rl:tag-test:*')).sort();
      expect(keys).toHaveLength(2);
      // The consumer's braces are encoded: they cannot end the tag early or start another.
      for (const key of keys) expect(key.startsWith('flowgate:rl:tag-test:{c=we%7Bir%7Dd}:')).toBe(true);
      const sliding = keys.find((k) => k.endsWith(':60000:s')) as string;
      const ttl = await raw.pttl(sliding);
      expect(ttl).toBeGreaterThan(MINUTE);
      expect(ttl).toBeLessThanOrEqual(MINUTE + BUCKET + 5_000);
    } finally {
      raw.disconnect();
      await store.close();
    }
    expect(() => new RedisStore({ url: (redis as TestRedis).url, keyPrefix: 'bad{prefix}:' })).toThrow(RangeError);
  });
});

describe('MemoryStore', () => {
  it('sweeps a sliding counter once its last bucket has left', async () => {
    const clock = new TestClock();
    const store = new MemoryStore({ now: clock.now });
    await store.incr([{ key: 'a', windowMs: MINUTE, algorithm: 'sliding', amount: 3 }]);
    clock.advance(MINUTE);
    store.sweep();
    expect(store.size).toBe(1);
    clock.advance(BUCKET);
    store.sweep();
    expect(store.size).toBe(0);
    await store.close();
  });
});
