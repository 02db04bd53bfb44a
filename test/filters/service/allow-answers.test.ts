import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { AllowAnswers } from '../../../filters/service/allow-answers.js';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { AUTHORIZATION_SERVICE } from '../../../filters/service/grpc.js';
import { FilterService } from '../../../filters/service/service.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import { RATE_LIMIT_CONTEXT_KEY, RATE_LIMIT_IN_CHECK } from '../../../src/contract/filter-wire.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { messageType } from '../../../src/proto/root.js';

/**
 * Check's cached allow answers (filters/service/allow-answers.ts) and the API-key digest cache, through the
 * real service: the bytes are those of the whole encode, a cached allow never answers for another consumer,
 * and a policy change takes effect on the next request.
 */

const sha = (key: string): string => createHash('sha256').update(key).digest('hex');
const ACME = 'acme-key-0123456789';
const GLOBEX = 'globex-key-0123456789';
const response = messageType('envoy.service.auth.v3.CheckResponse');
const maybeCheck = AUTHORIZATION_SERVICE.Check;
if (!maybeCheck) throw new Error('no Check');
const check = maybeCheck;

function policy(opts: { acmeKey?: boolean; acmeRole?: string } = {}): ReturnType<typeof runPipeline>['filterPolicy'] {
  const text = `kind: Consumer
name: acme
roles: [${opts.acmeRole ?? 'caller'}]
apiKeys: [${opts.acmeKey === false ? '' : `{ id: a, sha256: ${sha(ACME)} }`}]
---
kind: Consumer
name: globex
roles: [caller]
apiKeys: [{ id: g, sha256: ${sha(GLOBEX)} }]
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
access: { roles: [caller] }
rateLimits: [{ requests: 1000, per: minute }]
---
kind: Model
name: open
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
---
kind: Model
name: sticky
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" }, sticky: { header: x-user-id } }
`;
  const load = policyFromFiles('t', [{ file: 'p.yaml', text }]);
  if (!load.ok) throw new Error(formatIssues(load.issues, 't'));
  return runPipeline({ policy: load.policy, registry: undefined }).filterPolicy;
}

function service(): FilterService {
  const s = new FilterService({ store: new MemoryStore(), audit: new MemoryAuditLog() });
  s.setPolicy(policy(), 'v1');
  return s;
}

function request(model: string, headers: Record<string, string>, limit = false): never {
  return { attributes: { request: { http: { headers: { 'x-request-id': 'r', ...headers } } }, context_extensions: { model, ...(limit && { [RATE_LIMIT_CONTEXT_KEY]: RATE_LIMIT_IN_CHECK }) } } } as never;
}

interface Decoded {
  status?: { code?: number };
  ok_response?: { headers?: { header: { key: string; value: string } }[]; headers_to_remove?: string[]; response_headers_to_add?: { header: { key: string; value: string } }[] };
  denied_response?: { status?: { code?: number } };
}

/** The answer as Envoy reads it: encoded by the method's codec, decoded back. */
async function wire(s: FilterService, req: never): Promise<{ bytes: Buffer; answer: Decoded }> {
  const bytes = check.responseSerialize(await s.check(req));
  const answer: Decoded = response.toObject(response.decode(bytes), { defaults: false });
  return { bytes, answer };
}

const setOf = (answer: Decoded): Record<string, string> => Object.fromEntries((answer.ok_response?.headers ?? []).map((h) => [h.header.key, h.header.value]));

