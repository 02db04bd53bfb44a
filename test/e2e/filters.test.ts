import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { logDir, waitFor } from '../harness/process.js';
import { request, type HttpAnswer } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { registerSecrets } from '../harness/secrets.js';

/**
 * The filter service through real Envoy: API keys and JWTs, access rules, request rate limits, token quotas
 * (JSON and SSE usage), masking, and fail-closed / fail-open when the filter service is down. The control
 * plane runs with its embedded filter service and a registry file (MLflow is covered by registry-routing).
 */

const KEYS = { acme: 'acme-key-0123456789', beta: 'beta-key-0123456789', quota: 'quota-key-0123456789', gamma: 'gamma-key-0123456789' } as const;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
// In the suite's log directory, so the end-of-run secret scan reads it too.
const AUDIT_FILE = join(logDir(), `audit-filters-${process.pid}.jsonl`);

let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let echo: EchoUpstream;
let echo2: EchoUpstream;
let llm: EchoUpstream;
let sse: EchoUpstream;
let base: string;
let dir: string;
let ports: { listener: number; filters: number; xds: number };
let signingKey: CryptoKey;
let otherKey: CryptoKey;
let jwks: object;

const post = (path: string, headers: Record<string, string> = {}, body = '{"x":1}'): Promise<HttpAnswer> =>
  request(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

async function jwt(key: CryptoKey, subject: string, expiresIn: string | number = '5m'): Promise<string> {
  const token = await new SignJWT({ roles: ['scorer'] })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer('https://idp.test/')
    .setAudience('flowgate')
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
  registerSecrets(token);
  return token;
}

/** The suite's policy; `rateLimitsVia` sets Gateway.rateLimits.via (absent: the default, decided in Check). */
function policy(listener: number, filters: number, jwks: object, rateLimitsVia?: 'envoy', auditFile = AUDIT_FILE): Record<string, string> {
  return {
    'gateway.yaml': `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, timeout: 1s, failOpen: false }
audit: { sink: file, path: ${auditFile} }
${rateLimitsVia ? `rateLimits: { via: ${rateLimitsVia} }\n` : ''}auth:
  jwt:
    - name: corp
      issuer: https://idp.test/
      audiences: [flowgate]
      jwks: ${JSON.stringify(jwks)}
      algorithms: [RS256]
      clockSkew: 5s
`,
    'consumers.yaml': `kind: Consumer
name: acme
roles: [scorer]
apiKeys: [{ id: acme-1, sha256: ${sha(KEYS.acme)} }]
rateLimits: [{ requests: 5, per: minute, model: limited }]
---
kind: Consumer
name: beta
apiKeys: [{ id: beta-1, sha256: ${sha(KEYS.beta)} }]
rateLimits: [{ requests: 5, per: minute, model: limited }]
---
kind: Consumer
name: gamma
apiKeys: [{ id: gamma-1, sha256: ${sha(KEYS.gamma)} }]
rateLimits: [{ requests: 5, per: minute, model: limited }, { requests: 2, per: minute, model: chat-limited }]
tokenQuotas: [{ tokens: 100000, per: hour, count: total, model: chat-limited }]
---
kind: Consumer
name: quota-user
apiKeys: [{ id: q-1, sha256: ${sha(KEYS.quota)} }]
tokenQuotas: [{ tokens: 1000, per: hour, count: total, model: chat }, { tokens: 1000, per: hour, count: total, model: chat-stream }]
---
kind: Consumer
name: svc-a
jwt: { issuer: corp, subject: svc-a }
`,
    'models.yaml': `kind: Model
name: secure
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { roles: [scorer], consumers: [svc-a] }
---
kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [acme, beta, gamma] }
---
kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [quota-user] }
---
kind: Model
name: chat-limited
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [gamma] }
---
kind: Model
name: chat-stream
upstream: { addressTemplate: "127.0.0.1:${sse.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [quota-user] }
---
kind: Model
name: masked
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
masking:
  request:
    fields: [{ path: customer.email }]
    patterns: [card, email]
    mode: replace
  maxBodyBytes: 2048
---
kind: Model
name: lenient
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { roles: [scorer] }
failOpen: true
---
kind: Model
name: plain
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
---
kind: Model
name: sticky
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 50 }
  sticky: { header: x-user-id }
`,
  };
}

const registryJson = (): string =>
  JSON.stringify({
    models: [
      ...['secure', 'limited', 'chat', 'chat-limited', 'chat-stream', 'masked', 'lenient', 'plain'].map((name) => ({ name, versions: [{ version: '1' }] })),
      {
        name: 'sticky',
        aliases: { champion: '1', challenger: '2' },
        versions: [echo, echo2].map((u, i) => ({ version: String(i + 1), tags: { 'flowgate.address': `127.0.0.1:${u.port}` } })),
      },
    ],
  });

beforeAll(async () => {
  registerSecrets(...Object.values(KEYS), 'jane@example.com', 'bob@example.org', '4111 1111 1111 1111');
  echo = await startEchoUpstream('echo');
  echo2 = await startEchoUpstream('echo2');
  // An LLM-ish upstream that reports 400 tokens per answer, as JSON and as a server-sent-event stream.
  llm = await startEchoUpstream('llm', () => ({ body: JSON.stringify({ choices: [{ message: { content: 'hi' } }], usage: { prompt_tokens: 100, completion_tokens: 300, total_tokens: 400 } }) }));
  sse = await startEchoUpstream('sse', () => ({
    headers: { 'content-type': 'text/event-stream' },
    body: [
      'data: {"choices":[{"delta":{"content":"Hel"}}]}',
      'data: {"choices":[{"delta":{"content":"lo"}}]}',
      'data: {"choices":[],"usage":{"prompt_tokens":150,"completion_tokens":250,"total_tokens":400}}',
      'data: [DONE]',
      '',
    ].join('\n\n'),
  }));
  const pair = await generateKeyPair('RS256');
  signingKey = pair.privateKey;
  otherKey = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };

  const [listener, filters, xds] = (await freePorts(3)) as [number, number, number];
  ports = { listener, filters, xds };
  dir = mkdtempSync(join(tmpdir(), 'flowgate-filters-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  jwks = { keys: [jwk] };
  for (const [file, text] of Object.entries(policy(listener, filters, jwks))) writeFileSync(join(policyDir, file), text);
  writeFileSync(join(dir, 'registry.json'), registryJson());
  flowgate = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), filtersPort: filters, xdsPort: xds, name: 'flowgate-filters' });
  envoy = await startEnvoy({ nodeId: 'e2e-filters', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: xds });
  base = `http://127.0.0.1:${listener}`;
  await waitFor('the plain route', async () => ((await post('/models/plain')).status === 200 ? true : undefined), { describe: () => flowgate.process.tail(30) });
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  for (const u of [echo, echo2, llm, sse]) await u?.close();
});

