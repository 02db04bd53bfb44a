import { apiErrorBody, LLM_RATE_LIMITED } from '../contract/api-errors.js';
import type { ApiKind } from '../contract/filter-wire.js';
import { typed } from '../proto/codec.js';

/**
 * The answers Envoy makes up itself, rewritten so every refusal a caller gets is a JSON error
 * (`{"error": code, "message": ...}`) with a status that says what happened: a filter-service call that failed
 * on a fail-closed route is a 503 (Envoy's own ext_proc answer would be an empty 500), an upstream that
 * cannot be reached a 503, one that did not answer in time a 504. Matched on Envoy's response code details,
 * which name the cause exactly; answers Flowgate's routes and filter service write themselves (already JSON)
 * are left alone. On the OpenAI API's listener the same answers come in OpenAI's error shape (Anthropic's
 * on the messages routes), picked by the route's name, and the rate limiter's 429 is given that shape too.
 */

const CEL = 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter';
const JSON_TYPE = { header: { key: 'content-type', value: 'application/json' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };

interface Mapper {
  readonly when: string;
  readonly status: number;
  readonly error: string;
  readonly message: string;
}

const MAPPERS: readonly Mapper[] = [
  {
    when: "response.code_details == 'ext_authz_error' || response.code_details.startsWith('ext_proc_error') || response.code_details == 'rate_limiter_error'",
    status: 503,
    error: 'filter_unavailable',
    message: "the gateway's filter service could not decide on this request, and this model fails closed; try again",
  },
  { when: "response.code_details == 'no_healthy_upstream'", status: 503, error: 'upstream_unavailable', message: 'no healthy version of this model can take the request right now' },
  {
    when: "response.code_details.startsWith('upstream_reset_before_response_started') || response.code_details == 'cluster_not_found'",
    status: 503,
    error: 'upstream_unavailable',
    message: 'the model version could not be reached',
  },
  {
    when: "response.code_details == 'upstream_response_timeout' || response.code_details == 'upstream_per_try_timeout' || response.code_details == 'upstream_per_try_idle_timeout'",
    status: 504,
    error: 'upstream_timeout',
    message: 'the model version did not answer in time',
  },
  { when: "response.code_details == 'request_payload_too_large'", status: 413, error: 'body_too_large', message: 'the request body is larger than this route accepts' },
  { when: "response.code_details == 'stream_idle_timeout'", status: 408, error: 'idle_timeout', message: 'the request stalled for too long' },
];

/** On the LLM API only: the rate limiter's own 429 (elsewhere the rate-limit service's body is Flowgate's shape already). */
const RATE_LIMITED: Mapper = { when: "response.code_details == 'request_rate_limited'", status: 429, error: LLM_RATE_LIMITED.code, message: LLM_RATE_LIMITED.message };

function mapper(m: Mapper, api: ApiKind, routes?: string): object {
  const when = routes === undefined ? m.when : `xds.route_name.startsWith('${routes}') && (${m.when})`;
  return {
    filter: { extension_filter: { name: 'envoy.access_loggers.extension_filters.cel', typed_config: typed(CEL, { expression: when }) } },
    status_code: { value: m.status },
    body: { inline_string: apiErrorBody(api, m.status, m.error, m.message) },
    headers_to_add: [JSON_TYPE],
  };
}

/** The HTTP connection manager's local_reply_config; `llmApi` for the listener serving the OpenAI API. */
export function localReplyConfig(llmApi = false): object {
  if (!llmApi) return { mappers: MAPPERS.map((m) => mapper(m, 'flowgate')) };
  const llm = [...MAPPERS, RATE_LIMITED];
  return {
    mappers: [...llm.map((m) => mapper(m, 'anthropic', 'llm:messages:')), ...llm.map((m) => mapper(m, 'openai', 'llm:')), ...MAPPERS.map((m) => mapper(m, 'flowgate'))],
  };
}
