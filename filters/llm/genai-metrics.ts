import { Histogram } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';

/**
 * The GenAI metrics of the OpenTelemetry semantic conventions (gen_ai.client.token.usage,
 * gen_ai.server.request.duration, gen_ai.server.time_to_first_token, gen_ai.server.time_per_output_token),
 * in Prometheus form: dots become underscores, seconds get their unit suffix, the buckets are the ones the
 * conventions advise. Labels are the conventions' attributes plus `version`, the MLflow version that
 * answered; model labels are policy names (bounded), never what an upstream writes in its answer.
 */

const LABELS = ['gen_ai_operation_name', 'gen_ai_request_model', 'gen_ai_response_model', 'gen_ai_provider_name', 'version'] as const;

export const genAiTokenUsage = new Histogram({
  name: 'gen_ai_client_token_usage',
  help: 'Tokens used per LLM request (gen_ai.client.token.usage), by token type (input, output), as the upstream reported them (or estimated).',
  labelNames: [...LABELS, 'gen_ai_token_type'] as const,
  buckets: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
  registers: [metricsRegistry],
});

export const genAiRequestDuration = new Histogram({
  name: 'gen_ai_server_request_duration_seconds',
  help: "Time from the request reaching the model's routes to the answer's last byte (gen_ai.server.request.duration).",
  labelNames: LABELS,
  buckets: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
  registers: [metricsRegistry],
});

export const genAiTimeToFirstToken = new Histogram({
  name: 'gen_ai_server_time_to_first_token_seconds',
  help: "Time from the request reaching the model's routes to a stream's first byte of answer (gen_ai.server.time_to_first_token); streams only.",
  labelNames: LABELS,
  buckets: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
  registers: [metricsRegistry],
});

export const genAiTimePerOutputToken = new Histogram({
  name: 'gen_ai_server_time_per_output_token_seconds',
  help: 'Time per output token after the first of a stream (gen_ai.server.time_per_output_token): (last byte - first byte) / (output tokens - 1).',
  labelNames: LABELS,
  buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5],
  registers: [metricsRegistry],
});

/** gen_ai.operation.name of an endpoint path of the OpenAI API (Anthropic's messages are chat). */
export function genAiOperation(path: string): string {
  const p = path.split('?')[0] ?? '';
  if (p.endsWith('/chat/completions') || p.endsWith('/messages')) return 'chat';
  if (p.endsWith('/completions')) return 'text_completion';
  if (p.endsWith('/embeddings')) return 'embeddings';
  return 'unknown';
}
