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

/** A histogram child observed in plain numbers (batchedHistogramChild). */
export interface BatchedHistogramChild {
  observe(seconds: number): void;
}

interface HistogramBatch {
  readonly labels: object;
  /** Observations per bucket of the histogram's upper bounds; the last slot is above every bound (+Inf only). */
  readonly buckets: number[];
  sum: number;
  count: number;
}

/** The part of prom-client's Histogram (15.x) a batch is added to: its per-label-set values and its bounds. */
interface HistogramValues {
  readonly upperBounds: readonly number[];
  hashMap: Record<string, { readonly labels: object; readonly bucketValues: Record<number, number>; sum: number; count: number }>;
}

const histogramBatches = new WeakMap<object, HistogramBatch[]>();

/**
 * A child of `histogram` for the hot paths, like batchedChild: observations are counted per bucket in plain
 * numbers and added to the histogram when the metrics are read (its `collect`, which must call
 * flushBatchedHistogram), because prom-client's `observe` validates and hashes its labels on every call.
 * Same buckets (a value counts in the first bound it is at or under), sum and count.
 */
export function batchedHistogramChild<T extends string>(histogram: Histogram<T>, labels: LabelValues<T>): BatchedHistogramChild {
  const bounds = (histogram as unknown as HistogramValues).upperBounds;
  const batch: HistogramBatch = { labels, buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
  let list = histogramBatches.get(histogram);
  if (!list) histogramBatches.set(histogram, (list = []));
  list.push(batch);
  histogram.zero(labels);
  return {
    observe: (seconds) => {
      let i = 0;
      while (i < bounds.length && !(seconds <= (bounds[i] as number))) i++;
      batch.buckets[i] = (batch.buckets[i] as number) + 1;
      batch.sum += seconds;
      batch.count += 1;
    },
  };
}

/** The histogram's values for exactly these labels. */
function entryOf(values: HistogramValues, labels: object): HistogramValues['hashMap'][string] | undefined {
  const names = Object.keys(labels);
  const same = (other: object): boolean =>
    Object.keys(other).length === names.length && names.every((n) => (other as Record<string, unknown>)[n] === (labels as Record<string, unknown>)[n]);
  for (const key in values.hashMap) {
    const entry = values.hashMap[key];
    if (entry !== undefined && same(entry.labels)) return entry;
  }
  return undefined;
}

/** Adds the batched children's observations to the histogram: call it from the histogram's `collect`. */
export function flushBatchedHistogram<T extends string>(histogram: Histogram<T>): void {
  const values = histogram as unknown as HistogramValues;
  for (const batch of histogramBatches.get(histogram) ?? []) {
    if (batch.count === 0) continue;
    let entry = entryOf(values, batch.labels);
    if (entry === undefined) {
      // reset() dropped it: start it again at 0.
      histogram.zero(batch.labels);
      entry = entryOf(values, batch.labels);
      if (entry === undefined) throw new Error('a batched histogram child has no values in its histogram (prom-client changed)');
    }
    for (let i = 0; i < values.upperBounds.length; i++) {
      const bound = values.upperBounds[i] as number;
      entry.bucketValues[bound] = (entry.bucketValues[bound] ?? 0) + (batch.buckets[i] as number);
      batch.buckets[i] = 0;
    }
    batch.buckets[values.upperBounds.length] = 0;
    entry.sum += batch.sum;
    entry.count += batch.count;
    batch.sum = 0;
    batch.count = 0;
  }
}

export const callLatency = new Histogram({
  name: 'flowgate_filter_grpc_seconds',
  help: 'Time to answer one filter-service call (Check, ShouldRateLimit, or one ext_proc message).',
  labelNames: ['method'] as const,
  buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [metricsRegistry],
  collect() {
    flushBatchedHistogram(this);
  },
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