describe('authentication and authorization', () => {
  test('no key or a wrong key is 401, a key without access is 403, each with a JSON error', async () => {
    const none = await post('/models/secure');
    expect(none.status).toBe(401);
    expect(JSON.parse(none.text)).toMatchObject({ error: 'missing_credentials' });
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    const wrong = await post('/models/secure', { 'x-api-key': 'not-a-key' });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.text)).toMatchObject({ error: 'invalid_credentials' });
    const forbidden = await post('/models/secure', { authorization: `Bearer ${KEYS.beta}` });
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.text)).toMatchObject({ error: 'forbidden' });
  });

  test('a valid key is served; the upstream sees x-flowgate-consumer and never the credential', async () => {
    for (const headers of [{ authorization: `Bearer ${KEYS.acme}` }, { 'x-api-key': KEYS.acme }] as Record<string, string>[]) {
      const before = echo.received.length;
      const ok = await post('/models/secure', { ...headers, 'x-flowgate-consumer': 'spoofed' });
      expect(ok.status).toBe(200);
      const seen = echo.received.slice(before);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.headers['x-flowgate-consumer']).toBe('acme');
      expect(seen[0]?.headers.authorization).toBeUndefined();
      expect(seen[0]?.headers['x-api-key']).toBeUndefined();
      expect(JSON.stringify(seen[0]?.headers)).not.toContain(KEYS.acme);
    }
  });

  test('JWTs: valid is served; expired or signed by another key is 401', async () => {
    const ok = await post('/models/secure', { authorization: `Bearer ${await jwt(signingKey, 'svc-a')}` });
    expect(ok.status).toBe(200);
    expect(echo.received.at(-1)?.headers['x-flowgate-consumer']).toBe('svc-a');
    const expired = await post('/models/secure', { authorization: `Bearer ${await jwt(signingKey, 'svc-a', Math.floor(Date.now() / 1000) - 60)}` });
    expect(expired.status).toBe(401);
    expect(JSON.parse(expired.text)).toMatchObject({ error: 'expired_token' });
    const forged = await post('/models/secure', { authorization: `Bearer ${await jwt(otherKey, 'svc-a')}` });
    expect(forged.status).toBe(401);
  });

  test('a model without access rules and limits is not sent to the filter service', async () => {
    const calls = async (): Promise<number> => Number(/flowgate_filter_grpc_seconds_count\{method="Check"\} (\d+)/.exec(await flowgate.metrics())?.[1] ?? 0);
    const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));
    await settle();
    const before = await calls();
    for (let i = 0; i < 5; i++) expect((await post('/models/plain')).status).toBe(200);
    await settle();
    expect(await calls()).toBe(before);
    // ...while the same request to a protected model is one Check each.
    for (let i = 0; i < 5; i++) expect((await post('/models/secure', { 'x-api-key': KEYS.acme })).status).toBe(200);
    await settle();
    expect(await calls()).toBe(before + 5);
  });
});