describe('cached allow answers', () => {
  test('encode to the bytes of the whole answer, with and without per-request headers', async () => {
    const s = service();
    for (const [model, headers, limit] of [
      ['guarded', { 'x-api-key': ACME }, true],
      ['guarded', { 'x-api-key': ACME }, false],
      ['open', {}, false],
      ['open', { authorization: `Bearer ${GLOBEX}` }, false],
      ['sticky', { 'x-api-key': ACME, 'x-user-id': 'u1' }, false],
    ] as const) {
      for (let i = 0; i < 2; i++) {
        const answer = await s.check(request(model, headers, limit));
        // The plain fields the answer reads as, through the general conversion: the same bytes.
        const plain = JSON.parse(JSON.stringify(answer)) as object;
        const general = Buffer.from(response.encode(response.fromObject(plain)).finish());
        expect(check.responseSerialize(answer).equals(general), `${model} ${i}`).toBe(true);
      }
    }
    // guarded and open allows were cached (one per model and consumer); sticky's answer never is.
    expect(s.current()?.allows.size).toBe(3);
    const limited = await wire(s, request('guarded', { 'x-api-key': ACME }, true));
    const remaining = (limited.answer.ok_response?.response_headers_to_add ?? []).find((h) => h.header.key === 'ratelimit-remaining');
    expect(Number(remaining?.header.value)).toBeLessThan(1000);
  });

  test('a forged consumer header or another key never reaches another consumer’s cached allow', async () => {
    const s = service();
    expect(setOf((await wire(s, request('guarded', { 'x-api-key': ACME }))).answer)['x-flowgate-consumer']).toBe('acme');
    const forged = await wire(s, request('guarded', { 'x-api-key': GLOBEX, 'x-flowgate-consumer': 'acme' }));
    expect(setOf(forged.answer)['x-flowgate-consumer']).toBe('globex');
    // Anonymous on an open model after acme's allow there: the consumer header is removed, not acme's set.
    await wire(s, request('open', { 'x-api-key': ACME }));
    const anonymous = await wire(s, request('open', { 'x-flowgate-consumer': 'acme' }));
    expect(setOf(anonymous.answer)['x-flowgate-consumer']).toBeUndefined();
    expect(anonymous.answer.ok_response?.headers_to_remove).toContain('x-flowgate-consumer');
    // A repeated credential header (Envoy joins the values) is not the key: refused.
    const repeated = await wire(s, request('guarded', { 'x-api-key': `${ACME},${ACME}` }));
    expect(repeated.answer.denied_response?.status?.code).toBe(401);
    // Without a credential the guarded model refuses, whatever was cached.
    expect((await wire(s, request('guarded', { 'x-flowgate-consumer': 'acme' }))).answer.denied_response?.status?.code).toBe(401);
  });

  test('a key removed from the policy, or a role taken away, stops working on the next request', async () => {
    const s = service();
    for (let i = 0; i < 3; i++) expect((await wire(s, request('guarded', { 'x-api-key': ACME }))).answer.status?.code ?? 0).toBe(0);
    s.setPolicy(policy({ acmeKey: false }), 'v2');
    expect((await wire(s, request('guarded', { 'x-api-key': ACME }))).answer.denied_response?.status?.code).toBe(401);
    expect(setOf((await wire(s, request('guarded', { 'x-api-key': GLOBEX }))).answer)['x-flowgate-consumer']).toBe('globex');
    s.setPolicy(policy({ acmeRole: 'visitor' }), 'v3');
    expect((await wire(s, request('guarded', { 'x-api-key': ACME }))).answer.denied_response?.status?.code).toBe(403);
    s.setPolicy(policy(), 'v4');
    expect(setOf((await wire(s, request('guarded', { 'x-api-key': ACME }))).answer)['x-flowgate-consumer']).toBe('acme');
  });

  test('the cache is bounded', () => {
    const answers = new AllowAnswers(2);
    const remove = (): string[] => ['authorization'];
    for (const consumer of ['a', 'b', 'c', 'a']) answers.answer('m', { 'x-flowgate-consumer': consumer }, remove, {});
    expect(answers.size).toBe(2);
    // Names and values cannot run into each other in the key.
    const one = answers.answer('m', { ab: 'c' }, remove, {});
    const two = answers.answer('m', { a: 'bc' }, remove, {});
    expect(one.ok_response.headers).not.toEqual(two.ok_response.headers);
  });

  test('per-request headers of any length and script encode as the whole answer does', () => {
    const answers = new AllowAnswers();
    for (const added of [{ 'x-q': 'zoë ☃ 𝄞' }, { 'RateLimit-Limit': '5', 'x-long': 'v'.repeat(300) }, { 'x-empty': '' }, Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`h${i}`, 'x'.repeat(i * 7)]))]) {
      const answer = answers.answer('m', { 'x-flowgate-consumer': 'acme' }, () => ['authorization', 'x-api-key'], added);
      const plain = JSON.parse(JSON.stringify(answer)) as object;
      expect(check.responseSerialize(answer).equals(Buffer.from(response.encode(response.fromObject(plain)).finish()))).toBe(true);
    }
  });
});
