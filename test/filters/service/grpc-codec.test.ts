import { describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { AUTHORIZATION_SERVICE, RATE_LIMIT_SERVICE, setHeaders } from '../../../filters/service/grpc.js';
import { FilterService } from '../../../filters/service/service.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { decodeMessage } from '../../../src/proto/codec.js';
import { denied, jsonBody } from '../../../filters/service/responses.js';
import { messageType } from '../../../src/proto/root.js';

/**
 * Check's answers are encoded as built (no fromObject) and its requests handed over as decoded (no
 * toObject): the bytes and the fields read must be those of the general conversion.
 */

const response = messageType('envoy.service.auth.v3.CheckResponse');
const general = (value: object): Buffer => Buffer.from(response.encode(response.fromObject(value)).finish());
const check = AUTHORIZATION_SERVICE.Check;
if (!check) throw new Error('no Check method');

describe('Check codec', () => {
  test.each([
    ['allowed', { status: { code: 0 }, ok_response: { headers: setHeaders({ 'x-flowgate-consumer': 'acme' }), headers_to_remove: ['authorization', 'x-api-key'], response_headers_to_add: setHeaders({ 'RateLimit-Limit': '5' }) } }],
    ['allowed, nothing to add', { status: { code: 0 }, ok_response: { headers: [], headers_to_remove: [], response_headers_to_add: [] } }],
    ['refused', denied(429, jsonBody('rate_limited', 'rate limit exceeded', { retry_after_seconds: 3 }), { 'Retry-After': '3', 'x-envoy-ratelimited': 'true' })],
    ['unauthenticated', denied(401, jsonBody('missing_credentials', 'no key'), { 'www-authenticate': 'Bearer realm="flowgate"' })],
  ])('%s: the same bytes as fromObject', (_what, value) => {
    const bytes = check.responseSerialize(value);
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytes.equals(general(value))).toBe(true);
  });

  test('a request decodes to the fields the handler reads', () => {
    const request = messageType('envoy.service.auth.v3.CheckRequest');
    const value = { attributes: { request: { http: { headers: { 'x-api-key': 'k', ':path': '/models/m' } } }, context_extensions: { model: 'm', ratelimit: 'check' } } };
    const decoded = check.requestDeserialize(Buffer.from(request.encode(request.fromObject(value)).finish())) as typeof value;
    expect(decoded.attributes.request.http.headers).toEqual({ 'x-api-key': 'k', ':path': '/models/m' });
    expect(decoded.attributes.context_extensions).toEqual({ model: 'm', ratelimit: 'check' });
    const empty = check.requestDeserialize(Buffer.alloc(0)) as { attributes?: { request?: unknown } | null };
    expect(empty.attributes?.request).toBeUndefined();
  });
});

describe('ShouldRateLimit codec', () => {
  const rlResponse = messageType('envoy.service.ratelimit.v3.RateLimitResponse');
  const rlRequest = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
  const srl = RATE_LIMIT_SERVICE.ShouldRateLimit;
  if (!srl) throw new Error('no ShouldRateLimit method');

  test('answers of the real handler (OK, then OVER_LIMIT) encode as fromObject does, and decode to their codes', async () => {
    const sha = createHash('sha256').update('codec-key-0123456789').digest('hex');
    const text = `kind: Consumer\nname: acme\napiKeys: [{ id: k, sha256: ${sha} }]\nrateLimits: [{ requests: 1, per: minute, model: m }]\n---\nkind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\n`;
    const load = policyFromFiles('t', [{ file: 'p.yaml', text }]);
    if (!load.ok) throw new Error('policy');
    const service = new FilterService({ store: new MemoryStore(), audit: new MemoryAuditLog() });
    service.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
    const wire = Buffer.from(rlRequest.encode(rlRequest.fromObject({ domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'm' }, { key: 'consumer', value: 'acme' }] }] })).finish());
    const codes: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      const answer = await service.shouldRateLimit(srl.requestDeserialize(wire) as never);
      const bytes = srl.responseSerialize(answer);
      expect(bytes.equals(Buffer.from(rlResponse.encode(rlResponse.fromObject(answer)).finish()))).toBe(true);
      const decoded = decodeMessage<{ overall_code: string; statuses: { current_limit: { unit: string; requests_per_unit: number } }[] }>('envoy.service.ratelimit.v3.RateLimitResponse', bytes);
      expect(decoded.statuses[0]?.current_limit).toMatchObject({ unit: 'MINUTE', requests_per_unit: 1 });
      codes.push(decoded.overall_code);
    }
    expect(codes).toEqual(['OK', 'OVER_LIMIT']);
  });
});
