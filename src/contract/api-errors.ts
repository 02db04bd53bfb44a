import type { ApiKind } from './filter-wire.js';

/**
 * The error bodies of the APIs the gateway speaks, built from one (status, code, message): Flowgate's own
 * `{"error": code, "message": ...}`, OpenAI's `{"error": {"message", "type", "param", "code"}}` and Anthropic's
 * `{"type": "error", "error": {"type", "message"}}`. The control plane writes them into Envoy's own answers
 * (direct responses, local replies) and the filter service into its refusals, so an SDK sees one shape from
 * every part of the gateway and raises its usual exception for the status. This module imports nothing.
 */

const OPENAI_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'invalid_request_error',
  405: 'invalid_request_error',
  408: 'timeout_error',
  409: 'conflict_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
};

const ANTHROPIC_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  413: 'request_too_large',
  415: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error',
  529: 'overloaded_error',
};

/**
 * The LLM APIs' answer to a request over its rate limit: the code OpenAI's own 429s carry, and a message
 * pointing at Retry-After (Flowgate's own API answers `rate_limited` with `retry_after_seconds`).
 */
export const LLM_RATE_LIMITED = { code: 'rate_limit_exceeded', message: 'rate limit exceeded; retry after the time in the retry-after header' } as const;

/** OpenAI's error `type` for a status. */
export function openaiErrorType(status: number): string {
  return OPENAI_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
}

/** The error object of an API's body (for a caller that adds it to something else). */
export function apiErrorObject(api: ApiKind, status: number, code: string, message: string, extra: Readonly<Record<string, unknown>> = {}): Record<string, unknown> {
  switch (api) {
    case 'openai':
      return { error: { message, type: openaiErrorType(status), param: null, code } };
    case 'anthropic':
      return { type: 'error', error: { type: ANTHROPIC_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error'), message } };
    case 'flowgate':
      return { error: code, message, ...extra };
  }
}

/**
 * The body of a refusal in the API's shape, one line of JSON. `extra` fields (live versions, retry seconds)
 * are kept in Flowgate's own shape only: the other APIs' clients do not read them, and they could say more
 * than the caller may know.
 */
export function apiErrorBody(api: ApiKind, status: number, code: string, message: string, extra: Readonly<Record<string, unknown>> = {}): string {
  return `${JSON.stringify(apiErrorObject(api, status, code, message, extra))}\n`;
}
