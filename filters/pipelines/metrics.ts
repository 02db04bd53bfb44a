import { Counter, Histogram } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';

/** The pipeline service's metrics: each pipeline run, and each step on its own. */

export const pipelineRuns = new Counter({
  name: 'flowgate_pipeline_requests_total',
  help: 'Pipeline runs, by pipeline and outcome (ok, or the failure code: step_failed, step_timeout, step_unreachable, step_input, step_answer, bad_request).',
  labelNames: ['pipeline', 'outcome'] as const,
  registers: [metricsRegistry],
});

export const pipelineSeconds = new Histogram({
  name: 'flowgate_pipeline_duration_seconds',
  help: 'Time to run one pipeline, all steps included.',
  labelNames: ['pipeline', 'outcome'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [metricsRegistry],
});

export const stepCalls = new Counter({
  name: 'flowgate_pipeline_step_requests_total',
  help: 'Pipeline step calls, by pipeline, step, model and outcome (the HTTP status the step answered, or timeout, unreachable, bad_input, cancelled).',
  labelNames: ['pipeline', 'step', 'model', 'outcome'] as const,
  registers: [metricsRegistry],
});

export const stepSeconds = new Histogram({
  name: 'flowgate_pipeline_step_duration_seconds',
  help: 'Time one pipeline step took, through Envoy and the model.',
  labelNames: ['pipeline', 'step', 'model'] as const,
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [metricsRegistry],
});