describe('rate limits and token quotas', () => {
  test('a 5-per-minute consumer gets 5 answers, then 429 with RateLimit headers and Retry-After; another consumer is unaffected', async () => {
    const answers: HttpAnswer[] = [];
    for (let i = 0; i < 6; i++) answers.push(await post('/models/limited', { 'x-api-key': KEYS.acme }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429]);
    // Served answers carry the tightest limit's RateLimit fields.
    expect(answers.map((a) => a.headers.get('ratelimit-remaining'))).toEqual(['4', '3', '2', '1', '0', '0']);
    expect(answers[0]?.headers.get('ratelimit-limit')).toBe('5');
    expect(Number(answers[0]?.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
    const last = answers.at(-1);
    expect(last?.headers.get('ratelimit-limit')).toBe('5');
    expect(last?.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(last?.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
    expect(Number(last?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(last?.headers.get('content-type')).toBe('application/json');
    expect(last?.headers.get('x-envoy-ratelimited')).toBe('true');
    const body = JSON.parse(last?.text ?? '{}') as Record<string, unknown>;
    expect(body).toEqual({ error: 'rate_limited', message: 'rate limit exceeded', retry_after_seconds: Number(last?.headers.get('retry-after')) });
    expect((await post('/models/limited', { 'x-api-key': KEYS.beta })).status).toBe(200);
    // Decided inside Check: one filter call per request, Envoy never asks ShouldRateLimit.
    const metrics = await flowgate.metrics();
    expect(Number(/flowgate_filter_grpc_seconds_count\{method="Check"\} (\d+)/.exec(metrics)?.[1] ?? 0)).toBeGreaterThanOrEqual(7);
    expect(/flowgate_filter_grpc_seconds_count\{method="ShouldRateLimit"\} [1-9]/.test(metrics)).toBe(false);
  });

  test.each([
    ['JSON usage', '/models/chat'],
    ['SSE usage', '/models/chat-stream'],
  ])('token quota with %s: 400 tokens per answer, 1,000 per hour, the third request is refused', async (_what, path) => {
    const first = await post(path, { 'x-api-key': KEYS.quota });
    const second = await post(path, { 'x-api-key': KEYS.quota });
    expect([first.status, second.status]).toEqual([200, 200]);
    // The charge is made when the answer completes; give the stream's end a moment to be counted.
    const third = await waitFor('the third request to be refused', async () => {
      const a = await post(path, { 'x-api-key': KEYS.quota });
      return a.status === 429 ? a : a.status === 200 ? undefined : a;
    }, { timeoutMs: 5000 }).catch(() => undefined);
    expect(third?.status).toBe(429);
    expect(JSON.parse(third?.text ?? '{}')).toMatchObject({ error: 'token_quota_exhausted' });
    expect(Number(third?.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

const TICKING = ['ratelimit-reset', 'retry-after', 'x-tokenquota-reset'];

/** What a caller sees of a limited answer: status, body and headers, the seconds-to-reset fields as "n > 0" (they tick). */
function limitedAnswer(a: HttpAnswer): { status: number; headers: Record<string, string>; body: unknown } {
  const headers: Record<string, string> = {};
  a.headers.forEach((value, name) => {
    if (['date', 'x-request-id', 'x-envoy-upstream-service-time', 'content-length'].includes(name)) return;
    headers[name] = TICKING.includes(name) && Number(value) > 0 ? 'n > 0' : value;
  });
  const body = a.status === 200 ? 'served' : (JSON.parse(a.text) as Record<string, unknown>);
  if (typeof body === 'object' && 'retry_after_seconds' in body) body.retry_after_seconds = body.retry_after_seconds === Number(a.headers.get('retry-after')) ? 'retry-after' : body.retry_after_seconds;
  return { status: a.status, headers, body };
}

describe('rate limits through Envoy\'s rate-limit filter (Gateway.rateLimits.via: envoy)', () => {
  let viaEnvoy: { flowgate: FlowgateProcess; envoy: EnvoyProcess; base: string } | undefined;

  beforeAll(async () => {
    const [listener, filters, xds] = (await freePorts(3)) as [number, number, number];
    const policyDir = join(dir, 'policy-via-envoy');
    mkdirSync(policyDir);
    for (const [file, text] of Object.entries(policy(listener, filters, jwks, 'envoy', join(logDir(), `audit-filters-envoy-${process.pid}.jsonl`)))) writeFileSync(join(policyDir, file), text);
    const fg = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), filtersPort: filters, xdsPort: xds, name: 'flowgate-filters-via-envoy' });
    viaEnvoy = { flowgate: fg, envoy: await startEnvoy({ nodeId: 'e2e-filters-via-envoy', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: xds }), base: `http://127.0.0.1:${listener}` };
    const { base: at } = viaEnvoy;
    await waitFor('the plain route via envoy', async () => ((await request(`${at}/models/plain`, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), { describe: () => fg.process.tail(30) });
  }, 120_000);
  afterAll(async () => {
    await viaEnvoy?.envoy.stop();
    await viaEnvoy?.flowgate.stop();
  });

  test('a 5-per-minute consumer gets the same 5 answers and the same 429 (status, body, headers) as when Check decides', async () => {
    const at = viaEnvoy?.base ?? '';
    /** `n` requests in a row from consumer gamma. */
    const sequence = async (url: string, model: string, n: number): Promise<HttpAnswer[]> => {
      const answers: HttpAnswer[] = [];
      for (let i = 0; i < n; i++) answers.push(await request(`${url}/models/${model}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEYS.gamma }, body: '{"x":1}' }));
      return answers;
    };
    const byCheck = await sequence(base, 'limited', 6);
    const byEnvoy = await sequence(at, 'limited', 6);
    expect(byEnvoy.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(byEnvoy.map((a) => a.headers.get('ratelimit-remaining'))).toEqual(['4', '3', '2', '1', '0', '0']);
    expect(byEnvoy.map(limitedAnswer)).toEqual(byCheck.map(limitedAnswer));
    expect(limitedAnswer(byEnvoy.at(-1) as HttpAnswer).body).toEqual({ error: 'rate_limited', message: 'rate limit exceeded', retry_after_seconds: 'retry-after' });
    // A model with a token quota as well: the same answers, the quota's fields beside the limit's.
    const quotaByCheck = await sequence(base, 'chat-limited', 3);
    const quotaByEnvoy = await sequence(at, 'chat-limited', 3);
    expect(quotaByEnvoy.map((a) => a.status)).toEqual([200, 200, 429]);
    expect(quotaByEnvoy.map(limitedAnswer)).toEqual(quotaByCheck.map(limitedAnswer));
    // Another consumer is unaffected.
    expect((await request(`${at}/models/limited`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEYS.acme }, body: '{}' })).status).toBe(200);
    // Decided by ShouldRateLimit, once per request; the Check counts no limit (one call each, authorization only).
    const metrics = await viaEnvoy?.flowgate.metrics();
    expect(Number(/flowgate_filter_grpc_seconds_count\{method="ShouldRateLimit"\} (\d+)/.exec(metrics ?? '')?.[1] ?? 0)).toBe(10);
  });
});

describe('sticky canary', () => {
  test('one caller always lands on the same version; callers spread over both by weight', async () => {
    const versionOf = async (user: string): Promise<string | null> => (await post('/models/sticky', { 'x-user-id': user })).headers.get('x-flowgate-model-version');
    const byUser = new Map<string, string | null>();
    for (let u = 0; u < 40; u++) {
      const first = await versionOf(`user-${u}`);
      byUser.set(`user-${u}`, first);
      for (let i = 0; i < 5; i++) expect(await versionOf(`user-${u}`)).toBe(first);
    }
    const counts = [...byUser.values()].reduce<Record<string, number>>((acc, v) => ({ ...acc, [v ?? 'none']: (acc[v ?? 'none'] ?? 0) + 1 }), {});
    expect(Object.keys(counts).sort()).toEqual(['1', '2']);
    expect(counts['1']).toBeGreaterThan(8);
    expect(counts['2']).toBeGreaterThan(8);
    // A client cannot pick its version by sending the hash itself.
    const spoofed = new Set<string | null>();
    for (let i = 0; i < 30; i++) spoofed.add((await post('/models/sticky', { 'x-flowgate-sticky-hash': '1' })).headers.get('x-flowgate-model-version'));
    expect(spoofed.size).toBe(2);
  });
});

describe('masking', () => {
  test('the upstream receives the card number and e-mail masked', async () => {
    const before = echo.received.length;
    const body = JSON.stringify({ customer: { email: 'jane@example.com', name: 'Jane' }, note: 'card 4111 1111 1111 1111, mail bob@example.org', amount: 12.5 });
    const a = await post('/models/masked', {}, body);
    expect(a.status).toBe(200);
    const seen = echo.received.slice(before);
    expect(seen).toHaveLength(1);
    const forwarded = seen[0]?.body ?? '';
    expect(forwarded).not.toContain('4111');
    expect(forwarded).not.toContain('jane@example.com');
    expect(forwarded).not.toContain('bob@example.org');
    expect(JSON.parse(forwarded)).toMatchObject({ customer: { name: 'Jane' }, amount: 12.5 });
  });

  test('an oversized body is 413 and broken JSON is 400, and neither reaches the model', async () => {
    const before = echo.received.length;
    const big = await post('/models/masked', {}, JSON.stringify({ note: 'x'.repeat(4000) }));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.text)).toMatchObject({ error: 'body_too_large' });
    const broken = await post('/models/masked', {}, '{"customer": {"email": "a@b.c"');
    expect(broken.status).toBe(400);
    expect(JSON.parse(broken.text)).toMatchObject({ error: 'invalid_json' });
    expect(echo.received.length).toBe(before);
  });
});

test('the audit log has a line per decision, with codes and findings, and no credential or masked value', async () => {
  const lines = await waitFor('the audit file', () => {
    const text = existsSync(AUDIT_FILE) ? readFileSync(AUDIT_FILE, 'utf8') : '';
    return text.includes('"kind":"masking"') ? text : undefined;
  });
  const events = lines.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events.some((e) => e.kind === 'authz' && e.decision === 'deny' && e.code === 'missing_credentials' && e.model === 'secure')).toBe(true);
  expect(events.some((e) => e.kind === 'authz' && e.decision === 'allow' && e.consumer === 'acme')).toBe(true);
  expect(events.some((e) => e.kind === 'ratelimit' && e.decision === 'deny' && e.consumer === 'acme')).toBe(true);
  expect(events.some((e) => e.kind === 'masking' && JSON.stringify(e.findings).includes('card'))).toBe(true);
  expect(events.some((e) => e.kind === 'usage' && e.consumer === 'quota-user')).toBe(true);
  for (const secret of [...Object.values(KEYS), 'jane@example.com', '4111 1111 1111 1111']) expect(lines).not.toContain(secret);
});

test('no key, token or masked value appears in the metrics', async () => {
  const metrics = await flowgate.metrics();
  for (const secret of [...Object.values(KEYS), 'jane@example.com', '4111 1111 1111 1111', sha(KEYS.acme)]) expect(metrics).not.toContain(secret);
  expect(metrics).toContain('flowgate_filter_decisions_total{stage="authz",result="deny",reason="missing_credentials"}');
});

describe('the filter service down', () => {
  test('fail closed by default, fail open where the policy says; served again when it is back', async () => {
    await flowgate.stop();
    const before = echo.received.length;
    // Refused without reaching the model: 503 (status_on_error), or 500 when the call dies on a connection the
    // stopping filter service was closing.
    for (let i = 0; i < 5; i++) {
      const down = await post('/models/secure', { 'x-api-key': KEYS.acme });
      expect([500, 503], `${down.status} ${down.text}`).toContain(down.status);
    }
    expect(echo.received.length).toBe(before);
    expect((await post('/models/secure', { 'x-api-key': KEYS.acme })).status).toBe(503);
    const lenient = await post('/models/lenient');
    expect(lenient.status).toBe(200);
    expect((await post('/models/plain')).status).toBe(200);

    flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), filtersPort: ports.filters, xdsPort: ports.xds, name: 'flowgate-filters-2' });
    await waitFor('the secure model served again', async () => ((await post('/models/secure', { 'x-api-key': KEYS.acme })).status === 200 ? true : undefined), { timeoutMs: 30_000 });
    expect((await post('/models/lenient')).status).toBe(401);
  }, 90_000);
});
