import { Counter, Histogram, type LabelValues } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';

/** The filter service's own metrics: time per call and decisions by stage. */

/** A counter child counted in a plain number (batchedChild). */
export interface BatchedChild {
  inc(): void;
}

const batches = new WeakMap<object, { readonly labels: object; pending: number }[]>();

/**
 * A child of `counter` for the hot paths: its increments are summed in a plain number and added to the
 * counter when the metrics are read (the counter's `collect`, which must call flushBatched), because
 * prom-client's own labelled child hashes and validates its labels on every inc() (6 % of an in-process
 * Check). The child shows at 0 from the start.
 */
export function batchedChild<T extends string>(counter: Counter<T>, labels: LabelValues<T>): BatchedChild {
  const child = { labels, pending: 0 };
  let list = batches.get(counter);
  if (!list) batches.set(counter, (list = []));
  list.push(child);
  counter.inc(labels, 0);
  return {
    inc: () => {
      child.pending += 1;
    },
  };
}

/** Adds the batched children's counts to the counter: call it from the counter's `collect`. */
export function flushBatched<T extends string>(counter: Counter<T>): void {
  for (const child of batches.get(counter) ?? []) {
    if (child.pending === 0) continue;
    counter.inc(child.labels as LabelValues<T>, child.pending);
    child.pending = 0;
  }
}

export const callLatency = new Histogram({
  name: 'flowgate_filter_grpc_seconds',
  help: 'Time to answer one filter-service call (Check, ShouldRateLimit, or one ext_proc message).',
  labelNames: ['method'] as const,
  buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [metricsRegistry],
});

export const decisions = new Counter({
  name: 'flowgate_filter_decisions_total',
  help: 'Filter decisions by stage (authz, quota, ratelimit, masking) and result (allow, deny, error).',
  labelNames: ['stage', 'result', 'reason'] as const,
  registers: [metricsRegistry],
  collect() {
    flushBatched(this);
  },
});

export const llmCacheResults = new Counter({
  name: 'flowgate_llm_cache_total',
  help: 'LLM answer cache lookups by model and result (hit: served from the cache; miss: sent to the model; bypass: not cacheable).',
  labelNames: ['model', 'result'] as const,
  registers: [metricsRegistry],
});

export const llmCost = new Counter({
  name: 'flowgate_llm_cost_total',
  help: "Cost of LLM answers at the policy's price table (llm.pricing), in currency units, by the model and version that served them, consumer and currency.",
  labelNames: ['model', 'version', 'consumer', 'currency'] as const,
  registers: [metricsRegistry],
});

export const auditDropped = new Counter({
  name: 'flowgate_audit_dropped_total',
  help: 'Audit lines dropped because the audit sink did not keep up (more than 16 MB waiting to be written).',
  registers: [metricsRegistry],
});
