import { GUARDRAIL_PII, type GuardrailAction, type GuardrailRule, type GuardrailRules } from '../contract/guardrails.js';
import type { ModelPolicy } from '../policy/schema/index.js';

/**
 * An LLM model's guardrails resolved: every rule with its action, detectors and failure mode decided here,
 * once (docs/llm-gateway.md, "Guardrails"). The filter service applies what it receives and decides nothing.
 */

export const DEFAULT_GUARDRAIL_ACTION: GuardrailAction = 'block';
/** A rule that cannot read a text refuses it unless it says failOpen. */
export const DEFAULT_GUARDRAIL_FAIL_OPEN = false;

type PolicyRule = NonNullable<NonNullable<ModelPolicy['llm']>['guardrails']>['input'][number];

function resolved(r: PolicyRule): GuardrailRule {
  return {
    name: r.name,
    type: r.type,
    action: r.action ?? DEFAULT_GUARDRAIL_ACTION,
    patterns: [...(r.patterns ?? [])],
    pii: r.type === 'pii' ? [...(r.pii ?? GUARDRAIL_PII)] : [],
    ...(r.maxTokens !== undefined && { maxTokens: r.maxTokens }),
    failOpen: r.failOpen ?? DEFAULT_GUARDRAIL_FAIL_OPEN,
  };
}

/** The model's guardrails, or undefined when it has no rule at all. */
export function guardrailRules(model: ModelPolicy): GuardrailRules | undefined {
  const g = model.llm?.guardrails;
  if (!g || (g.input.length === 0 && g.output.length === 0)) return undefined;
  return { input: g.input.map(resolved), output: g.output.map(resolved) };
}
