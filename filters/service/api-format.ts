import { apiErrorBody, LLM_RATE_LIMITED } from '../../src/contract/api-errors.js';
import type { ApiKind } from '../../src/contract/filter-wire.js';

/**
 * The refusals of ext_authz and of a model's body processors, reshaped for the API the route serves: the
 * handlers write Flowgate's own `{"error": code, "message"}`, and on the OpenAI API (or Anthropic's
 * messages) the same refusal is given in that API's error shape, so its SDKs raise their usual exceptions.
 * There a model the caller may not use is not found, as OpenAI answers: a 403 would tell a stranger that
 * the model (or the pinned version) exists.
 */

type Json = Record<string, unknown>;

/** Codes whose status and code change on the LLM APIs, and the message they then carry. */
const HIDDEN: ReadonlySet<string> = new Set(['forbidden', 'version_not_live']);

function reshapeBody(api: ApiKind, status: number, body: string | Buffer): { status: number; body: string } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { error, message } = parsed as Json;
  if (typeof error !== 'string' || typeof message !== 'string') return undefined;
  if (HIDDEN.has(error)) return { status: 404, body: apiErrorBody(api, 404, 'model_not_found', 'The model does not exist or you do not have access to it.') };
  // A request limit decided in Check answers as Envoy's rate-limit filter's 429 does on these APIs (src/translate/local-replies.ts).
  if (error === 'rate_limited') return { status, body: apiErrorBody(api, status, LLM_RATE_LIMITED.code, LLM_RATE_LIMITED.message) };
  return { status, body: apiErrorBody(api, status, error, message) };
}

/** An ext_authz CheckResponse with its denial (if any) in the API's shape. */
export function reshapeCheck(api: ApiKind, response: object): object {
  const denied = (response as { denied_response?: { status?: { code?: number }; body?: string } }).denied_response;
  if (api === 'flowgate' || !denied || typeof denied.body !== 'string') return response;
  const reshaped = reshapeBody(api, denied.status?.code ?? 403, denied.body);
  if (!reshaped) return response;
  return { ...response, denied_response: { ...denied, status: { code: reshaped.status }, body: reshaped.body } };
}

/** An ext_proc ProcessingResponse with its immediate response (if any) in the API's shape. */
export function reshapeProcessing(api: ApiKind, response: object): object {
  const immediate = (response as { immediate_response?: { status?: { code?: number }; body?: Buffer } }).immediate_response;
  if (api === 'flowgate' || !immediate || !Buffer.isBuffer(immediate.body)) return response;
  const reshaped = reshapeBody(api, immediate.status?.code ?? 500, immediate.body);
  if (!reshaped) return response;
  return { ...response, immediate_response: { ...immediate, status: { code: reshaped.status }, body: Buffer.from(reshaped.body, 'utf8') } };
}
