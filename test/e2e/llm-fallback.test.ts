import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeCertificates } from '../harness/certs.js';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiSdks, resultOf, type StreamResult } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request, type HttpAnswer } from '../harness/traffic.js';

/**
 * Fallback chains and external providers through real Envoy: a primary that answers 503, then 429 with
 * Retry-After (a cooldown: the next requests go straight to the fallback), then hangs, has every request
 * answered by its fallback, none lost; a stream that already started is never retried; a provider behind TLS
 * (SNI and CA checked) gets its key from the filter service's environment, and the key never reaches another
 * upstream, Envoy's configuration or any log. Anthropic's messages pass through with their own key header.
 */

const PROVIDER_KEY = 'sk-provider-test-0123456789abcdef';

let gateway: LlmGateway;
let primary: LlmUpstream;
let provider: LlmUpstream;
let backup: LlmUpstream;
let base: string;

function policy(providerPort: number, ca: string): Record<string, string> {
  return {
    'models.yaml': `kind: Model
name: primary
upstream: { addressTemplate: "127.0.0.1:${primary.port}" }
traffic: { stable: { version: 1 } }
llm:
  fallback: [gpt-4o-mini]
  idleTimeout: 1s
  maxCooldown: 3s
---
kind: Model
name: gpt-4o-mini
llm:
  upstream: provider
  provider: { url: "https://localhost:${providerPort}/v1", credential: { env: PROVIDER_KEY }, ca: ${ca} }
  fallback: [backup]
---
kind: Model
name: claude
llm:
  upstream: provider
  endpoints: [messages]
  modelNameOverride: claude-3-5-haiku-latest
  provider: { url: "https://localhost:${providerPort}/v1", api: anthropic, credential: { env: PROVIDER_KEY }, ca: ${ca} }
---
kind: Model
name: keyless
llm:
  upstream: provider
  provider: { url: "https://localhost:${providerPort}/v1", credential: { env: FLOWGATE_TEST_UNSET_KEY }, ca: ${ca} }
---
kind: Model
name: backup
upstream: { addressTemplate: "127.0.0.1:${backup.port}" }
traffic: { stable: { version: 1 } }
llm: {}
`,
  };
}

const chat = (model: string, text = 'hello'): Promise<HttpAnswer> =>
  request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: text }] }) });

function label(answer: HttpAnswer): string {
  if (answer.status !== 200) return `status ${answer.status}: ${answer.text.slice(0, 200)}`;
  const content = (JSON.parse(answer.text) as { choices: { message: { content: string } }[] }).choices[0]?.message.content ?? '';
  return /^\[([^\]]+)\]/.exec(content)?.[1] ?? content;
}

/** `n` chat requests at once to `model`; the labels of who answered each. */
async function burst(model: string, n: number): Promise<string[]> {
  return (await Promise.all(Array.from({ length: n }, (_, i) => chat(model, `request ${i}`)))).map(label);
}

beforeAll(async () => {
  registerSecrets(PROVIDER_KEY);
  const certs = makeCertificates({ provider: 'DNS:localhost' });
  primary = await startLlmUpstream({ name: 'primary' });
  backup = await startLlmUpstream({ name: 'backup' });
  provider = await startLlmUpstream({ name: 'provider', apiKey: PROVIDER_KEY, tls: certs.leaf('provider') });
  gateway = await startLlmGateway({
    name: 'flowgate-llm-fallback',
    files: () => policy(provider.port, certs.ca),
    registry: { json: JSON.stringify({ models: ['primary', 'backup'].map((name) => ({ name, versions: [{ version: '1' }] })) }) },
    env: { PROVIDER_KEY },
    readyModel: 'primary',
  });
  base = gateway.base;
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  for (const u of [primary, provider, backup]) await u?.close();
});

