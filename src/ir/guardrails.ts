import { GUARDRAIL_PII, type GuardrailAction, type GuardrailRule, type GuardrailRules } from '../contract/guardrails.js';
import type { ModelPolicy } from '../policy/schema/index.js';

/**
 * An LLM model's guardrails resolved: every rule with its action, detectors and failure mode decided here,
 * once (docs/llm-gateway.md, "Guardrails"). The filter service applies what it receives and decides nothing.
 */

export const DEFAULT_GUARDRAIL_ACTION: GuardrailAction = 'block';
/** A rule that cannot read a text refuses it unless it says failOpen. */
export const DEFAULT_GUARDRAIL_FAIL_OPEN = false;
/**
 * How long a guardrail service may take by default: 200 ms, or half of Gateway.filterService.timeout when
 * that is shorter (Envoy gives up on the filter service after that timeout, so the rule's own must end first).
 */
export const DEFAULT_GUARDRAIL_SERVICE_TIMEOUT_MS = 200;
export const DEFAULT_PRESIDIO_LANGUAGE = 'en';

type PolicyRule = NonNullable<NonNullable<ModelPolicy['llm']>['guardrails']>['input'][number];

function resolved(r: PolicyRule, filterTimeoutMs: number): GuardrailRule {
  const service =
    r.url === undefined
      ? undefined
      : {
          url: r.url,
          timeoutMs: r.timeout ?? Math.min(DEFAULT_GUARDRAIL_SERVICE_TIMEOUT_MS, Math.max(1, Math.floor(filterTimeoutMs / 2))),
          ...(r.type === 'presidio' && { language: r.language ?? DEFAULT_PRESIDIO_LANGUAGE }),
          ...(r.entities && { entities: [...r.entities] }),
          ...(r.scoreThreshold !== undefined && { scoreThreshold: r.scoreThreshold }),
        };
  return {
    name: r.name,
    type: r.type,
    action: r.action ?? DEFAULT_GUARDRAIL_ACTION,
    patterns: [...(r.patterns ?? [])],
    pii: r.type === 'pii' ? [...(r.pii ?? GUARDRAIL_PII)] : [],
    ...(r.maxTokens !== undefined && { maxTokens: r.maxTokens }),
    failOpen: r.failOpen ?? DEFAULT_GUARDRAIL_FAIL_OPEN,
    ...(service && { service }),
  };
}

/** The model's guardrails, or undefined when it has no rule at all; `filterTimeoutMs`: Gateway.filterService.timeout. */
export function guardrailRules(model: ModelPolicy, filterTimeoutMs: number): GuardrailRules | undefined {
  const g = model.llm?.guardrails;
  if (!g || (g.input.length === 0 && g.output.length === 0)) return undefined;
  return { input: g.input.map((r) => resolved(r, filterTimeoutMs)), output: g.output.map((r) => resolved(r, filterTimeoutMs)) };
}
