import type { ConsumerRules, LimitAlgorithm, ModelRules, TokenKind, WindowName } from '../../src/contract/filter-policy.js';

/**
 * Which request limits and token quotas of the policy apply to one consumer calling one model, and the
 * counter each one counts in. The rules arrive resolved (names, windows, algorithms, count kinds decided by
 * the control plane's IR); only the per-request combination is made here. Limits that count the same
 * events (a Model's per-consumer limit and a Consumer's limit on that model) share a counter, so a request
 * is counted once however many rules watch it. Every counter of one (consumer, model) decision names the
 * consumer as its hash tag, so a Redis Cluster keeps them in one slot.
 */

export type { LimitAlgorithm, TokenKind, WindowName };

/** The consumer name anonymous requests are counted under; policy names start with a letter or digit, so it cannot collide. */
export const ANONYMOUS = '-anonymous-';

/** One request limit as it applies to one consumer and model. */
export interface RequestRule {
  /** Where the limit is written, for people: `Model chat: 5 per minute per consumer`. */
  readonly name: string;
  readonly requests: number;
  readonly per: WindowName;
  readonly windowMs: number;
  readonly algorithm: LimitAlgorithm;
  readonly counterKey: string;
  /** The hash tag of every counter of this decision. */
  readonly tag: string;
}

/** One token quota as it applies to one consumer and model. */
export interface QuotaRule {
  readonly name: string;
  readonly tokens: number;
  readonly per: WindowName;
  readonly windowMs: number;
  readonly count: TokenKind;
  readonly algorithm: LimitAlgorithm;
  readonly tag: string;
  /** The tokens charged in the window. */
  readonly tokensKey: string;
  /** The answers charged in the window (for the average charge per answer). */
  readonly answersKey: string;
}

/** The policy's limits and quotas, indexed by model and consumer name. */
export class LimitRules {
  private readonly models: ReadonlyMap<string, ModelRules>;
  private readonly consumers: ReadonlyMap<string, ConsumerRules>;

  constructor(models: readonly ModelRules[], consumers: readonly ConsumerRules[]) {
    this.models = new Map(models.map((m) => [m.name, m]));
    this.consumers = new Map(consumers.map((c) => [c.name, c]));
  }

  /** A bounded metric label for a consumer: its policy name, or a fixed stand-in. */
  consumerLabel(consumer: string | undefined): string {
    if (consumer === undefined) return ANONYMOUS;
    return this.consumers.has(consumer) ? consumer : '-unknown-';
  }

  /** A bounded metric label for a model: its policy name, or a fixed stand-in. */
  modelLabel(model: string): string {
    return this.models.has(model) ? model : '-unknown-';
  }

  /**
   * The request limits on `consumer` calling `model`: the Model's limits (per consumer; anonymous callers
   * share one counter) and the Consumer's limits across all models or on this one.
   */
  requestRules(consumer: string | undefined, model: string): RequestRule[] {
    const who = consumer ?? ANONYMOUS;
    const rules: RequestRule[] = [];
    const tag = tagOf(who);
    const rule = (limit: ModelRules['requestLimits'][number], where: string | undefined): RequestRule => ({
      name: limit.name,
      requests: limit.requests,
      per: limit.per,
      windowMs: limit.windowMs,
      algorithm: limit.algorithm,
      counterKey: `req:${scope(who, where)}`,
      tag,
    });
    for (const limit of this.models.get(model)?.requestLimits ?? []) rules.push(rule(limit, model));
    for (const limit of this.consumerRules(consumer)?.requestLimits ?? []) {
      if (limit.model !== undefined && limit.model !== model) continue;
      rules.push(rule(limit, limit.model));
    }
    return rules;
  }

  /** The token quotas on `consumer` calling `model`, chosen as requestRules chooses limits. */
  quotaRules(consumer: string | undefined, model: string): QuotaRule[] {
    const who = consumer ?? ANONYMOUS;
    const rules: QuotaRule[] = [];
    const tag = tagOf(who);
    for (const quota of this.models.get(model)?.tokenQuotas ?? []) rules.push(quotaRule(quota, scope(who, model), tag));
    for (const quota of this.consumerRules(consumer)?.tokenQuotas ?? []) {
      if (quota.model !== undefined && quota.model !== model) continue;
      rules.push(quotaRule(quota, scope(who, quota.model), tag));
    }
    return rules;
  }

  private consumerRules(consumer: string | undefined): ConsumerRules | undefined {
    return consumer === undefined ? undefined : this.consumers.get(consumer);
  }
}

function quotaRule(quota: ModelRules['tokenQuotas'][number], where: string, tag: string): QuotaRule {
  return {
    name: quota.name,
    tokens: quota.tokens,
    per: quota.per,
    count: quota.count,
    windowMs: quota.windowMs,
    algorithm: quota.algorithm,
    tag,
    tokensKey: `tok:${quota.count}:${where}`,
    answersKey: `ans:${where}`,
  };
}

/** The hash tag of a consumer's counters: encoded, so no name can close the braces or forge another's tag. */
function tagOf(consumer: string): string {
  return `c=${encodeURIComponent(consumer)}`;
}

// Names reach here from descriptors (request data), so they are encoded: no name can forge another's key.
function scope(consumer: string, model: string | undefined): string {
  return `c=${encodeURIComponent(consumer)}:m=${model === undefined ? '*' : encodeURIComponent(model)}`;
}

/** What names a counter: key, window and algorithm (the same key counted two ways is two counters). */
export interface CounterName {
  readonly key: string;
  readonly windowMs: number;
  readonly algorithm?: LimitAlgorithm;
}

/**
 * The distinct counters among `hits`, the first of each kept (rules sharing a counter count an event once);
 * where `merge` is given, it combines each later duplicate into the kept one (e.g. the tighter limit).
 */
export function distinctCounters<T extends CounterName>(hits: readonly T[], merge?: (kept: T, other: T) => T): T[] {
  const kept = new Map<string, number>();
  const out: T[] = [];
  for (const h of hits) {
    const id = counterId(h);
    const at = kept.get(id);
    if (at === undefined) {
      kept.set(id, out.length);
      out.push(h);
    } else if (merge) {
      out[at] = merge(out[at] as T, h);
    }
  }
  return out;
}

/** Finds a counter's position in `distinct` (the order the store answers in). */
export function counterIndex(distinct: readonly CounterName[]): (counter: CounterName) => number {
  const index = new Map(distinct.map((h, i) => [counterId(h), i]));
  return (counter) => index.get(counterId(counter)) ?? -1;
}

function counterId(c: CounterName): string {
  return `${c.algorithm ?? 'fixed'}|${c.windowMs}|${c.key}`;
}
