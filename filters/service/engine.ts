import { Authorizer } from '../authz/engine.js';
import { compileMasking, type Masker } from '../extproc/masking.js';
import { RateLimiter } from '../ratelimit/limiter.js';
import { TokenQuotas } from '../ratelimit/quotas.js';
import type { CounterStore } from '../store/counters/store.js';
import type { ModelPolicy } from '../../src/policy/schema.js';
import type { FilterPolicy } from './policy.js';

/**
 * FilterEngine: everything one filter-policy version decides with, compiled once (key index, JWT key sets,
 * limit rules, masking rules) and swapped whole when a new version arrives, so a request is always judged
 * by one consistent policy.
 */

export const RATE_LIMIT_DOMAIN = 'flowgate';

export interface ModelMasking {
  readonly request: Masker | undefined;
  readonly response: Masker | undefined;
  readonly maxBodyBytes: number;
}

export class FilterEngine {
  readonly authorizer: Authorizer;
  readonly limiter: RateLimiter;
  readonly quotas: TokenQuotas;
  private readonly models: ReadonlyMap<string, ModelPolicy>;
  private readonly masking = new Map<string, ModelMasking>();

  constructor(
    readonly policy: FilterPolicy,
    readonly version: string,
    store: CounterStore,
  ) {
    this.models = new Map(policy.models.map((m) => [m.name, m]));
    const failOpen = (model: string): boolean => this.failOpen(model);
    this.authorizer = new Authorizer({ gateway: policy.gateway, models: policy.models, consumers: policy.consumers });
    this.limiter = new RateLimiter(policy.models, policy.consumers, { store, failOpen, domain: RATE_LIMIT_DOMAIN });
    this.quotas = new TokenQuotas(policy.models, policy.consumers, { store, failOpen });
    for (const m of policy.models) {
      if (!m.masking) continue;
      this.masking.set(m.name, {
        request: m.masking.request ? compileMasking(m.masking.request) : undefined,
        response: m.masking.response ? compileMasking(m.masking.response) : undefined,
        maxBodyBytes: m.masking.maxBodyBytes,
      });
    }
  }

  model(name: string): ModelPolicy | undefined {
    return this.models.get(name);
  }

  /** Whether a model's requests pass when a dependency (the counter store) fails. */
  failOpen(model: string): boolean {
    return this.models.get(model)?.failOpen ?? this.policy.gateway.filterService.failOpen;
  }

  maskingOf(model: string): ModelMasking | undefined {
    return this.masking.get(model);
  }

  /** alias -> version of a model's live aliases. */
  aliases(model: string): Readonly<Record<string, string>> {
    return this.policy.aliases[model] ?? {};
  }
}
