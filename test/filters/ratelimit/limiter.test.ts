import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../filters/ratelimit/limiter.js';
import type { CounterStore } from '../../../filters/store/counters/store.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { TestClock, consumer, model, storeFactories } from './fixtures.js';

// The same decisions must come out of the in-process store and Redis.

let redis: TestRedis | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const models = [
  model('chat', { rateLimits: [{ requests: 5, per: 'minute', algorithm: 'fixed' }] }),
  model('embed', { rateLimits: [{ requests: 5, per: 'minute', algorithm: 'fixed' }, { requests: 100, per: 'hour', algorithm: 'fixed' }] }),
  model('free'),
  model('draw'),
];
const consumers = [
  consumer('alice'),
  consumer('bob'),
  consumer('carol', { rateLimits: [{ requests: 3, per: 'minute', algorithm: 'fixed' }] }),
  consumer('dave', { rateLimits: [{ requests: 2, per: 'second', algorithm: 'fixed', model: 'draw' }] }),
  consumer('erin', { rateLimits: [{ requests: 4, per: 'minute', algorithm: 'fixed', model: 'chat' }] }),
];

describe.each(storeFactories(() => (redis as TestRedis).url))('RateLimiter with fixed windows on the $kind store', (factory) => {
  let store: CounterStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  async function limiter(clock: TestClock, options: { domain?: string } = {}): Promise<RateLimiter> {
    store = await factory.make(clock.now);
    return new RateLimiter(models, consumers, { store, failOpen: () => false, now: clock.now, ...options });
  }

  it('passes 5 requests of a 5-per-minute consumer, then refuses with RateLimit headers and Retry-After', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 1; i <= 5; i++) {
      const d = await rl.check({ consumer: 'alice', model: 'chat' });
      expect(d.allowed).toBe(true);
      expect(d.headers).toEqual({ 'RateLimit-Limit': '5', 'RateLimit-Remaining': String(5 - i), 'RateLimit-Reset': '40' });
    }
    const refused = await rl.check({ consumer: 'alice', model: 'chat' });
    expect(refused.allowed).toBe(false);
    expect(refused.reason).toBe('over_limit');
    expect(refused.storeError).toBe(false);
    // The clock is 20 s into the minute: the window ends in 40 s.
    expect(refused.retryAfterSeconds).toBe(40);
    expect(refused.headers).toEqual({ 'RateLimit-Limit': '5', 'RateLimit-Remaining': '0', 'RateLimit-Reset': '40', 'Retry-After': '40' });
    expect(refused.tightest).toMatchObject({ name: 'Model chat: 5 per minute per consumer', limit: 5, remaining: 0, window: 'minute', exceeded: true });
  });

  it('counts each consumer separately', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 0; i < 6; i++) await rl.check({ consumer: 'alice', model: 'chat' });
    expect((await rl.check({ consumer: 'alice', model: 'chat' })).allowed).toBe(false);
    const bob = await rl.check({ consumer: 'bob', model: 'chat' });
    expect(bob.allowed).toBe(true);
    expect(bob.headers['RateLimit-Remaining']).toBe('4');
  });

  it('starts a new count when the window turns, and not before', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 0; i < 5; i++) await rl.check({ consumer: 'alice', model: 'chat' });
    clock.advance(39_999); // the last millisecond of the minute
    expect((await rl.check({ consumer: 'alice', model: 'chat' })).allowed).toBe(false);
    clock.advance(1);
    const next = await rl.check({ consumer: 'alice', model: 'chat' });
    expect(next.allowed).toBe(true);
    expect(next.headers).toEqual({ 'RateLimit-Limit': '5', 'RateLimit-Remaining': '4', 'RateLimit-Reset': '60' });
  });

  it('reports the tightest of several limits in the headers', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    const d = await rl.check({ consumer: 'alice', model: 'embed' });
    expect(d.limits.map((l) => [l.limit, l.remaining])).toEqual([
      [5, 4],
      [100, 99],
    ]);
    expect(d.headers['RateLimit-Limit']).toBe('5');
  });

  it('applies a consumer limit without a model across all models, and one with a model only there', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    expect((await rl.check({ consumer: 'carol', model: 'free' })).allowed).toBe(true);
    expect((await rl.check({ consumer: 'carol', model: 'draw' })).allowed).toBe(true);
    expect((await rl.check({ consumer: 'carol', model: 'free' })).allowed).toBe(true);
    const fourth = await rl.check({ consumer: 'carol', model: 'draw' });
    expect(fourth.allowed).toBe(false);
    expect(fourth.tightest?.name).toBe('Consumer carol: 3 per minute across all models');

    for (let i = 0; i < 2; i++) expect((await rl.check({ consumer: 'dave', model: 'draw' })).allowed).toBe(true);
    expect((await rl.check({ consumer: 'dave', model: 'draw' })).allowed).toBe(false);
    expect((await rl.check({ consumer: 'dave', model: 'free' })).limits).toEqual([]);
  });

  it("counts a Model's per-consumer limit and the Consumer's limit on that model once per request", async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 1; i <= 4; i++) {
      const d = await rl.check({ consumer: 'erin', model: 'chat' });
      expect(d.allowed).toBe(true);
      expect(d.limits.map((l) => l.remaining)).toEqual([5 - i, 4 - i]);
    }
    const fifth = await rl.check({ consumer: 'erin', model: 'chat' });
    expect(fifth.allowed).toBe(false);
    expect(fifth.tightest?.name).toBe('Consumer erin: 4 per minute on model chat');
  });

  it('counts anonymous requests under one shared name', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 0; i < 5; i++) expect((await rl.check({ consumer: undefined, model: 'chat' })).allowed).toBe(true);
    expect((await rl.check({ consumer: undefined, model: 'chat' })).allowed).toBe(false);
    expect((await rl.check({ consumer: '-anonymous-x', model: 'chat' })).allowed).toBe(true);
  });

  it('passes without headers when no limit applies', async () => {
    const clock = new TestClock();
    const rl = await limiter(clock);
    for (let i = 0; i < 10; i++) {
      const d = await rl.check({ consumer: 'alice', model: 'free' });
      expect(d).toMatchObject({ allowed: true, limits: [], headers: {} });
    }
  });

  describe('shouldRateLimit (Envoy descriptors)', () => {
    const chatOf = (name: string) => ({ entries: [{ key: 'consumer', value: name }, { key: 'model', value: 'chat' }] });

    it('reads consumer and model in any order, ignoring other entries', async () => {
      const clock = new TestClock();
      const rl = await limiter(clock);
      await rl.shouldRateLimit('flowgate', [chatOf('alice')], 1);
      const swapped = await rl.shouldRateLimit(
        'flowgate',
        [{ entries: [{ key: 'model', value: 'chat' }, { key: 'path', value: '/x' }, { key: 'consumer', value: 'alice' }] }],
        1,
      );
      expect(swapped.overallCode).toBe('OK');
      expect(swapped.statuses).toEqual([{ code: 'OK', currentLimit: { requestsPerUnit: 5, unit: 'MINUTE' }, limitRemaining: 3, durationUntilResetMs: 40_000 }]);
      expect(swapped.headers['RateLimit-Remaining']).toBe('3');
    });

    it('answers OK with no limit for descriptors nothing applies to', async () => {
      const clock = new TestClock();
      const rl = await limiter(clock);
      const answer = await rl.shouldRateLimit(
        'flowgate',
        [{ entries: [{ key: 'consumer', value: 'alice' }, { key: 'model', value: 'free' }] }, { entries: [{ key: 'consumer', value: 'alice' }] }, { entries: [{ key: 'remote_address', value: '10.0.0.1' }] }],
        1,
      );
      expect(answer).toEqual({
        overallCode: 'OK',
        statuses: [0, 1, 2].map(() => ({ code: 'OK', limitRemaining: 0, durationUntilResetMs: 0 })),
        headers: {},
        storeError: false,
      });
    });

    it('gives each descriptor its own status and is OVER_LIMIT when any is over', async () => {
      const clock = new TestClock();
      const rl = await limiter(clock);
      await rl.shouldRateLimit('flowgate', [chatOf('alice')], 5);
      const answer = await rl.shouldRateLimit('flowgate', [chatOf('bob'), chatOf('alice')], 1);
      expect(answer.overallCode).toBe('OVER_LIMIT');
      expect(answer.statuses.map((s) => [s.code, s.limitRemaining])).toEqual([
        ['OK', 4],
        ['OVER_LIMIT', 0],
      ]);
      expect(answer.headers).toMatchObject({ 'RateLimit-Remaining': '0', 'Retry-After': '40' });
    });

    it('counts hitsAddend hits, and 0 as 1', async () => {
      const clock = new TestClock();
      const rl = await limiter(clock);
      expect((await rl.shouldRateLimit('flowgate', [chatOf('alice')], 3)).statuses[0]?.limitRemaining).toBe(2);
      expect((await rl.shouldRateLimit('flowgate', [chatOf('alice')], 0)).statuses[0]?.limitRemaining).toBe(1);
    });

    it('applies limits only in its own domain when one is configured', async () => {
      const clock = new TestClock();
      const rl = await limiter(clock, { domain: 'flowgate' });
      const other = await rl.shouldRateLimit('other', [chatOf('alice')], 10);
      expect(other.statuses).toEqual([{ code: 'OK', limitRemaining: 0, durationUntilResetMs: 0 }]);
      expect((await rl.shouldRateLimit('flowgate', [chatOf('alice')], 1)).statuses[0]?.limitRemaining).toBe(4);
    });
  });
});
