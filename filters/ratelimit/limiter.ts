import type { ConsumerRules, ModelRules } from '../../src/contract/filter-policy.js';
import { LimitRules, counterIndex, distinctCounters, type RequestRule, type WindowName } from './rules.js';
import { msUntilAtMost } from '../store/counters/sliding.js';
import type { Admission, CounterState, CounterStore, LimitedHit } from '../store/counters/store.js';
import { reportStoreError } from './telemetry.js';

/**
 * The request-rate decision, independent of gRPC: every request limit that applies to a consumer calling a
 * model is counted, in one atomic store call, and the request passes only if every limit has room. Each limit
 * counts with its algorithm:
 *  - sliding (the default): the last window's worth of admitted requests; a refused request is not counted,
 *    so a client retrying past its limit is admitted again as soon as its oldest requests leave the window;
 *  - fixed: windows aligned to the clock, as in Envoy's reference rate-limit service, where a refused request
 *    still counts (a client that keeps retrying keeps its window full until the window ends).
 */

/** The state of one limit after a request was counted. */
export interface LimitStatus {
  /** Where the limit is written: `Consumer acme: 100 per hour across all models`. */
  readonly name: string;
  readonly limit: number;
  readonly remaining: number;
  /** Until the count next goes down: the window's end (fixed), or until its oldest requests leave (sliding). */
  readonly resetInMs: number;
  /** When refused: until this limit would admit the request. */
  readonly retryInMs: number;
  readonly window: WindowName;
  /** This request took the counter past the limit (fixed), or would have (sliding). */
  readonly exceeded: boolean;
}

export interface RateDecision {
  readonly allowed: boolean;
  /** Why the request was refused: a limit is used up, or the counters could not be reached and the model fails closed. */
  readonly reason?: 'over_limit' | 'store_unavailable';
  /** The store failed; `allowed` is then the model's failOpen (a refusal is a 503, not a 429). */
  readonly storeError: boolean;
  readonly limits: readonly LimitStatus[];
  /** The exceeded limit that resets last, or when allowed, the one with the least remaining. */
  readonly tightest: LimitStatus | undefined;
  readonly retryAfterSeconds?: number;
  /** RateLimit-Limit, -Remaining, -Reset (IETF draft: Reset in seconds from now) of the tightest limit; Retry-After when refused. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface RateCheck {
  /** Undefined for anonymous requests: Model limits apply, all anonymous callers sharing one counter. */
  readonly consumer: string | undefined;
  readonly model: string;
  /** How many requests this one counts as. */
  readonly hits?: number;
}

/** Envoy's RateLimitRequest.descriptors, as plain objects. */
export interface RateLimitDescriptor {
  readonly entries: readonly { readonly key: string; readonly value: string }[];
}

export type RateLimitUnit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY';

export interface DescriptorStatus {
  readonly code: 'OK' | 'OVER_LIMIT';
  readonly currentLimit?: { readonly requestsPerUnit: number; readonly unit: RateLimitUnit };
  readonly limitRemaining: number;
  readonly durationUntilResetMs: number;
}

/** Envoy's RateLimitResponse, as plain objects, plus whether the store failed (the caller may answer UNAVAILABLE). */
export interface RateLimitAnswer {
  readonly overallCode: 'OK' | 'OVER_LIMIT';
  readonly statuses: readonly DescriptorStatus[];
  readonly headers: Readonly<Record<string, string>>;
  readonly storeError: boolean;
}

export interface RateLimiterOptions {
  readonly store: CounterStore;
  /** Whether requests to this model pass when the store cannot be reached. */
  readonly failOpen: (model: string) => boolean;
  /** The clock, the same one the store uses. */
  readonly now?: () => number;
  /** When set, shouldRateLimit applies limits only to this domain (others get OK with no limit); any domain otherwise. */
  readonly domain?: string;
}

/** A request's rules and counters for one (consumer, model); see RateLimiter.plan. */
interface RatePlan {
  readonly rules: readonly RequestRule[];
  /** The distinct counters, each with amount 1 (a call with more hits copies them). */
  readonly counters: readonly LimitedHit[];
  /** rules[i] counts in counters[stateOf[i]]. */
  readonly stateOf: readonly number[];
}

const PLAN_CACHE_SIZE = 50_000;

const NO_LIMITS: RateDecision = { allowed: true, storeError: false, limits: [], tightest: undefined, headers: {} };

