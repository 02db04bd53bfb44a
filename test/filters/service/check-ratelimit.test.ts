import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { FilterService } from '../../../filters/service/service.js';
import { MemoryStore, type CounterStore } from '../../../filters/store/counters/store.js';
import { RATE_LIMIT_CONTEXT_KEY, RATE_LIMIT_IN_CHECK } from '../../../src/contract/filter-wire.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';

/**
 * Request rate limits decided inside Check (the route's `ratelimit: check` context extension): the same
 * decision, 429 answer and headers Envoy's rate-limit filter gave with ShouldRateLimit, in one call.
 */

const KEY = 'check-rl-key-0123456789';
const sha = createHash('sha256').update(KEY).digest('hex');

function service(store: CounterStore = new MemoryStore(), failOpen = false): { service: FilterService; audit: MemoryAuditLog } {
  const files = {
    'p.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: k, sha256: ${sha} }]
rateLimits: [{ requests: 2, per: minute, model: limited }]
---
kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
access: { consumers: [acme] }${failOpen ? '\nfailOpen: true' : ''}
---
kind: Model
name: anyone
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
rateLimits: [{ requests: 1, per: hour }]
`,
  };
  const load = policyFromFiles('t', Object.entries(files).map(([file, text]) => ({ file, text })));
  if (!load.ok) throw new Error(formatIssues(load.issues, 't'));
  const audit = new MemoryAuditLog();
  const s = new FilterService({ store, audit });
  s.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
  return { service: s, audit };
}

interface Answer {
  status?: { code?: number };
  ok_response?: { response_headers_to_add?: { header: { key: string; value: string } }[] };
  denied_response?: { status?: { code?: number }; headers?: { header: { key: string; value: string } }[]; body?: string };
}

const headersOf = (list: { header: { key: string; value: string } }[] | undefined): Record<string, string> =>
  Object.fromEntries((list ?? []).map((h) => [h.header.key, h.header.value]));

function request(model: string, extensions: Record<string, string>, key: string | undefined = KEY): object {
  return { attributes: { request: { http: { headers: { ...(key && { 'x-api-key': key }), 'x-request-id': 'r1' } } }, context_extensions: { model, ...extensions } } };
}

const inCheck = { [RATE_LIMIT_CONTEXT_KEY]: RATE_LIMIT_IN_CHECK };

describe('rate limits in Check', () => {
  test('counts each request, answers RateLimit fields while it fits, then a 429 as the rate-limit filter gave', async () => {
    const { service: s, audit } = service();
    const first = (await s.check(request('limited', inCheck))) as Answer;
    const second = (await s.check(request('limited', inCheck))) as Answer;
    expect([first.status?.code, second.status?.code]).toEqual([grpc.status.OK, grpc.status.OK]);
    expect(headersOf(first.ok_response?.response_headers_to_add)).toMatchObject({ 'ratelimit-limit': '2', 'ratelimit-remaining': '1' });
    expect(headersOf(second.ok_response?.response_headers_to_add)).toMatchObject({ 'ratelimit-limit': '2', 'ratelimit-remaining': '0' });
    const third = (await s.check(request('limited', inCheck))) as Answer;
    expect(third.denied_response?.status?.code).toBe(429);
    const headers = headersOf(third.denied_response?.headers);
    expect(headers).toMatchObject({ 'content-type': 'application/json', 'x-envoy-ratelimited': 'true', 'ratelimit-limit': '2', 'ratelimit-remaining': '0' });
    const retry = Number(headers['retry-after']);
    expect(retry).toBeGreaterThan(0);
    expect(JSON.parse(third.denied_response?.body ?? '')).toEqual({ error: 'rate_limited', message: 'rate limit exceeded', retry_after_seconds: retry });
    // One line per Check: an allowed request's authz line (written once the limits passed), a refusal's ratelimit line.
    expect(audit.events.map((e) => `${e.kind}:${e.decision}`)).toEqual(['authz:allow', 'authz:allow', 'ratelimit:deny']);
    expect(audit.events[2]).toMatchObject({ consumer: 'acme', model: 'limited', status: 429, code: 'rate_limited', requestId: 'r1' });
  });

  test('a route without the context extension is not counted (its limits go through ShouldRateLimit)', async () => {
    const { service: s } = service();
    for (let i = 0; i < 4; i++) {
      const a = (await s.check(request('limited', {}))) as Answer;
      expect(a.status?.code).toBe(grpc.status.OK);
      expect(headersOf(a.ok_response?.response_headers_to_add)['ratelimit-limit']).toBeUndefined();
    }
    expect(((await s.check(request('limited', inCheck))) as Answer).status?.code).toBe(grpc.status.OK);
  });

  test('anonymous callers share the model limit; a refusal never counts as a consumer', async () => {
    const { service: s } = service();
    expect(((await s.check(request('anyone', inCheck, undefined))) as Answer).status?.code).toBe(grpc.status.OK);
    expect(((await s.check(request('anyone', inCheck, undefined))) as Answer).denied_response?.status?.code).toBe(429);
  });

  test('on the OpenAI API the 429 carries OpenAI error shape with rate_limit_exceeded', async () => {
    const { service: s } = service();
    await s.check(request('limited', { ...inCheck, api: 'openai' }));
    await s.check(request('limited', { ...inCheck, api: 'openai' }));
    const refused = (await s.check(request('limited', { ...inCheck, api: 'openai' }))) as Answer;
    expect(refused.denied_response?.status?.code).toBe(429);
    expect(JSON.parse(refused.denied_response?.body ?? '')).toEqual({
      error: { message: 'rate limit exceeded; retry after the time in the retry-after header', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' },
    });
    expect(Number(headersOf(refused.denied_response?.headers)['retry-after'])).toBeGreaterThan(0);
  });

  test('the counter store down: UNAVAILABLE when the model fails closed (Envoy answers 503), allowed when it fails open', async () => {
    const broken: CounterStore = {
      kind: 'redis',
      incr: () => Promise.reject(new Error('down')),
      get: () => Promise.reject(new Error('down')),
      admit: () => Promise.reject(new Error('down')),
      close: () => Promise.resolve(),
    };
    await expect(service(broken).service.check(request('limited', inCheck))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(((await service(broken, true).service.check(request('limited', inCheck))) as Answer).status?.code).toBe(grpc.status.OK);
  });
});
