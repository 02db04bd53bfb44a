import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenQuotas, type TokenUsage } from '../../../filters/ratelimit/quotas.js';
import type { CounterStore } from '../../../filters/store/counters/store.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { TestClock, consumer, counterValue, model, storeFactories } from './fixtures.js';

let redis: TestRedis | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const models = [
  model('llm', { tokenQuotas: [{ tokens: 1000, per: 'hour', algorithm: 'fixed' }] }),
  model('kinds', {
    tokenQuotas: [
      { tokens: 100, per: 'minute', algorithm: 'fixed', count: 'input' },
      { tokens: 200, per: 'minute', algorithm: 'fixed', count: 'output' },
      { tokens: 250, per: 'minute', algorithm: 'fixed', count: 'total' },
    ],
  }),
  model('open'),
];
const consumers = [
  consumer('alice'),
  consumer('bob'),
  consumer('carol', { tokenQuotas: [{ tokens: 500, per: 'day', algorithm: 'fixed', count: 'output' }] }),
  consumer('dave', { tokenQuotas: [{ tokens: 300, per: 'day', algorithm: 'fixed', model: 'open' }] }),
];

const usage = (input: number, output: number): TokenUsage => ({ input, output, total: input + output });

describe.each(storeFactories(() => (redis as TestRedis).url))('TokenQuotas with fixed windows on the $kind store', (factory) => {
  let store: CounterStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  async function quotas(clock: TestClock): Promise<TokenQuotas> {
    store = await factory.make(clock.now);
    return new TokenQuotas(models, consumers, { store, failOpen: () => false, now: clock.now });
  }

  it('refuses the third request when each answer costs 400 of a 1,000-token quota', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    const answers: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const d = await q.check({ consumer: 'alice', model: 'llm' });
      answers.push(d.allowed);
      if (d.allowed) await q.charge({ consumer: 'alice', model: 'llm', usage: usage(100, 300) });
    }
    expect(answers).toEqual([true, true, false]);
    const refused = await q.check({ consumer: 'alice', model: 'llm' });
    expect(refused).toMatchObject({ allowed: false, reason: 'quota_exhausted', storeError: false, retryAfterSeconds: 3580 });
    expect(refused.tightest).toMatchObject({ limit: 1000, used: 800, remaining: 200, averageCharge: 400, exhausted: true });
    expect(refused.headers).toEqual({ 'X-TokenQuota-Limit': '1000', 'X-TokenQuota-Remaining': '200', 'X-TokenQuota-Reset': '3580', 'Retry-After': '3580' });
  });

  it('does not charge on check, and counts each consumer separately', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    for (let i = 0; i < 5; i++) await q.check({ consumer: 'alice', model: 'llm' });
    await q.charge({ consumer: 'alice', model: 'llm', usage: usage(0, 950) });
    expect((await q.check({ consumer: 'alice', model: 'llm' })).tightest?.used).toBe(950);
    const bob = await q.check({ consumer: 'bob', model: 'llm' });
    expect(bob).toMatchObject({ allowed: true, headers: { 'X-TokenQuota-Remaining': '1000' } });
    // Bob's many small answers do not lower Alice's average charge.
    for (let i = 0; i < 10; i++) await q.charge({ consumer: 'bob', model: 'llm', usage: usage(1, 0) });
    await q.charge({ consumer: 'alice', model: 'llm', usage: usage(0, 50) });
    expect((await q.check({ consumer: 'alice', model: 'llm' })).tightest).toMatchObject({ used: 1000, averageCharge: 500 });
    expect((await q.check({ consumer: 'bob', model: 'llm' })).tightest).toMatchObject({ used: 10, averageCharge: 1 });
  });

  it('refuses once the quota is reached, until its window turns', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    await q.charge({ consumer: 'alice', model: 'llm', usage: usage(0, 1200) });
    expect((await q.check({ consumer: 'alice', model: 'llm' })).allowed).toBe(false);
    clock.advance(3_580_000 - 1);
    expect((await q.check({ consumer: 'alice', model: 'llm' })).allowed).toBe(false);
    clock.advance(1);
    expect((await q.check({ consumer: 'alice', model: 'llm' })).tightest).toMatchObject({ used: 0, remaining: 1000 });
  });

  it('charges each quota the kind of tokens it counts', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    await q.charge({ consumer: 'alice', model: 'kinds', usage: { input: 10, output: 30, total: 45 } });
    const d = await q.check({ consumer: 'alice', model: 'kinds' });
    expect(d.quotas.map((s) => [s.count, s.used])).toEqual([
      ['input', 10],
      ['output', 30],
      ['total', 45],
    ]);
    // Input runs out first: at 10 per answer, 100 input tokens last exactly 10 answers (90 + 10 is not over 100).
    for (let i = 0; i < 8; i++) await q.charge({ consumer: 'alice', model: 'kinds', usage: { input: 10, output: 1, total: 11 } });
    expect((await q.check({ consumer: 'alice', model: 'kinds' })).allowed).toBe(true);
    await q.charge({ consumer: 'alice', model: 'kinds', usage: { input: 10, output: 1, total: 11 } });
    const after = await q.check({ consumer: 'alice', model: 'kinds' });
    expect(after.allowed).toBe(false);
    expect(after.quotas.map((s) => [s.count, s.used, s.exhausted])).toEqual([
      ['input', 100, true],
      ['output', 39, false],
      ['total', 144, false],
    ]);
    expect(after.tightest).toMatchObject({ count: 'input', used: 100 });
  });

  it("applies a Consumer's quota across models, or on its one model", async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    await q.charge({ consumer: 'carol', model: 'open', usage: usage(1000, 200) });
    await q.charge({ consumer: 'carol', model: 'kinds', usage: usage(0, 100) });
    const open = await q.check({ consumer: 'carol', model: 'open' });
    expect(open.quotas).toEqual([expect.objectContaining({ name: 'Consumer carol: 500 output tokens per day across all models', used: 300, averageCharge: 150 })]);
    expect(open.allowed).toBe(true);
    await q.charge({ consumer: 'carol', model: 'llm', usage: usage(0, 150) });
    expect((await q.check({ consumer: 'carol', model: 'open' })).allowed).toBe(false);

    await q.charge({ consumer: 'dave', model: 'kinds', usage: usage(0, 1000) });
    expect((await q.check({ consumer: 'dave', model: 'open' })).tightest).toMatchObject({ used: 0 });
  });

  it('passes without headers when no quota applies, and still counts the tokens', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    const before = await counterValue('flowgate_filter_tokens_charged_total', { consumer: 'bob', model: 'open', kind: 'output' });
    await q.charge({ consumer: 'bob', model: 'open', usage: usage(5, 7) });
    expect(await q.check({ consumer: 'bob', model: 'open' })).toMatchObject({ allowed: true, quotas: [], headers: {} });
    expect(await counterValue('flowgate_filter_tokens_charged_total', { consumer: 'bob', model: 'open', kind: 'output' })).toBe(before + 7);
  });

  it('labels tokens of consumers and models not in the policy with fixed names', async () => {
    const clock = new TestClock();
    const q = await quotas(clock);
    const before = await counterValue('flowgate_filter_tokens_charged_total', { consumer: '-unknown-', model: '-unknown-', kind: 'total' });
    await q.charge({ consumer: 'mallory-1234', model: 'nope', usage: usage(1, 2) });
    expect(await counterValue('flowgate_filter_tokens_charged_total', { consumer: '-unknown-', model: '-unknown-', kind: 'total' })).toBe(before + 3);
  });
});
