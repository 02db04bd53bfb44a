import { Counter } from 'prom-client';
import { metricsRegistry } from '../../src/observability/metrics.js';
import { Header } from '../../src/contract/filter-wire.js';
import { CREDENTIAL_HEADERS } from './credentials.js';
import { batchedChild, flushBatched } from '../service/metrics.js';

/**
 * The authorization decision handed to the ext_authz server, how each kind is built, and the metric that
 * counts them. Messages and bodies are built from policy names and fixed text only, never from a credential.
 */

/** The header naming the authenticated consumer to the upstream (and to the rate-limit and quota filters). */
export const CONSUMER_HEADER = Header.consumer;

export type DenyCode = 'missing_credentials' | 'invalid_credentials' | 'expired_token' | 'forbidden' | 'unknown_model' | 'ambiguous_pin' | 'version_not_live';

/**
 * Let the request through. `headersToSet` must overwrite (not append to) what the client sent;
 * `headersToRemove` never names a header in `headersToSet`, so the order Envoy applies them in does not matter.
 */
export interface AuthzAllow {
  readonly allow: true;
  readonly consumer?: string;
  readonly roles: readonly string[];
  readonly headersToSet: Record<string, string>;
  readonly headersToRemove: string[];
}

/** Refuse the request with this status, JSON body and headers. */
export interface AuthzDeny {
  readonly allow: false;
  readonly status: 400 | 401 | 403 | 404;
  readonly code: DenyCode;
  readonly message: string;
  readonly consumer?: string;
  readonly body: string;
  readonly headers: Record<string, string>;
}

export type AuthzDecision = AuthzAllow | AuthzDeny;

/** Why a request was allowed: no credential needed, or how its consumer was identified. */
export const ALLOW_REASONS = ['anonymous', 'api_key', 'jwt'] as const;
/** Why a request was denied; finer than DenyCode, for operators, and still a bounded set. */
export const DENY_REASONS = [
  'unknown_model',
  'missing_credentials',
  'conflicting_credentials',
  'malformed_authorization',
  'invalid_api_key',
  'malformed_token',
  'unknown_issuer',
  'invalid_token',
  'expired_token',
  'unknown_subject',
  'jwks_unavailable',
  'forbidden',
  'forbidden_version',
  'no_allowed_version',
  'ambiguous_pin',
  'version_not_live',
] as const;
export type AllowReason = (typeof ALLOW_REASONS)[number];
export type DenyReason = (typeof DENY_REASONS)[number];

const decisions = new Counter({
  name: 'flowgate_filter_authz_decisions_total',
  help: 'ext_authz decisions, by result (allow|deny) and reason (how the caller was identified, or why it was refused).',
  labelNames: ['result', 'reason'] as const,
  registers: [metricsRegistry],
  collect() {
    flushBatched(this);
  },
});
// Every child counted in a plain number (and shown at 0): a labelled inc() hashes its labels on every call.
const allowed = new Map(ALLOW_REASONS.map((reason) => [reason, batchedChild(decisions, { result: 'allow', reason })]));
const denials = new Map(DENY_REASONS.map((reason) => [reason, batchedChild(decisions, { result: 'deny', reason })]));

/**
 * An allow decision that names the consumer upstream (when known), strips every credential, and tells Envoy
 * which live version to route to when that is decided here (a pin, or a caller limited to some versions).
 */
export function allowDecision(reason: AllowReason, caller?: { readonly consumer: string; readonly roles: readonly string[] }, routeVersion?: string): AuthzAllow {
  allowed.get(reason)?.inc();
  const headersToRemove: string[] = [...CREDENTIAL_HEADERS];
  const headersToSet: Record<string, string> = {};
  if (routeVersion !== undefined) headersToSet[Header.routeVersion] = routeVersion;
  else headersToRemove.push(Header.routeVersion);
  if (!caller) {
    // A client must never name itself to the upstream: with no consumer to set, drop whatever it sent.
    headersToRemove.push(CONSUMER_HEADER);
    return { allow: true, roles: [], headersToSet, headersToRemove };
  }
  headersToSet[CONSUMER_HEADER] = caller.consumer;
  return { allow: true, consumer: caller.consumer, roles: caller.roles, headersToSet, headersToRemove };
}

/** What a 401 tells the client about its bearer credential: absent, or presented and refused. */
export type Challenge = 'none' | 'invalid_token';

/** A deny decision with its JSON body; a 401 carries the Bearer challenge of RFC 6750. */
export function denyDecision(
  reason: DenyReason,
  d: { status: 400 | 401 | 403 | 404; code: DenyCode; message: string; consumer?: string | undefined; challenge?: Challenge; extra?: Record<string, unknown> },
): AuthzDeny {
  denials.get(reason)?.inc();
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (d.status === 401) {
    headers['www-authenticate'] = d.challenge === 'invalid_token' ? 'Bearer realm="flowgate", error="invalid_token"' : 'Bearer realm="flowgate"';
  }
  const body = `${JSON.stringify({ error: d.code, message: d.message, ...d.extra })}\n`;
  return { allow: false, status: d.status, code: d.code, message: d.message, ...(d.consumer !== undefined && { consumer: d.consumer }), body, headers };
}
