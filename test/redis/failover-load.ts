import { expect } from 'vitest';
import type { ConsumerRules, ModelRules } from '../../src/contract/filter-policy.js';
import { RateLimiter } from '../../filters/ratelimit/limiter.js';
import { RedisStore } from '../../filters/store/counters/redis.js';
import { consumer, model, TestClock } from '../filters/ratelimit/fixtures.js';

/**
 * What the Redis deployment tests (cluster, Sentinel) share: two limiters on one address enforcing a limit
 * exactly; a loop of decisions on a fail-open model (`chat`) and a fail-closed one (`billing`) while a master
 * is killed; and the check that each decision after the failover counts once.
 */

/** The rules every function here reads: `chat` fails open with 5 a minute, `billing` fails closed. */
export interface FailoverRules {
  readonly models: readonly ModelRules[];
  readonly consumers: readonly ConsumerRules[];
  readonly names: readonly string[];
  readonly failOpen: (model: string) => boolean;
}

/** `count` consumers (`user-0`...) and the two models the loads and checks below name. */
export function failoverRules(count: number): FailoverRules {
  const models = [
    model('chat', { rateLimits: [{ requests: 5, per: 'minute' }], failOpen: true }),
    // Far above what the load can spend (the loop runs thousands of decisions a second once Redis answers again).
    model('billing', { rateLimits: [{ requests: 10_000_000, per: 'hour' }], failOpen: false }),
  ];
  const names = Array.from({ length: count }, (_, i) => `user-${i}`);
  return { models, names, consumers: names.map((n) => consumer(n)), failOpen: (name) => models.find((m) => m.name === name)?.failOpen ?? false };
}

export interface FailoverOutcomes {
  ok: number;
  openOnError: number;
  closedOnError: number;
}

/** Runs decisions for `names` in turn until stopped; each store error must follow the model's failOpen. */
export function decisionsUnderLoad(limiter: RateLimiter, names: readonly string[]): { readonly outcomes: FailoverOutcomes; readonly stop: () => Promise<void> } {
  const outcomes: FailoverOutcomes = { ok: 0, openOnError: 0, closedOnError: 0 };
  let running = true;
  const load = (async () => {
    for (let i = 0; running; i++) {
      const name = names[i % names.length] as string;
      const [open, closed] = await Promise.all([limiter.check({ consumer: name, model: 'chat' }), limiter.check({ consumer: name, model: 'billing' })]);
      if (!open.storeError && !closed.storeError) outcomes.ok++;
      if (open.storeError) {
        // chat fails open: allowed without a count; billing fails closed: refused.
        expect(open.allowed).toBe(true);
        outcomes.openOnError++;
      }
      if (closed.storeError) {
        expect(closed).toMatchObject({ allowed: false, reason: 'store_unavailable' });
        outcomes.closedOnError++;
      }
      // A refusal without Redis comes back at once, as a microtask: let timers (and the test's waits) run.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  return {
    outcomes,
    stop: async () => {
      running = false;
      await load;
    },
  };
}

/** After the failover: every consumer's next 3 billing decisions (and the one that reads) raise its count by exactly 4. */
export async function expectEachCountedOnce(limiter: RateLimiter, names: readonly string[]): Promise<void> {
  const remaining = (name: string): Promise<string | undefined> => limiter.check({ consumer: name, model: 'billing' }).then((d) => d.headers['RateLimit-Remaining']);
  const before = await Promise.all(names.map(remaining));
  for (const name of names) for (let n = 0; n < 3; n++) expect((await limiter.check({ consumer: name, model: 'billing' })).storeError).toBe(false);
  const after = await Promise.all(names.map(remaining));
  expect(after.map((a, i) => Number(before[i]) - Number(a))).toEqual(Array(names.length).fill(4));
}

/** Two filter-service replicas' limiters on `url`: each name's 8 `chat` calls, alternating, allow exactly 5. */
export async function expectExactOnTwoReplicas(url: string, rules: FailoverRules): Promise<void> {
  const { models, consumers, names, failOpen } = rules;
  const clock = new TestClock();
  const storeOptions = { url, now: clock.now, keyPrefix: 'flowgate:rl:exact:' };
  const stores = [await RedisStore.connect(storeOptions), await RedisStore.connect(storeOptions)];
  const limiters = stores.map((store) => new RateLimiter(models, consumers, { store, failOpen, now: clock.now }));
  try {
    const allowed = new Map<string, number>();
    await Promise.all(
      names.map(async (name, i) => {
        for (let n = 0; n < 8; n++) {
          const d = await (limiters[(i + n) % 2] as RateLimiter).check({ consumer: name, model: 'chat' });
          expect(d.storeError).toBe(false);
          if (d.allowed) allowed.set(name, (allowed.get(name) ?? 0) + 1);
        }
      }),
    );
    expect([...allowed.values()]).toEqual(Array(names.length).fill(5));
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
}
