import { DescriptorKey } from '../../../src/contract/filter-wire.js';
import type { RateLimitRequest } from '../../../src/generated/envoy/service/ratelimit/v3/RateLimitRequest.js';
import type { RateLimitDescriptor } from '../../ratelimit/limiter.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { batchedChild, decisions } from '../metrics.js';
import { protoEnum } from '../../../src/proto/root.js';
import { RateLimitAnswer, type AnswerStatus } from '../ratelimit-encode.js';
import { jsonBody, unavailable } from '../responses.js';

// Metric children counted in plain numbers (metrics.ts): a labelled inc() hashes its labels on every call.
const allowed = batchedChild(decisions, { stage: 'ratelimit', result: 'allow', reason: 'ok' });
const refused = batchedChild(decisions, { stage: 'ratelimit', result: 'deny', reason: 'over_limit' });
const storeFailed = batchedChild(decisions, { stage: 'ratelimit', result: 'error', reason: 'store_unavailable' });

// The answer is encoded as built (filters/service/grpc.ts): enums as their numbers.
const CODE = {
  OK: protoEnum('envoy.service.ratelimit.v3.RateLimitResponse.Code', 'OK'),
  OVER_LIMIT: protoEnum('envoy.service.ratelimit.v3.RateLimitResponse.Code', 'OVER_LIMIT'),
} as const;
const UNIT = Object.fromEntries(
  (['SECOND', 'MINUTE', 'HOUR', 'DAY'] as const).map((u) => [u, protoEnum('envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit', u)]),
) as Record<'SECOND' | 'MINUTE' | 'HOUR' | 'DAY', number>;

/** ShouldRateLimit: counts the request against every limit on its (model, consumer) descriptors. */
export async function shouldRateLimit(engine: FilterEngine | undefined, audit: AuditLog, req: RateLimitRequest): Promise<object> {
  if (!engine) throw unavailable('the filter service has no policy yet');
  const descriptors: RateLimitDescriptor[] = [];
  let model: string | undefined;
  let consumer: string | undefined;
  for (const d of req.descriptors ?? []) {
    const entries = (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' }));
    for (const e of entries) {
      if (model === undefined && e.key === DescriptorKey.model) model = e.value;
      else if (consumer === undefined && e.key === DescriptorKey.consumer) consumer = e.value;
    }
    descriptors.push({ entries });
  }
  const answer = await engine.limiter.shouldRateLimit(req.domain ?? '', descriptors, req.hits_addend ?? 0);
  if (answer.storeError && answer.overallCode === 'OVER_LIMIT') {
    storeFailed.inc();
    throw unavailable('the rate-limit store is unavailable');
  }
  const over = answer.overallCode === 'OVER_LIMIT';
  (over ? refused : allowed).inc();
  audit.write(over ? { kind: 'ratelimit', model: model ?? '-', consumer, decision: 'deny', status: 429, code: 'rate_limited' } : { kind: 'ratelimit', model: model ?? '-', consumer, decision: 'allow' });
  const headersToAdd: { key: string; value: string }[] = [];
  for (const key in answer.headers) headersToAdd.push({ key, value: answer.headers[key] as string });
  if (over) headersToAdd.push({ key: 'content-type', value: 'application/json' });
  const statuses: AnswerStatus[] = answer.statuses.map((s) => ({
    code: CODE[s.code],
    ...(s.currentLimit && { current_limit: { requests_per_unit: s.currentLimit.requestsPerUnit, unit: UNIT[s.currentLimit.unit] } }),
    limit_remaining: s.limitRemaining,
    duration_until_reset: { seconds: String(Math.ceil(s.durationUntilResetMs / 1000)), nanos: 0 },
  }));
  const body = over ? Buffer.from(jsonBody('rate_limited', 'rate limit exceeded', { retry_after_seconds: Number(answer.headers['retry-after'] ?? answer.headers['Retry-After'] ?? 0) })) : undefined;
  return new RateLimitAnswer(CODE[answer.overallCode], statuses, headersToAdd, body);
}
