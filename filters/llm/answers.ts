import { apiErrorBody } from '../../src/contract/api-errors.js';
import type { ApiKind } from '../../src/contract/filter-wire.js';

/**
 * What the LLM router and adapter answer Envoy for one ext_proc message, and how it is encoded: go on (with
 * header and body changes, a route-cache clear, a narrower processing mode for the rest of the exchange), or
 * reply to the client at once. Header values travel as `raw_value` bytes, the form Envoy's ext_proc reads.
 */

export interface HeaderEdits {
  /** Replace (or add). */
  readonly set?: Readonly<Record<string, string>>;
  /** Add a value beside any the request already has (pins: ext_authz then sees both and judges them). */
  readonly append?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

export type LlmAnswer =
  | { readonly kind: 'continue'; readonly headers?: HeaderEdits; readonly body?: Buffer; readonly clearRouteCache?: boolean; readonly modeOverride?: object }
  | { readonly kind: 'reply'; readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> };

export const CONTINUE: LlmAnswer = { kind: 'continue' };

/** A reply with an error body in the API's shape. */
export function errorReply(api: ApiKind, status: number, code: string, message: string, headers: Readonly<Record<string, string>> = {}): LlmAnswer {
  return { kind: 'reply', status, body: apiErrorBody(api, status, code, message), headers };
}

/** A 200 reply with a JSON body. */
export function jsonReply(value: unknown): LlmAnswer {
  return { kind: 'reply', status: 200, body: `${JSON.stringify(value)}\n` };
}

function option(key: string, value: string, append: boolean): object {
  // ext_proc reads the older `append` flag (append_action is ignored there): true adds a value, false replaces.
  return { header: { key, raw_value: Buffer.from(value, 'utf8') }, append: { value: append } };
}

function headerMutation(edits: HeaderEdits | undefined): object | undefined {
  if (!edits) return undefined;
  const set = [...Object.entries(edits.set ?? {}).map(([k, v]) => option(k, v, false)), ...Object.entries(edits.append ?? {}).map(([k, v]) => option(k, v, true))];
  const remove = edits.remove ?? [];
  if (set.length === 0 && remove.length === 0) return undefined;
  return { ...(set.length > 0 && { set_headers: set }), ...(remove.length > 0 && { remove_headers: [...remove] }) };
}

const DETAILS: Readonly<Record<number, string>> = { 400: 'llm_bad_request', 401: 'llm_unauthorized', 404: 'llm_not_found', 405: 'llm_method_not_allowed', 502: 'llm_bad_gateway', 503: 'llm_unavailable' };

/** The ProcessingResponse for `phase` carrying `answer`. */
export function processingResponse(phase: 'request_headers' | 'request_body' | 'response_headers' | 'response_body', answer: LlmAnswer): object {
  if (answer.kind === 'reply') {
    return {
      immediate_response: {
        status: { code: answer.status },
        headers: { set_headers: Object.entries({ 'content-type': 'application/json', ...answer.headers }).map(([k, v]) => option(k, v, false)) },
        body: Buffer.from(answer.body, 'utf8'),
        details: answer.status === 200 ? 'llm_answered' : (DETAILS[answer.status] ?? 'llm_refused'),
      },
    };
  }
  const mutation = headerMutation(answer.headers);
  const response = {
    ...(mutation && { header_mutation: mutation }),
    ...(answer.body && { body_mutation: { body: answer.body } }),
    ...(answer.clearRouteCache && { clear_route_cache: true }),
  };
  return { [phase]: { response }, ...(answer.modeOverride && { mode_override: answer.modeOverride }) };
}
