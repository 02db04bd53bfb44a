import { createHash } from 'node:crypto';
import { CREDENTIAL_HEADERS, Header, MODEL_CONTEXT_KEY, RATE_LIMIT_CONTEXT_KEY, RATE_LIMIT_IN_CHECK } from '../../../src/contract/filter-wire.js';
import type { CheckRequest } from '../../../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { setHeaders } from '../grpc.js';
import { GrpcStatus } from '../grpc-status.js';
import { batchedChild, decisions } from '../metrics.js';
import { denied, jsonBody, unavailable } from '../responses.js';

/**
 * ext_authz Check: who is calling, may they call this model (and the version they pin), is their token
 * quota spent, does the request fit the model's rate limits (when the route asks Check to decide them:
 * one filter call per request instead of Check then ShouldRateLimit), and for a sticky model the hash
 * Envoy's weighted split reads.
 */

// Metric children counted in plain numbers (metrics.ts): a labelled inc() hashes its labels on every call.
const rateAllowed = batchedChild(decisions, { stage: 'ratelimit', result: 'allow', reason: 'ok' });
const rateRefused = batchedChild(decisions, { stage: 'ratelimit', result: 'deny', reason: 'over_limit' });
const rateStoreFailed = batchedChild(decisions, { stage: 'ratelimit', result: 'error', reason: 'store_unavailable' });
const allowedConsumer = batchedChild(decisions, { stage: 'authz', result: 'allow', reason: 'consumer' });
const allowedAnonymous = batchedChild(decisions, { stage: 'authz', result: 'allow', reason: 'anonymous' });

/**
 * The headers of a 429 for a request over its rate limit, as Envoy's rate-limit filter answers one: the
 * tightest limit's RateLimit fields and Retry-After, and `x-envoy-ratelimited`.
 */
const RATE_LIMITED_HEADERS = { 'x-envoy-ratelimited': 'true' } as const;

/** A stable number from the caller's sticky key (Envoy takes it modulo the split's total weight). */
export function stickyHash(model: string, key: string): string {
  return createHash('sha256').update(model).update('\u0000').update(key).digest().readBigUInt64BE(0).toString();
}

/** The CheckResponse for one request. */
export async function check(engine: FilterEngine | undefined, audit: AuditLog, req: CheckRequest): Promise<object> {
  if (!engine) throw unavailable('the filter service has no policy yet');
  const http = req.attributes?.request?.http;
  const model = req.attributes?.context_extensions?.[MODEL_CONTEXT_KEY];
  if (!http || !model) {
    decisions.inc({ stage: 'authz', result: 'deny', reason: 'bad_request' });
    return denied(400, jsonBody('bad_request', 'the check request has no HTTP attributes or no model'), {});
  }
  const headers = http.headers ?? {};
  const decision = await engine.authorizer.authorize({ model, headers });
  const requestId = headers[Header.requestId];
  if (!decision.allow) {
    decisions.inc({ stage: 'authz', result: 'deny', reason: decision.code });
    audit.write({ kind: 'authz', model, consumer: decision.consumer, decision: 'deny', code: decision.code, status: decision.status, requestId });
    return denied(decision.status, decision.body, decision.headers);
  }
  const quota = await engine.quotas.check({ consumer: decision.consumer, model });
  if (!quota.allowed) {
    const status = quota.storeError ? 503 : 429;
    const code = quota.storeError ? 'store_unavailable' : 'token_quota_exhausted';
    decisions.inc({ stage: 'quota', result: 'deny', reason: code });
    audit.write({ kind: 'quota', model, consumer: decision.consumer, decision: 'deny', code, status, requestId });
    const message = quota.storeError ? 'the quota store is unavailable' : `token quota exhausted: ${quota.tightest?.name ?? ''}`;
    return denied(status, jsonBody(code, message, quota.retryAfterSeconds !== undefined ? { retry_after_seconds: quota.retryAfterSeconds } : {}), quota.headers);
  }
  let responseHeaders = quota.headers;
  if (req.attributes?.context_extensions?.[RATE_LIMIT_CONTEXT_KEY] === RATE_LIMIT_IN_CHECK) {
    const rate = await engine.limiter.check({ consumer: decision.consumer, model });
    if (rate.storeError && !rate.allowed) {
      // As ShouldRateLimit does: Envoy then applies the route's failure mode (a 503 when it fails closed).
      rateStoreFailed.inc();
      throw unavailable('the rate-limit store is unavailable');
    }
    if (!rate.allowed) {
      rateRefused.inc();
      audit.write({ kind: 'ratelimit', model, consumer: decision.consumer, decision: 'deny', status: 429, code: 'rate_limited', requestId });
      const body = jsonBody('rate_limited', 'rate limit exceeded', { retry_after_seconds: rate.retryAfterSeconds ?? 0 });
      return denied(429, body, { ...quota.headers, ...rate.headers, ...RATE_LIMITED_HEADERS });
    }
    // An allowed request's one audit line is the authz line below: it is written only once the limits passed.
    rateAllowed.inc();
    if (rate.tightest !== undefined) responseHeaders = quota.tightest === undefined ? rate.headers : { ...quota.headers, ...rate.headers };
  }
  (decision.consumer ? allowedConsumer : allowedAnonymous).inc();
  audit.write({ kind: 'authz', model, consumer: decision.consumer, decision: 'allow', requestId });
  const sticky = engine.model(model)?.sticky;
  // A pipeline route keeps the caller's credential: the pipeline service presents it again on every step,
  // through Envoy, so each step is judged as the caller (filters/pipelines/server.ts).
  const removed = (): string[] => (engine.pipeline(model) === undefined ? decision.headersToRemove : decision.headersToRemove.filter((h) => !(CREDENTIAL_HEADERS as readonly string[]).includes(h)));
  if (!sticky) return engine.allows.answer(model, decision.headersToSet, removed, responseHeaders);
  let toSet = decision.headersToSet;
  let toRemove = removed();
  // Never the client's own value: a caller must not choose its version through the hash.
  const key = headers[sticky.header];
  if (key) toSet = { ...toSet, [Header.stickyHash]: stickyHash(model, key) };
  else toRemove = [...toRemove, Header.stickyHash];
  return {
    status: { code: GrpcStatus.OK },
    ok_response: { headers: setHeaders(toSet), headers_to_remove: toRemove, response_headers_to_add: setHeaders(responseHeaders) },
  };
}