export class RateLimiter {
  private readonly rules: LimitRules;
  private readonly store: CounterStore;
  private readonly failOpen: (model: string) => boolean;
  private readonly now: () => number;
  private readonly domain: string | undefined;
  /** model -> consumer (undefined: anonymous) -> plan. */
  private readonly plans = new Map<string, Map<string | undefined, RatePlan>>();
  private planned = 0;

  constructor(models: readonly ModelRules[], consumers: readonly ConsumerRules[], options: RateLimiterOptions) {
    this.rules = new LimitRules(models, consumers);
    this.store = options.store;
    this.failOpen = options.failOpen;
    this.now = options.now ?? Date.now;
    this.domain = options.domain;
  }

  /**
   * What one (consumer, model) pair counts, compiled once per policy version: its rules, the distinct
   * counters they count in (the tightest limit of those sharing one) and where each rule's counter is among
   * them. Bounded: past PLAN_CACHE_SIZE pairs (descriptors name consumers, so a caller can invent many) the
   * cache starts again.
   */
  private plan(consumer: string | undefined, model: string): RatePlan {
    let byConsumer = this.plans.get(model);
    let plan = byConsumer?.get(consumer);
    if (plan !== undefined) return plan;
    const rules = this.rules.requestRules(consumer, model);
    const counters = distinctCounters(
      rules.map((r): LimitedHit => ({ key: r.counterKey, windowMs: r.windowMs, algorithm: r.algorithm, tag: r.tag, amount: 1, limit: r.requests })),
      (kept, other) => (other.limit < kept.limit ? { ...kept, limit: other.limit } : kept),
    );
    const indexOf = counterIndex(counters);
    plan = { rules, counters, stateOf: rules.map((rule) => indexOf({ key: rule.counterKey, windowMs: rule.windowMs, algorithm: rule.algorithm })) };
    if (this.planned >= PLAN_CACHE_SIZE) {
      this.plans.clear();
      this.planned = 0;
      byConsumer = undefined;
    }
    if (byConsumer === undefined) {
      byConsumer = new Map();
      this.plans.set(model, byConsumer);
    }
    byConsumer.set(consumer, plan);
    this.planned++;
    return plan;
  }

  /** Counts one request (or `hits`) against every limit on this consumer and model, and decides whether it passes. */
  async check({ consumer, model, hits = 1 }: RateCheck): Promise<RateDecision> {
    if (!(Number.isInteger(hits) && hits >= 0)) throw new RangeError(`hits must be a whole number >= 0 (got ${hits})`);
    const { rules, counters: planned, stateOf } = this.plan(consumer, model);
    if (rules.length === 0) return NO_LIMITS;
    // Rules sharing a counter count it once; the tightest of them decides whether it has room.
    const counters = hits === 1 ? planned : planned.map((c) => ({ ...c, amount: hits }));
    let admission: Admission;
    try {
      admission = await this.store.admit(counters);
    } catch (err) {
      reportStoreError(this.store.kind, 'incr', err);
      return this.failOpen(model)
        ? { allowed: true, storeError: true, limits: [], tightest: undefined, headers: {} }
        : { allowed: false, reason: 'store_unavailable', storeError: true, limits: [], tightest: undefined, headers: {} };
    }
    const now = this.now();
    const limits = rules.map((rule, i) => limitStatus(rule, admission.states[stateOf[i] as number], admission.admitted, hits, now));
    const exceeded = limits.filter((l) => l.exceeded);
    // A sliding limit that had room is not counted when another refused: nothing is charged for a refusal.
    if (exceeded.length === 0) {
      const tightest = leastRemaining(limits);
      return { allowed: true, storeError: false, limits, tightest, headers: rateLimitHeaders(tightest) };
    }
    // Retry-After must outlast every exceeded limit, not only the first one found.
    const tightest = exceeded.reduce((a, b) => (b.retryInMs > a.retryInMs ? b : a));
    const retryAfterSeconds = Math.max(1, Math.ceil(tightest.retryInMs / 1000));
    return {
      allowed: false,
      reason: 'over_limit',
      storeError: false,
      limits,
      tightest,
      retryAfterSeconds,
      headers: { ...rateLimitHeaders(tightest), 'Retry-After': String(retryAfterSeconds) },
    };
  }

