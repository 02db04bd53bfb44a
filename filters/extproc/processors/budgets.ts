import { apiErrorBody } from '../../../src/contract/api-errors.js';
import type { LlmPricingRules } from '../../../src/contract/filter-policy.js';
import { errorMessage } from '../../../src/errors.js';
import { logger } from '../../../src/observability/log.js';
import { costOf } from '../../llm/pricing.js';
import { budgetKey, BUDGET_EXPIRY_SLACK_MS, NANOS, periodOf, type BudgetSpend } from '../../store/budgets.js';
import { estimateRequestTokens } from '../tokenizer.js';
import type { Exchange, ExchangeOutcome, PhaseResult, Processor, ProcessorRun } from '../processor.js';
import { apiOf } from './guardrails.js';

/**
 * LLM budgets (llm.budgets on a Model, budgets on a Consumer): before the request goes upstream, its worst
 * case is reserved against every budget that applies, in one atomic store call that refuses when any budget
 * would pass its amount (429 budget_exceeded, Retry-After until that period ends); when the exchange is over
 * the reservation is settled: replaced by the real cost (the usage processor's), all of it given back for a
 * request nobody served, what was used for one cut short.
 *
 * The worst case: the request's input-token estimate plus its max_tokens (or max_completion_tokens; else the
 * model's llm.maxOutputTokens) times `n`, at the highest prices of the model's table (the version Envoy will
 * pick is not known yet). An upstream that reports more input than the estimate spends past the reservation
 * when settled; later reservations then find less room.
 */

const log = logger('filters');

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const whole = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined);

/** The highest prices of a table: the worst a request can cost before its version is known. */
function worstPricing(p: LlmPricingRules): LlmPricingRules {
  return {
    ...p,
    inputPer1M: Math.max(p.inputPer1M, ...p.versions.map((v) => v.inputPer1M)),
    outputPer1M: Math.max(p.outputPer1M, ...p.versions.map((v) => v.outputPer1M)),
    versions: [],
  };
}

class BudgetRun implements ProcessorRun {
  private reserved: { items: BudgetSpend[]; amount: number } | undefined;
  private settled = false;

  constructor(
    private readonly ex: Exchange,
    private readonly pricing: LlmPricingRules,
    private readonly maxOutputTokens: number,
  ) {}

  async requestBody(body: Buffer): Promise<PhaseResult> {
    const rules = this.ex.engine.budgetRules(this.ex.model, this.ex.consumer);
    if (rules.length === 0) return undefined;
    let request: unknown;
    try {
      request = JSON.parse(body.toString('utf8'));
    } catch {
      request = undefined;
    }
    const json = isObject(request) ? request : {};
    const path = this.ex.requestHeaders[':path'] ?? '';
    const n = whole(json.n) ?? 1;
    const output = path.split('?')[0]?.endsWith('/embeddings') ? 0 : (whole(json.max_tokens) ?? whole(json.max_completion_tokens) ?? this.maxOutputTokens) * n;
    const worst = costOf(worstPricing(this.pricing), undefined, { input: estimateRequestTokens(json), output });
    const amount = Math.ceil(worst.amount * NANOS);
    const now = Date.now();
    const periods = rules.map((r) => ({ rule: r, ...periodOf(r.per, now) }));
    const items = periods.map(({ rule, startMs, endMs }) => ({
      key: budgetKey(rule.scope, rule.per, startMs, rule.currency),
      amount,
      limit: Math.floor(rule.amount * NANOS),
      expireAtMs: endMs + BUDGET_EXPIRY_SLACK_MS,
    }));
    let reservation;
    try {
      reservation = await this.ex.engine.budgets.reserve(items);
    } catch (err) {
      log.warn({ model: this.ex.model, err: errorMessage(err) }, 'budget store failed');
      if (this.ex.rules.failOpen) return undefined;
      return this.refuse(503, 'store_unavailable', 'the budget store could not decide; try again shortly', { 'retry-after': '1' });
    }
    if (!reservation.admitted) {
      const full = periods[reservation.refusedIndex ?? 0] ?? periods[0];
      const retry = Math.max(1, Math.ceil(((full?.endMs ?? now) - now) / 1000));
      this.ex.audit.write({ kind: 'budget', model: this.ex.model, consumer: this.ex.consumer, decision: 'deny', budget: full?.rule.name, requestId: this.ex.requestId });
      return this.refuse(429, 'budget_exceeded', `the budget ${full?.rule.name ?? ''} has no room for this request (its worst case costs ${worst.amount.toFixed(6)} ${worst.currency}); it resets in ${retry}s`, { 'retry-after': String(retry) });
    }
    this.reserved = { items, amount };
    return undefined;
  }

  async end(outcome: ExchangeOutcome): Promise<void> {
    if (!this.reserved || this.settled) return;
    this.settled = true;
    const usage = outcome === 'refused' ? undefined : this.ex.usage;
    // The asked model's prices, at the version that served (or the model's own after a fallback elsewhere).
    const real = usage ? Math.round(costOf(this.pricing, usage.model === this.ex.model ? usage.version : undefined, usage).amount * NANOS) : 0;
    const delta = real - this.reserved.amount;
    if (delta === 0) return;
    try {
      await this.ex.engine.budgets.settle(this.reserved.items.map((i) => ({ key: i.key, amount: delta, expireAtMs: i.expireAtMs })));
    } catch (err) {
      log.warn({ model: this.ex.model, err: errorMessage(err) }, 'budget settlement failed: the reservation stays spent');
    }
  }

  private refuse(status: number, code: string, message: string, headers: Record<string, string>): PhaseResult {
    const api = apiOf(this.ex.requestHeaders[':path'] ?? '');
    return { refuse: { status, code, message, headers, body: apiErrorBody(api === 'flowgate' ? 'openai' : api, status, code, message) } };
  }
}

export const budgetsProcessor: Processor = {
  name: 'budgets',
  open: (ex) => {
    const llm = ex.rules.llm;
    if (!llm?.pricing || !ex.engine.hasBudgets(ex.model)) return undefined;
    return new BudgetRun(ex, llm.pricing, llm.maxOutputTokens ?? 1);
  },
};

