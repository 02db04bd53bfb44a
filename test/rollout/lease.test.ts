import { afterAll, beforeAll, expect, test } from 'vitest';
import { RedisLease } from '../../src/rollout/lease.js';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

/** The rollout lease against a real Redis: one holder, handover on release and on expiry, generations that only grow. */

let redis: TestRedis;
const leases: RedisLease[] = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const l of leases) await l.stop().catch(() => undefined);
  await redis?.stop();
});

const lease = (holder: string): RedisLease => {
  const l = new RedisLease({ url: redis.url, ttlMs: 900, holder, key: 'test:lease' });
  leases.push(l);
  l.start();
  return l;
};

test('one holder at a time; a release hands over at once, with a higher generation', async () => {
  const a = lease('a');
  const first = await waitFor('a holds', () => a.generation());
  // Never below the clock: above any generation a lone replica (LocalLease, clock-based) wrote before.
  expect(first).toBeGreaterThan(Date.now() - 60_000);
  const b = lease('b');
  await waitFor('b sees the holder', () => (b.currentHolder() === 'a' ? true : undefined));
  expect(b.generation()).toBeUndefined();
  await a.stop();
  const second = await waitFor('b holds', () => b.generation());
  expect(second).toBeGreaterThan(first);
  expect(a.generation()).toBeUndefined();
});

test('a holder that cannot renew loses the lease on its own, and another takes it after the expiry', async () => {
  const holder = leases.find((l) => l.generation() !== undefined) as RedisLease;
  const before = holder.generation() as number;
  const c = lease('c');
  // The holder's Redis connection goes away (a partition): it stops deciding before its lease can expire.
  (holder as unknown as { redis: { disconnect(): void } }).redis.disconnect();
  await waitFor('the cut-off holder gives up', () => (holder.generation() === undefined ? true : undefined), { timeoutMs: 3000 });
  const next = await waitFor('c holds', () => c.generation(), { timeoutMs: 5000 });
  expect(next).toBeGreaterThan(before);
});
