import type { LlmPricingRules } from '../../src/contract/filter-policy.js';

/** What one answer cost, in the price table's currency units. */
export interface Cost {
  readonly amount: number;
  readonly currency: string;
}

/** The prices of one version: its own when the table lists it, else the model's. */
export function pricesOf(pricing: LlmPricingRules, version: string | undefined): { inputPer1M: number; outputPer1M: number } {
  const own = version === undefined ? undefined : pricing.versions.find((v) => v.version === version);
  return own ?? { inputPer1M: pricing.inputPer1M, outputPer1M: pricing.outputPer1M };
}

/** The cost of `input` and `output` tokens at a version's prices. */
export function costOf(pricing: LlmPricingRules, version: string | undefined, tokens: { readonly input: number; readonly output: number }): Cost {
  const p = pricesOf(pricing, version);
  return { amount: (tokens.input * p.inputPer1M + tokens.output * p.outputPer1M) / 1_000_000, currency: pricing.currency };
}
