import { Counter, Gauge, Histogram } from 'prom-client';
import { metricsRegistry } from '../observability/metrics.js';

/**
 * Per-model traffic metrics fed by Envoy's access logs. Labels are bounded by the aggregator: model and
 * version come only from model cluster names (capped, the rest under "overflow"), code_class is one of
 * 0 (no response), 1xx..5xx.
 */

/** Latency buckets in seconds: model inference ranges from a few milliseconds to tens of seconds. */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export const trafficMetrics = {
  requests: new Counter({
    name: 'flowgate_model_requests_total',
    help: 'Requests Envoy sent to a model version (from access logs), by model, version and status class (0: no response).',
    labelNames: ['model', 'version', 'code_class'] as const,
    registers: [metricsRegistry],
  }),
  duration: new Histogram({
    name: 'flowgate_model_request_duration_seconds',
    help: 'Time until the last byte of the model\'s answer (or the whole request when no upstream answered), by model and version.',
    labelNames: ['model', 'version'] as const,
    buckets: [...LATENCY_BUCKETS],
    registers: [metricsRegistry],
  }),
  firstByte: new Histogram({
    name: 'flowgate_model_time_to_first_byte_seconds',
    help: "Time until the model's first byte (the first token of a stream), by model and version.",
    labelNames: ['model', 'version'] as const,
    buckets: [...LATENCY_BUCKETS],
    registers: [metricsRegistry],
  }),
  llmCost: new Counter({
    name: 'flowgate_model_llm_cost_total',
    help: "Cost of LLM answers (the price table's, in currency units) from the access logs' flowgate.llm dynamic metadata, by model, version and currency.",
    labelNames: ['model', 'version', 'currency'] as const,
    registers: [metricsRegistry],
  }),
  entries: new Counter({
    name: 'flowgate_als_entries_total',
    help: 'HTTP access-log entries received, by what they were counted as (model; other: not a model cluster; unknown_cluster: a model-shaped cluster the control plane did not create; overflow: over the series cap; untrusted: from a stream that is not an identified Envoy, dropped).',
    labelNames: ['result'] as const,
    registers: [metricsRegistry],
  }),
  streams: new Gauge({
    name: 'flowgate_als_streams',
    help: 'Open access-log streams from Envoys.',
    registers: [metricsRegistry],
  }),
};
