import type { ConsumerRules, ModelRules } from '../../../src/contract/filter-policy.js';
import { consumerRulesOf, modelRules } from '../rules-fixtures.js';
import { metricsRegistry } from '../../../src/observability/metrics.js';
import { RedisStore } from '../../../filters/store/counters/redis.js';
import { MemoryStore, type CounterStore } from '../../../filters/store/counters/store.js';

/** Policies, a movable clock and counter stores for the rate-limit tests. */

type Window = 'second' | 'minute' | 'hour' | 'day';
type Kind = 'input' | 'output' | 'total';
type Algorithm = 'fixed' | 'sliding';

/** A Model document through the real schema, with only the limit blocks varying. */
export function model(
  name: string,
  limits: {
    rateLimits?: { requests: number; per: Window; algorithm?: Algorithm }[];
    tokenQuotas?: { tokens: number; per: Window; count?: Kind; algorithm?: Algorithm }[];
    failOpen?: boolean;
  } = {},
): ModelRules {
  return modelRules(name, { upstream: { addressTemplate: '{name}-{version}:8080' }, traffic: { stable: { version: '1' } }, ...limits });
}

/** A Consumer document through the real schema. */
export function consumer(
  name: string,
  limits: {
    rateLimits?: { requests: number; per: Window; model?: string; algorithm?: Algorithm }[];
    tokenQuotas?: { tokens: number; per: Window; count?: Kind; model?: string; algorithm?: Algorithm }[];
  } = {},
): ConsumerRules {
  return consumerRulesOf(name, limits);
}

/** A clock tests move by hand; it starts 20 s into a minute (and an hour, and a day). */
export class TestClock {
  ms: number;
  constructor() {
    // A recent whole day, so Redis keys look like real ones; any epoch value works since expiries are relative.
    this.ms = Math.floor(Date.now() / 86_400_000) * 86_400_000 + 20_000;
  }
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface StoreFactory {
  readonly kind: 'memory' | 'redis';
  /** A store on a fresh key space, read with `now`. */
  make(now: () => number): Promise<CounterStore>;
}

let space = 0;

/** The store kinds the shared suites run against; `redisUrl` is read when a Redis store is made. */
export function storeFactories(redisUrl: () => string): StoreFactory[] {
  return [
    { kind: 'memory', make: (now) => Promise.resolve(new MemoryStore({ now })) },
    {
      kind: 'redis',
      make: (now) => RedisStore.connect({ url: redisUrl(), now, keyPrefix: `flowgate:rl:test-${process.pid}-${++space}:`, commandTimeoutMs: 500 }),
    },
  ];
}

/** The current value of a counter metric for one label set (0 when never counted). */
export async function counterValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = metricsRegistry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return match?.value ?? 0;
}