  /**
   * Envoy's ShouldRateLimit: each descriptor naming `consumer` and `model` (in any order; other entries are
   * ignored; no consumer entry means anonymous) is decided as check() and answered with its own status. A
   * descriptor without a model entry, or in another domain, has no limit and is OK. Like the reference
   * service, hitsAddend 0 counts as 1.
   */
  async shouldRateLimit(domain: string, descriptors: readonly RateLimitDescriptor[], hitsAddend: number): Promise<RateLimitAnswer> {
    const hits = Number.isInteger(hitsAddend) && hitsAddend > 0 ? hitsAddend : 1;
    const decide = (descriptor: RateLimitDescriptor): Promise<RateDecision> => {
      const { consumer, model } = descriptorTarget(descriptor);
      if (model === undefined || (this.domain !== undefined && domain !== this.domain)) return Promise.resolve(NO_LIMITS);
      return this.check({ consumer, model, hits });
    };
    // Envoy sends one descriptor per limited route: no Promise.all (and its promises) for it.
    const decisions = descriptors.length === 1 ? [await decide(descriptors[0] as RateLimitDescriptor)] : await Promise.all(descriptors.map(decide));
    const refused = decisions.filter((d) => !d.allowed);
    let headers: Readonly<Record<string, string>> = {};
    if (refused.length > 0) {
      const withLimit = refused.filter((d) => d.tightest !== undefined);
      if (withLimit.length > 0) headers = withLimit.reduce((a, b) => ((b.retryAfterSeconds ?? 0) > (a.retryAfterSeconds ?? 0) ? b : a)).headers;
    } else {
      const tightest = leastRemaining(decisions.flatMap((d) => (d.tightest === undefined ? [] : [d.tightest])));
      headers = rateLimitHeaders(tightest);
    }
    return {
      overallCode: refused.length > 0 ? 'OVER_LIMIT' : 'OK',
      statuses: decisions.map(descriptorStatus),
      headers,
      storeError: decisions.some((d) => d.storeError),
    };
  }
}

function limitStatus(rule: RequestRule, state: CounterState | undefined, admitted: boolean, hits: number, now: number): LimitStatus {
  // The store answers one state per counter asked; a missing one is a bug here, not a Redis condition.
  if (state === undefined) throw new Error(`no counter state for ${rule.counterKey}`);
  const resetInMs = Math.max(0, state.resetAtMs - now);
  if (rule.algorithm === 'sliding') {
    // Refused: the count is as the request found it (it was not added); admitted: it includes the request.
    const exceeded = !admitted && state.count + hits > rule.requests;
    return {
      name: rule.name,
      limit: rule.requests,
      remaining: Math.max(0, rule.requests - state.count),
      resetInMs,
      retryInMs: exceeded ? msUntilAtMost(state.count, state.leaving ?? [], rule.requests - hits, now) : 0,
      window: rule.per,
      exceeded,
    };
  }
  return {
    name: rule.name,
    limit: rule.requests,
    remaining: Math.max(0, rule.requests - state.count),
    resetInMs,
    retryInMs: resetInMs,
    window: rule.per,
    exceeded: state.count > rule.requests,
  };
}

/** The limit with the least remaining; of equals, the one that resets last. */
function leastRemaining(limits: readonly LimitStatus[]): LimitStatus | undefined {
  let best: LimitStatus | undefined;
  for (const l of limits) {
    if (best === undefined || l.remaining < best.remaining || (l.remaining === best.remaining && l.resetInMs > best.resetInMs)) best = l;
  }
  return best;
}

/** The IETF draft RateLimit fields of one limit (none when no limit applies). */
export function rateLimitHeaders(limit: LimitStatus | undefined): Record<string, string> {
  if (limit === undefined) return {};
  return {
    'RateLimit-Limit': String(limit.limit),
    'RateLimit-Remaining': String(limit.remaining),
    'RateLimit-Reset': String(Math.ceil(limit.resetInMs / 1000)),
  };
}

function descriptorTarget(descriptor: RateLimitDescriptor): { consumer: string | undefined; model: string | undefined } {
  let consumer: string | undefined;
  let model: string | undefined;
  for (const { key, value } of descriptor.entries) {
    if (key === 'consumer') consumer ??= value;
    else if (key === 'model') model ??= value;
  }
  return { consumer, model };
}

function descriptorStatus(decision: RateDecision): DescriptorStatus {
  const code = decision.allowed ? 'OK' : 'OVER_LIMIT';
  const limit = decision.tightest;
  if (limit === undefined) return { code, limitRemaining: 0, durationUntilResetMs: 0 };
  return {
    code,
    currentLimit: { requestsPerUnit: limit.limit, unit: limit.window.toUpperCase() as RateLimitUnit },
    limitRemaining: limit.remaining,
    durationUntilResetMs: limit.resetInMs,
  };
}