describe('a fallback chain', () => {
  test('a primary answering 503: every request is answered by the provider, with its key, over TLS', async () => {
    primary.clear();
    provider.clear();
    primary.behave({ status: 503 });
    expect(await burst('primary', 20)).toEqual(Array(20).fill('provider'));
    expect(primary.received).toHaveLength(20);
    // The stand-in answers 401 to any other key, so 20 answers mean 20 requests carried it.
    expect(provider.received.map((r) => r.headers.authorization)).toEqual(Array(20).fill(`Bearer ${PROVIDER_KEY}`));
    expect(provider.received.every((r) => r.headers.host === `localhost:${provider.port}` && (r.json as { model?: string }).model === 'gpt-4o-mini')).toBe(true);
    const answer = await chat('primary');
    expect(answer.headers.get('x-flowgate-model')).toBe('gpt-4o-mini');
    expect(answer.headers.get('x-flowgate-model-version')).toBe('1');
  });

  test('a 429 with Retry-After: the request falls back, and the primary is left alone while it cools down', async () => {
    primary.clear();
    primary.behave({ status: 429, retryAfter: 30 });
    expect(await burst('primary', 1)).toEqual(['provider']);
    expect(primary.received).toHaveLength(1);
    expect(await burst('primary', 10)).toEqual(Array(10).fill('provider'));
    // Cooling down: not one of the ten knocked on the primary.
    expect(primary.received).toHaveLength(1);
    // maxCooldown (3s) caps the 30 s asked for: then the primary is tried again.
    primary.behave({});
    await waitFor('the primary tried again after its cooldown', async () => (label(await chat('primary')) === 'primary' ? true : undefined), { timeoutMs: 15_000, intervalMs: 250 });
  });

  test('a hanging primary: each request is answered by the provider after the idle timeout', async () => {
    primary.clear();
    primary.behave({ hang: true });
    expect(await burst('primary', 10)).toEqual(Array(10).fill('provider'));
    expect(primary.received).toHaveLength(10);
    primary.behave({});
  });

  test('a stream that already started is never retried', async () => {
    primary.clear();
    provider.clear();
    // Slow enough that the first events reach the client before the cut.
    primary.behave({ abortAfterEvents: 3, chunkDelayMs: 150 });
    const outcome = await openaiSdks.node({ baseUrl: `${base}/v1`, operation: 'stream', args: { model: 'primary', messages: [{ role: 'user', content: 'one two three four five' }] } });
    // The client sees the first events, then the cut: never a second answer spliced in.
    if (outcome.ok) expect((outcome.result as StreamResult).text).toMatch(/^\[primary\]/);
    expect(primary.received).toHaveLength(1);
    expect(provider.received).toHaveLength(0);
    primary.behave({});
  });

  test("a provider's key never reaches the model after it in the chain", async () => {
    backup.clear();
    provider.behaveNext({ status: 503 });
    expect(await burst('gpt-4o-mini', 1)).toEqual(['backup']);
    const seen = backup.received[0];
    expect(seen).toBeDefined();
    expect(JSON.stringify(seen?.headers)).not.toContain(PROVIDER_KEY);
    expect(seen?.path).toBe('/v1/chat/completions');
    expect((seen?.json as { model?: string }).model).toBe('backup');
  });
});

describe('providers', () => {
  test('the key is in no Envoy configuration, and the control plane knows only where it is read', async () => {
    const dump = await gateway.envoy.admin('/config_dump?include_eds');
    expect(dump).toContain('localhost');
    expect(dump).not.toContain(PROVIDER_KEY);
    const ir = await (await fetch(`${gateway.flowgate.adminUrl}/debug/ir`)).text();
    expect(ir).toContain('PROVIDER_KEY');
    expect(ir).not.toContain(PROVIDER_KEY);
  });

  test("Anthropic's messages pass through with x-api-key and a default anthropic-version", async () => {
    provider.clear();
    const answer = await request(`${base}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude', max_tokens: 50, messages: [{ role: 'user', content: 'hi there' }] }),
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toMatchObject({ type: 'message', content: [{ type: 'text', text: '[provider] hi there' }], model: 'claude-3-5-haiku-latest' });
    expect(provider.received[0]?.headers['x-api-key']).toBe(PROVIDER_KEY);
    expect(provider.received[0]?.headers['anthropic-version']).toBe('2023-06-01');
    expect(provider.received[0]?.headers.authorization).toBeUndefined();
    const unknown = await request(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nope', max_tokens: 5, messages: [] }) });
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.text)).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });

  test('a provider whose key is missing is a 503 naming where the key should be, not an unauthenticated call', async () => {
    provider.clear();
    const answer = await chat('keyless');
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.text)).toMatchObject({ error: { code: 'provider_credential_unavailable' } });
    expect(answer.text).toContain('FLOWGATE_TEST_UNSET_KEY');
    expect(provider.received).toHaveLength(0);
  });

  test('the Python SDK reaches the provider through the chain', async () => {
    primary.behave({ status: 500 });
    const outcome = await openaiSdks.python({ baseUrl: `${base}/v1`, operation: 'chat', args: { model: 'primary', messages: [{ role: 'user', content: 'from python' }] } });
    expect(resultOf<{ choices: { message: { content: string } }[] }>(outcome).choices[0]?.message.content).toBe('[provider] from python');
    primary.behave({});
  });
});
