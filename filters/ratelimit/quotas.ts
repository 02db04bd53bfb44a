import type { ConsumerRules, ModelRules } from '../../src/contract/filter-policy.js';
import { LimitRules, counterIndex, distinctCounters, type QuotaRule, type TokenKind, type WindowName } from './rules.js';
import { msUntilAtMost } from '../store/counters/sliding.js';
import type { CounterHit, CounterRef, CounterState, CounterStore } from '../store/counters/store.js';
import { reportStoreError, tokensChargedTotal } from './telemetry.js';

/**
 * LLM token quotas. The cost of a request is known only after its answer, so a request is checked before it
 * goes upstream (check, which charges nothing) and charged after (charge, with the usage the upstream
 * reported). Each quota counts the tokens charged in its window and how many answers were charged, with its
 * algorithm: sliding (the default: the last window's worth, so no clock boundary gives the budget back at
 * once) or fixed (windows aligned to the clock).
 *
 * The refusal rule: a consumer is refused once the next request would, at their average use in this window,
 * exceed the quota — `used >= quota`, or `used + used / answers > quota`. With a 1,000-token quota and
 * answers of 400 tokens: the first request passes (0 used), the second passes (400 + 400 <= 1,000), the
 * third is refused (800 + 400 > 1,000). The first request of a window always passes, whatever it will cost.
 */

export interface TokenUsage {
  readonly input: number;
  readonly output: number;
  readonly total: number;
}

/** The state of one quota before a request. */
export interface QuotaStatus {
  /** Where the quota is written: `Model chat: 1000 total tokens per day per consumer`. */
  readonly name: string;
  readonly limit: number;
  readonly used: number;
  readonly remaining: number;
  /** Mean tokens charged per answer in this window (0 before the first). */
  readonly averageCharge: number;
  /** Until the used count next goes down: the window's end (fixed), or until its oldest charge leaves (sliding). */
  readonly resetInMs: number;
  /** When exhausted: until the quota would admit a request again (for sliding, at the current average charge). */
  readonly retryInMs: number;
  readonly window: WindowName;
  readonly count: TokenKind;
  readonly exhausted: boolean;
}

export interface QuotaDecision {
  readonly allowed: boolean;
  readonly reason?: 'quota_exhausted' | 'store_unavailable';
  /** The store failed; `allowed` is then the model's failOpen. */
  readonly storeError: boolean;
  readonly quotas: readonly QuotaStatus[];
  /** The exhausted quota that resets last, or when allowed, the one with the least remaining. */
  readonly tightest: QuotaStatus | undefined;
  readonly retryAfterSeconds?: number;
  /** X-TokenQuota-Limit, -Remaining, -Reset (seconds) of the tightest quota; Retry-After when refused. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface TokenQuotasOptions {
  readonly store: CounterStore;
  readonly failOpen: (model: string) => boolean;
  /** The clock, the same one the store uses. */
  readonly now?: () => number;
}

const KINDS: readonly TokenKind[] = ['input', 'output', 'total'];

export class TokenQuotas {
  private readonly rules: LimitRules;
  private readonly store: CounterStore;
  private readonly failOpen: (model: string) => boolean;
  private readonly now: () => number;

  constructor(models: readonly ModelRules[], consumers: readonly ConsumerRules[], options: TokenQuotasOptions) {
    this.rules = new LimitRules(models, consumers);
    this.store = options.store;
    this.failOpen = options.failOpen;
    this.now = options.now ?? Date.now;
  }

  /** A bounded metric label for a consumer: its policy name, or a fixed stand-in (anonymous, unknown). */
  consumerLabel(consumer: string | undefined): string {
    return this.rules.consumerLabel(consumer);
  }

