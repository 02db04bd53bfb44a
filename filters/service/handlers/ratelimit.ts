import { DescriptorKey } from '../../../src/contract/filter-wire.js';
import type { RateLimitRequest } from '../../../src/generated/envoy/service/ratelimit/v3/RateLimitRequest.js';
import type { RateLimitDescriptor } from '../../ratelimit/limiter.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { decisions } from '../metrics.js';
import { jsonBody, unavailable } from '../responses.js';

/** ShouldRateLimit: counts the request against every limit on its (model, consumer) descriptors. */
export async function shouldRateLimit(engine: FilterEngine | undefined, audit: AuditLog, req: RateLimitRequest): Promise<object> {
  if (!engine) throw unavailable('the filter service has no policy yet');
  const descriptors: RateLimitDescriptor[] = (req.descriptors ?? []).map((d) => ({ entries: (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' })) }));
  const answer = await engine.limiter.shouldRateLimit(req.domain ?? '', descriptors, req.hits_addend ?? 0);
  const entry = (key: string): string | undefined => descriptors.flatMap((d) => d.entries).find((e) => e.key === key)?.value;
  const model = entry(DescriptorKey.model) ?? '-';
  if (answer.storeError && answer.overallCode === 'OVER_LIMIT') {
    decisions.inc({ stage: 'ratelimit', result: 'error', reason: 'store_unavailable' });
    throw unavailable('the rate-limit store is unavailable');
  }
  const over = answer.overallCode === 'OVER_LIMIT';
  decisions.inc({ stage: 'ratelimit', result: over ? 'deny' : 'allow', reason: over ? 'over_limit' : 'ok' });
  audit.write({ kind: 'ratelimit', model, consumer: entry(DescriptorKey.consumer), decision: over ? 'deny' : 'allow', ...(over && { status: 429, code: 'rate_limited' }) });
  const headers = { ...answer.headers, ...(over && { 'content-type': 'application/json' }) };
  return {
    overall_code: answer.overallCode,
    statuses: answer.statuses.map((s) => ({
      code: s.code,
      ...(s.currentLimit && { current_limit: { requests_per_unit: s.currentLimit.requestsPerUnit, unit: s.currentLimit.unit } }),
      limit_remaining: s.limitRemaining,
      duration_until_reset: { seconds: String(Math.ceil(s.durationUntilResetMs / 1000)), nanos: 0 },
    })),
    response_headers_to_add: Object.entries(headers).map(([key, value]) => ({ key, value })),
    ...(over && { raw_body: Buffer.from(jsonBody('rate_limited', 'rate limit exceeded', { retry_after_seconds: Number(answer.headers['retry-after'] ?? answer.headers['Retry-After'] ?? 0) })) }),
  };
}
