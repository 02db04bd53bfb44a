import type { LlmModelRules, ModelRules } from '../../src/contract/filter-policy.js';
import { LLM_ENDPOINT_PATHS, LLM_ENDPOINTS, type LlmEndpoint } from '../../src/contract/filter-wire.js';
import { resolveModelRef, type ModelRef } from '../../src/contract/model-ref.js';
import type { FilterEngine } from '../service/engine.js';

/**
 * The LLM models of one filter-policy version, indexed for the router and the adapter: every name a request's
 * `model` may use, and the API's paths. Built once per engine (engines are swapped whole on a new policy).
 */

export type LlmModel = ModelRules & { readonly llm: LlmModelRules };

export class LlmCatalog {
  readonly pathPrefix: string;
  private readonly byName = new Map<string, LlmModel>();
  private readonly byModel = new Map<string, LlmModel>();

  constructor(engine: FilterEngine) {
    this.pathPrefix = engine.policy.llm?.pathPrefix ?? '/v1';
    for (const m of engine.policy.models) {
      if (!m.llm) continue;
      const model = m as LlmModel;
      this.byModel.set(m.name, model);
      for (const n of m.llm.names) if (!this.byName.has(n)) this.byName.set(n, model);
    }
  }

  /** Every LLM model, in policy order. */
  models(): LlmModel[] {
    return [...this.byModel.values()];
  }

  model(name: string): LlmModel | undefined {
    return this.byModel.get(name);
  }

  /** What a request's `model` names, or undefined when it names no model. */
  resolve(text: string): (ModelRef & { readonly rules: LlmModel }) | undefined {
    const ref = resolveModelRef(text, (n) => this.byName.get(n)?.name);
    const rules = ref && this.byModel.get(ref.model);
    return ref && rules ? { ...ref, rules } : undefined;
  }

  /** The endpoint a request path names (query ignored), 'models' / 'model' for the model list and one model, or undefined. */
  endpointOf(path: string): { endpoint: LlmEndpoint } | { models: true } | { model: string } | undefined {
    const bare = path.split('?')[0] ?? '';
    const prefix = this.pathPrefix === '/' ? '' : this.pathPrefix;
    if (!bare.startsWith(`${prefix}/`)) return undefined;
    const rest = bare.slice(prefix.length);
    if (rest === '/models') return { models: true };
    if (rest.startsWith('/models/') && rest.length > '/models/'.length) {
      try {
        return { model: decodeURIComponent(rest.slice('/models/'.length)) };
      } catch {
        return undefined;
      }
    }
    const endpoint = LLM_ENDPOINTS.find((e) => LLM_ENDPOINT_PATHS[e] === rest);
    return endpoint ? { endpoint } : undefined;
  }
}

const catalogs = new WeakMap<FilterEngine, LlmCatalog>();

/** The catalog of an engine, built on first use. */
export function llmCatalog(engine: FilterEngine): LlmCatalog {
  let catalog = catalogs.get(engine);
  if (!catalog) {
    catalog = new LlmCatalog(engine);
    catalogs.set(engine, catalog);
  }
  return catalog;
}
