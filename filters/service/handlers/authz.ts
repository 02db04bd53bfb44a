import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { CREDENTIAL_HEADERS, Header, MODEL_CONTEXT_KEY } from '../../../src/contract/filter-wire.js';
import type { CheckRequest } from '../../../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { setHeaders } from '../grpc.js';
import { decisions } from '../metrics.js';
import { denied, jsonBody, unavailable } from '../responses.js';

/**
 * ext_authz Check: who is calling, may they call this model (and the version they pin), is their token
 * quota spent, and for a sticky model the hash Envoy's weighted split reads.
 */

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
  decisions.inc({ stage: 'authz', result: 'allow', reason: decision.consumer ? 'consumer' : 'anonymous' });
  audit.write({ kind: 'authz', model, consumer: decision.consumer, decision: 'allow', requestId });
  const toSet: Record<string, string> = { ...decision.headersToSet };
  // A pipeline route keeps the caller's credential: the pipeline service presents it again on every step,
  // through Envoy, so each step is judged as the caller (filters/pipelines/server.ts).
  const keepCredentials = engine.pipeline(model) !== undefined;
  const toRemove = decision.headersToRemove.filter((h) => !(keepCredentials && (CREDENTIAL_HEADERS as readonly string[]).includes(h)));
  const sticky = engine.model(model)?.sticky;
  if (sticky) {
    // Never the client's own value: a caller must not choose its version through the hash.
    const key = headers[sticky.header];
    if (key) toSet[Header.stickyHash] = stickyHash(model, key);
    else toRemove.push(Header.stickyHash);
  }
  return {
    status: { code: grpc.status.OK },
    ok_response: { headers: setHeaders(toSet), headers_to_remove: toRemove, response_headers_to_add: setHeaders(quota.headers) },
  };
}
