import type { FilterPolicy, ModelRules, PipelineRules, VersionProcessingRules } from '../../src/contract/filter-policy.js';
import { RATE_LIMIT_DOMAIN } from '../../src/contract/filter-wire.js';
import { Authorizer } from '../authz/engine.js';
import { compileMasking, type Masker } from '../extproc/masking.js';
import { RateLimiter } from '../ratelimit/limiter.js';
import { TokenQuotas } from '../ratelimit/quotas.js';
import type { CounterStore } from '../store/counters/store.js';
import { MemoryBudgets, type BudgetStore } from '../store/budgets.js';
import type { BudgetRule } from '../../src/contract/filter-policy.js';
import { AllowAnswers } from './allow-answers.js';

/** A budget that applies to a request, with the scope of its key (`m=<model>` or `c=<consumer>`). */
export interface ScopedBudget extends BudgetRule {
  readonly scope: string;
}

/**
 * FilterEngine: everything one filter-policy version decides with, compiled once (key index, JWT key sets,
 * limit rules, masking rules) and swapped whole when a new version arrives, so a request is always judged
 * by one consistent policy. It applies the resolved rules as they come: no default is decided here.
 */

export interface ModelMasking {
  readonly request: Masker | undefined;
  readonly response: Masker | undefined;
  readonly maxBodyBytes: number;
}

export class FilterEngine {
  readonly authorizer: Authorizer;
  readonly limiter: RateLimiter;
  readonly quotas: TokenQuotas;
  /** Check's allow answers under this policy (allow-answers.ts): a new policy starts with none. */
  readonly allows = new AllowAnswers();
  private readonly models: ReadonlyMap<string, ModelRules>;
  private readonly masking = new Map<string, ModelMasking>();
  private readonly aliasMaps = new Map<string, Readonly<Record<string, string>>>();
  private readonly quotaModels = new Set<string>();
  private readonly versionRules = new Map<string, VersionProcessingRules>();
  private readonly pipelines: ReadonlyMap<string, PipelineRules>;
  private readonly consumerBudgets = new Map<string, readonly BudgetRule[]>();

  constructor(
    readonly policy: FilterPolicy,
    readonly version: string,
    store: CounterStore,
    /** LLM spending against budgets: shared by the engines a service swaps in, so a policy change keeps the spend. */
    readonly budgets: BudgetStore = new MemoryBudgets(),
  ) {
    for (const c of policy.consumers) if (c.budgets && c.budgets.length > 0) this.consumerBudgets.set(c.name, c.budgets);
    this.models = new Map(policy.models.map((m) => [m.name, m]));
    this.pipelines = new Map((policy.pipelines ?? []).map((p) => [p.name, p]));
    const failOpen = (model: string): boolean => this.failOpen(model);
    this.authorizer = new Authorizer({ jwtIssuers: policy.jwtIssuers, models: policy.models, consumers: policy.consumers });
    this.limiter = new RateLimiter(policy.models, policy.consumers, { store, failOpen, domain: RATE_LIMIT_DOMAIN });
    this.quotas = new TokenQuotas(policy.models, policy.consumers, { store, failOpen });
    const consumerQuotaModels = new Set(policy.consumers.flatMap((c) => c.tokenQuotas.map((q) => q.model ?? '*')));
    for (const m of policy.models) {
      const aliases: Record<string, string> = {};
      for (const l of m.live) for (const a of l.aliases) aliases[a] = l.version;
      this.aliasMaps.set(m.name, aliases);
      if (m.tokenQuotas.length > 0 || consumerQuotaModels.has('*') || consumerQuotaModels.has(m.name)) this.quotaModels.add(m.name);
      for (const v of m.versions ?? []) this.versionRules.set(`${m.name}\u0000${v.version}`, v);
      if (!m.masking) continue;
      this.masking.set(m.name, {
        request: m.masking.request ? compileMasking(m.masking.request) : undefined,
        response: m.masking.response ? compileMasking(m.masking.response) : undefined,
        maxBodyBytes: m.masking.maxBodyBytes,
      });
    }
  }

  model(name: string): ModelRules | undefined {
    return this.models.get(name);
  }

  /** Whether a model's requests pass when a dependency (the counter store) fails. */
  failOpen(model: string): boolean {
    return this.models.get(model)?.failOpen ?? false;
  }

  maskingOf(model: string): ModelMasking | undefined {
    return this.masking.get(model);
  }

  /** Whether any token quota can apply to a model's callers (its answers' usage is then charged). */
  hasQuotas(model: string): boolean {
    return this.quotaModels.has(model);
  }

  /**
   * Whether a model's answers are read for usage (token quotas, pricing, GenAI metrics): its routes then stream
   * answers through ext_proc, where the usage processor runs.
   */
  readsUsage(model: string): boolean {
    return this.quotaModels.has(model) || this.models.get(model)?.llm?.readsUsage === true;
  }

  /** Whether a request to `model` may meet a budget: its own, or a consumer's (in the model's currency). */
  hasBudgets(model: string): boolean {
    const llm = this.models.get(model)?.llm;
    if (!llm?.pricing) return false;
    if ((llm.budgets?.length ?? 0) > 0) return true;
    const currency = llm.pricing.currency;
    return [...this.consumerBudgets.values()].some((bs) => bs.some((b) => b.currency === currency));
  }

  /** The budgets a request of `consumer` to `model` spends against: the model's, then the consumer's in the model's currency. */
  budgetRules(model: string, consumer: string | undefined): ScopedBudget[] {
    const llm = this.models.get(model)?.llm;
    if (!llm?.pricing) return [];
    const currency = llm.pricing.currency;
    const own = (llm.budgets ?? []).map((b) => ({ ...b, scope: `m=${model}` }));
    const theirs = consumer === undefined ? [] : (this.consumerBudgets.get(consumer) ?? []).filter((b) => b.currency === currency).map((b) => ({ ...b, scope: `c=${consumer}` }));
    return [...own, ...theirs];
  }

  /** What a version's cluster-level processing does (validation, conversion); undefined for nothing. */
  versionProcessing(model: string, version: string): VersionProcessingRules | undefined {
    return this.versionRules.get(`${model}\u0000${version}`);
  }

  /** A pipeline's steps, for the pipeline service. */
  pipeline(name: string): PipelineRules | undefined {
    return this.pipelines.get(name);
  }

  /** alias -> version of a model's live aliases. */
  aliases(model: string): Readonly<Record<string, string>> {
    return this.aliasMaps.get(model) ?? {};
  }
}
