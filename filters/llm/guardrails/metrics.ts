import { Counter } from 'prom-client';
import { metricsRegistry } from '../../../src/observability/metrics.js';

/** Guardrail rules that fired, by model, rule, direction (input, output) and the action taken. */
export const guardrailHits = new Counter({
  name: 'flowgate_llm_guardrail_total',
  help: 'LLM guardrail rules that fired, by model, rule, direction (input, output) and action (block, mask, monitor).',
  labelNames: ['model', 'rule', 'direction', 'action'] as const,
  registers: [metricsRegistry],
});