  /** Whether `consumer` may send another request to `model` under every applicable quota; charges nothing. */
  async check({ consumer, model }: { consumer: string | undefined; model: string }): Promise<QuotaDecision> {
    const rules = this.rules.quotaRules(consumer, model);
    if (rules.length === 0) return { allowed: true, storeError: false, quotas: [], tightest: undefined, headers: {} };
    const counters = distinctCounters(rules.flatMap((r) => counterRefs(r)));
    let states: CounterState[];
    try {
      states = await this.store.get(counters);
    } catch (err) {
      reportStoreError(this.store.kind, 'get', err);
      return this.failOpen(model)
        ? { allowed: true, storeError: true, quotas: [], tightest: undefined, headers: {} }
        : { allowed: false, reason: 'store_unavailable', storeError: true, quotas: [], tightest: undefined, headers: {} };
    }
    const now = this.now();
    const indexOf = counterIndex(counters);
    const quotas = rules.map((rule) => {
      const [tokensRef, answersRef] = counterRefs(rule);
      return quotaStatus(rule, states[indexOf(tokensRef)], states[indexOf(answersRef)], now);
    });
    const exhausted = quotas.filter((q) => q.exhausted);
    if (exhausted.length === 0) {
      const tightest = quotas.reduce((a, b) => (b.remaining < a.remaining ? b : a));
      return { allowed: true, storeError: false, quotas, tightest, headers: quotaHeaders(tightest) };
    }
    const tightest = exhausted.reduce((a, b) => (b.retryInMs > a.retryInMs ? b : a));
    const retryAfterSeconds = Math.max(1, Math.ceil(tightest.retryInMs / 1000));
    return {
      allowed: false,
      reason: 'quota_exhausted',
      storeError: false,
      quotas,
      tightest,
      retryAfterSeconds,
      headers: { ...quotaHeaders(tightest), 'Retry-After': String(retryAfterSeconds) },
    };
  }

  /**
   * Charges one answer's usage to every applicable quota (each by its own kind). A store failure is counted
   * and logged, never thrown: the answer has already gone to the client.
   */
  async charge({ consumer, model, usage }: { consumer: string | undefined; model: string; usage: TokenUsage }): Promise<void> {
    const consumerLabel = this.rules.consumerLabel(consumer);
    const modelLabel = this.rules.modelLabel(model);
    for (const kind of KINDS) tokensChargedTotal.inc({ consumer: consumerLabel, model: modelLabel, kind }, tokens(usage[kind]));
    const rules = this.rules.quotaRules(consumer, model);
    if (rules.length === 0) return;
    const hits: CounterHit[] = distinctCounters(
      rules.flatMap((r) => {
        const [tokensRef, answersRef] = counterRefs(r);
        return [
          { ...tokensRef, amount: tokens(usage[r.count]) },
          { ...answersRef, amount: 1 },
        ];
      }),
    );
    try {
      await this.store.incr(hits);
    } catch (err) {
      reportStoreError(this.store.kind, 'incr', err);
    }
  }
}

// Usage comes from the upstream's answer: anything but a whole, non-negative count is charged as 0.
function tokens(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.trunc(n) : 0;
}

/** A quota's two counters: its tokens and its answers. */
function counterRefs(rule: QuotaRule): [CounterRef, CounterRef] {
  const common = { windowMs: rule.windowMs, algorithm: rule.algorithm, tag: rule.tag };
  return [
    { key: rule.tokensKey, ...common },
    { key: rule.answersKey, ...common },
  ];
}

function quotaStatus(rule: QuotaRule, used: CounterState | undefined, answers: CounterState | undefined, now: number): QuotaStatus {
  if (used === undefined || answers === undefined) throw new Error(`no counter state for ${rule.tokensKey}`);
  const averageCharge = answers.count > 0 ? used.count / answers.count : 0;
  const exhausted = used.count >= rule.tokens || used.count + averageCharge > rule.tokens;
  const resetInMs = Math.max(0, used.resetAtMs - now);
  // Sliding: room comes back as old charges leave, enough for one more answer of the average size.
  const room = Math.min(rule.tokens - 1, Math.floor(rule.tokens - averageCharge));
  const retryInMs = !exhausted ? 0 : rule.algorithm === 'sliding' ? msUntilAtMost(used.count, used.leaving ?? [], Math.max(0, room), now) : resetInMs;
  return {
    name: rule.name,
    limit: rule.tokens,
    used: used.count,
    remaining: Math.max(0, rule.tokens - used.count),
    averageCharge,
    resetInMs,
    retryInMs,
    window: rule.per,
    count: rule.count,
    exhausted,
  };
}

function quotaHeaders(quota: QuotaStatus): Record<string, string> {
  return {
    'X-TokenQuota-Limit': String(quota.limit),
    'X-TokenQuota-Remaining': String(quota.remaining),
    'X-TokenQuota-Reset': String(Math.ceil(quota.resetInMs / 1000)),
  };
}
