import { describe, expect, test } from 'vitest';
import { AUTHORIZATION_SERVICE, setHeaders } from '../../../filters/service/grpc.js';
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
