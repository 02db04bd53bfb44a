import { mkdtempSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { FILTER_POLICY_SCHEMA, type FilterPolicy, type ModelRules } from '../../../src/contract/filter-policy.js';
import { AdapterRun, endpointTarget } from '../../../filters/llm/adapter.js';
import type { LlmAnswer } from '../../../filters/llm/answers.js';
import { llmCatalog } from '../../../filters/llm/catalog.js';
import { Cooldowns, retryAfterMs } from '../../../filters/llm/cooldown.js';
import { Credentials } from '../../../filters/llm/credentials.js';
import { AnswerCaches } from '../../../filters/llm/cache.js';
import { FilterEngine } from '../../../filters/service/engine.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';

/**
 * The LLM adapter, one attempt at a time: what it sets for each kind of upstream (path, host, key, body
 * model), that every attempt undoes what an earlier attempt of the same request left in the shared headers,
 * and the cooldown a 429 starts. Plus the pieces it reads: endpoint metadata, Retry-After, key files.
 */

const KEY = 'sk-adapter-test-key-0123456789';
const CACHE = { ttlMs: 60_000, maxEntries: 10, scope: 'consumer', store: 'memory', cacheNonDeterministic: false, chargeHits: false } as const;

function model(name: string, llm: Partial<NonNullable<ModelRules['llm']>> & Pick<NonNullable<ModelRules['llm']>, 'upstream'>): ModelRules {
  return {
    name,
    failOpen: false,
    pinning: true,
    live: [{ version: '1', aliases: [], weight: 100 }],
    requestLimits: [],
    tokenQuotas: [],
    llm: { names: [name], endpoints: ['chat', 'messages', 'embeddings'], upstreamModel: name, versions: [], fallback: false, cooldownMaxMs: 60_000, created: 0, ownedBy: 'mlflow', ...llm },
  };
}

const policy: FilterPolicy = {
  schema: FILTER_POLICY_SCHEMA,
  audit: { sink: 'stdout' },
  jwtIssuers: [],
  consumers: [],
  llm: { pathPrefix: '/v1' },
  models: [
    model('vllm', { upstream: 'openai', versions: [{ version: '1', upstreamModel: 'llama-3-8b' }], fallback: true }),
    model('chat', { upstream: 'mlflow' }),
    model('oai', { upstream: 'provider', upstreamModel: 'gpt-4o-mini', provider: { api: 'openai', authority: 'api.openai.com', basePath: '/v1', credential: { env: 'TEST_KEY' } } }),
    model('az', { upstream: 'provider', upstreamModel: 'my-deploy', provider: { api: 'azure', authority: 'x.openai.azure.com', basePath: '', credential: { env: 'TEST_KEY' }, apiVersion: '2024-10-21' } }),
    model('claude', { upstream: 'provider', provider: { api: 'anthropic', authority: 'api.anthropic.com', basePath: '/v1', credential: { env: 'TEST_KEY' }, apiVersion: '2023-06-01' } }),
    model('mlcached', { upstream: 'mlflow', cache: CACHE }),
    model('vcached', { upstream: 'openai', cache: CACHE }),
    model('nokey', { upstream: 'provider', provider: { api: 'openai', authority: 'p.test:8443', basePath: '/v1', credential: { env: 'MISSING_KEY' } } }),
  ],
};

const catalog = llmCatalog(new FilterEngine(policy, 'test', new MemoryStore()));
const metadata = (m: string, v = '1'): string => `filter_metadata { key: "flowgate" value { fields { key: "model" value { string_value: "${m}" } } fields { key: "version" value { string_value: "${v}" } } } } `;

function attempt(target: string, endpoint = 'chat', cooldowns = new Cooldowns(), headers: Record<string, string> = {}): { run: AdapterRun; first: LlmAnswer } {
  const run = new AdapterRun(catalog, cooldowns, new Credentials({ TEST_KEY: KEY }));
  const first = run.requestHeaders(headers, { 'xds.upstream_host_metadata': metadata(target), 'xds.route_name': `llm:${endpoint}:${target}:split` });
  return { run, first };
}
const setOf = (a: LlmAnswer): Record<string, string> => (a.kind === 'continue' ? { ...a.headers?.set } : {});
const removed = (a: LlmAnswer): readonly string[] => (a.kind === 'continue' ? (a.headers?.remove ?? []) : []);

describe('endpoint metadata', () => {
  test('text format and JSON', () => {
    expect(endpointTarget(metadata('support-bot', '3'))).toEqual({ model: 'support-bot', version: '3' });
    expect(endpointTarget('{"filter_metadata":{"flowgate":{"model":"m","version":"2"}}}')).toEqual({ model: 'm', version: '2' });
    expect(endpointTarget('filter_metadata { key: "other" value { } }')).toBeUndefined();
    expect(endpointTarget(undefined)).toBeUndefined();
  });
});

describe('one attempt per kind of upstream', () => {
  test('an OpenAI-compatible server: /v1 path, the version\'s model name, no key, response headers read for cooldowns', async () => {
    const { run, first } = attempt('vllm');
    expect(setOf(first)[':path']).toBe('/v1/chat/completions');
    expect(removed(first)).toEqual(expect.arrayContaining(['authorization', 'x-api-key', 'api-key', 'content-length']));
    expect(first).toMatchObject({ modeOverride: { response_header_mode: 'SEND', response_body_mode: 'NONE' } });
    const body = await run.requestBody(Buffer.from('{"model":"vllm","messages":[]}'));
    expect(body.kind === 'continue' && JSON.parse(body.body?.toString() ?? '{}')).toMatchObject({ model: 'llama-3-8b' });
  });

  test('MLflow: /invocations, the answer buffered for conversion', () => {
    const { first } = attempt('chat');
    expect(setOf(first)).toMatchObject({ ':path': '/invocations', 'content-type': 'application/json' });
    expect(first).toMatchObject({ modeOverride: { response_body_mode: 'BUFFERED' } });
  });

  test('OpenAI, Azure and Anthropic providers get their host, path and key header', () => {
    expect(setOf(attempt('oai').first)).toMatchObject({ ':authority': 'api.openai.com', ':path': '/v1/chat/completions', authorization: `Bearer ${KEY}` });
    expect(removed(attempt('oai').first)).toContain('x-flowgate-consumer');
    expect(setOf(attempt('az', 'embeddings').first)).toMatchObject({ ':path': '/openai/deployments/my-deploy/embeddings?api-version=2024-10-21', 'api-key': KEY });
    const claude = setOf(attempt('claude', 'messages').first);
    expect(claude).toMatchObject({ ':path': '/v1/messages', 'x-api-key': KEY, 'anthropic-version': '2023-06-01' });
    expect(claude.authorization).toBeUndefined();
    expect(setOf(attempt('claude', 'messages', new Cooldowns(), { 'anthropic-version': '2024-01-01' }).first)['anthropic-version']).toBeUndefined();
  });

  test("a provider's key set by one attempt is removed by the next one's, for any other upstream", () => {
    for (const target of ['vllm', 'chat', 'claude']) {
      const { first } = attempt(target, target === 'claude' ? 'messages' : 'chat');
      expect(removed(first), target).toContain('authorization');
    }
    expect(removed(attempt('oai').first)).not.toContain('authorization');
  });

  test('a missing key is a 503 naming the variable, never an unauthenticated call', () => {
    const { first } = attempt('nokey');
    expect(first).toMatchObject({ kind: 'reply', status: 503 });
    expect(first.kind === 'reply' && first.body).toContain('MISSING_KEY');
  });

  test('a 429 with Retry-After starts a cooldown, capped', async () => {
    const cooldowns = new Cooldowns();
    const { run } = attempt('vllm', 'chat', cooldowns);
    await run.requestBody(Buffer.from('{"model":"vllm"}'));
    expect(run.finished).toBe(false);
    run.responseHeaders(429, { 'retry-after': '3600' }, false);
    expect(run.finished).toBe(true);
    expect(cooldowns.active('vllm')).toBe(true);
    expect(cooldowns.active('vllm', Date.now() + 61_000)).toBe(false);
  });
});

describe('Retry-After and key files', () => {
  test('seconds and HTTP dates', () => {
    expect(retryAfterMs('7')).toBe(7000);
    expect(retryAfterMs('1.5')).toBe(1500);
    expect(retryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 30)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(30_000);
    expect(retryAfterMs('soon')).toBeUndefined();
  });

  test('a key file is read again when it changes', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'flowgate-key-')), 'key');
    writeFileSync(file, 'first-key\n');
    const credentials = new Credentials({});
    expect(credentials.read({ file }, 0)).toBe('first-key');
    writeFileSync(file, 'second-key\n');
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    expect(credentials.read({ file }, 1_000)).toBe('first-key');
    expect(credentials.read({ file }, 10_000)).toBe('second-key');
    expect(credentials.read({ file: `${file}.missing` }, 0)).toBeUndefined();
    expect(credentials.read({ env: 'UNSET' })).toBeUndefined();
  });
});

describe('the answer cache, per attempt', () => {
  const ask = (content: string, extra: Record<string, unknown> = {}): Buffer => Buffer.from(JSON.stringify({ model: 'x', temperature: 0, messages: [{ role: 'user', content }], ...extra }));
  const cachedAttempt = (answers: AnswerCaches, target: string, version = '1', headers: Record<string, string> = { 'x-flowgate-consumer': 'alice' }): { run: AdapterRun; results: string[] } => {
    const results: string[] = [];
    const run = new AdapterRun(catalog, new Cooldowns(), new Credentials({}), answers, (_m, r) => results.push(r));
    run.requestHeaders(headers, { 'xds.upstream_host_metadata': metadata(target, version), 'xds.route_name': `llm:chat:${target}:split` });
    return { run, results };
  };
  const mlflowAnswer = Buffer.from(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: 'from mlflow' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }));

  test('an MLflow answer is stored converted and served to the next attempt of the same version, as JSON or as a stream', async () => {
    const answers = new AnswerCaches(undefined);
    const first = cachedAttempt(answers, 'mlcached');
    expect((await first.run.requestBody(ask('hi'))).kind).toBe('continue');
    const marked = first.run.responseHeaders(200, { 'content-type': 'application/json' }, false);
    expect(marked.kind === 'continue' && marked.headers?.set?.['x-flowgate-cache']).toBe('miss');
    await first.run.responseBody(mlflowAnswer);
    expect(first.results).toEqual(['miss']);

    const second = cachedAttempt(answers, 'mlcached');
    const hit = await second.run.requestBody(ask('hi'));
    expect(hit).toMatchObject({ kind: 'reply', status: 200, headers: { 'x-flowgate-cache': 'hit', 'content-type': 'application/json' } });
    expect(hit.kind === 'reply' && (JSON.parse(hit.body) as { model: string; choices: { message: { content: string } }[] })).toMatchObject({ model: 'mlcached/1', choices: [{ message: { content: 'from mlflow' } }] });
    expect(second.results).toEqual(['hit']);
    expect(second.run.finished).toBe(true);

    const streamed = await cachedAttempt(answers, 'mlcached').run.requestBody(ask('hi', { stream: true }));
    expect(streamed).toMatchObject({ kind: 'reply', headers: { 'content-type': 'text/event-stream; charset=utf-8' } });
    expect(streamed.kind === 'reply' && streamed.body.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  test('another version, another consumer or another prompt is a miss', async () => {
    const answers = new AnswerCaches(undefined);
    const first = cachedAttempt(answers, 'mlcached');
    await first.run.requestBody(ask('hi'));
    first.run.responseHeaders(200, {}, false);
    await first.run.responseBody(mlflowAnswer);
    for (const other of [cachedAttempt(answers, 'mlcached', '2'), cachedAttempt(answers, 'mlcached', '1', { 'x-flowgate-consumer': 'bob' })]) {
      expect((await other.run.requestBody(ask('hi'))).kind).toBe('continue');
      expect(other.results).toEqual(['miss']);
    }
    expect((await cachedAttempt(answers, 'mlcached').run.requestBody(ask('hi there'))).kind).toBe('continue');
  });

  test('an OpenAI-compatible 200 JSON answer is buffered to be stored; a stream or a failure is not', async () => {
    const answers = new AnswerCaches(undefined);
    const json = cachedAttempt(answers, 'vcached');
    await json.run.requestBody(ask('q'));
    expect(json.run.responseHeaders(200, { 'content-type': 'application/json' }, false)).toMatchObject({ modeOverride: { response_body_mode: 'BUFFERED' } });
    expect(json.run.finished).toBe(false);
    const stream = cachedAttempt(answers, 'vcached');
    await stream.run.requestBody(ask('q', { stream: true }));
    expect(stream.run.responseHeaders(200, { 'content-type': 'text/event-stream' }, false)).not.toHaveProperty('modeOverride');
    expect(stream.run.finished).toBe(true);
    const failed = cachedAttempt(answers, 'vcached');
    await failed.run.requestBody(ask('q'));
    expect(failed.run.responseHeaders(500, { 'content-type': 'application/json' }, false)).not.toHaveProperty('modeOverride');
    await json.run.responseBody(Buffer.from('{"object":"chat.completion","choices":[]}'));
    const hit = cachedAttempt(answers, 'vcached');
    expect(await hit.run.requestBody(ask('q'))).toMatchObject({ kind: 'reply', body: '{"object":"chat.completion","choices":[]}\n' });
  });

  test("a fallback attempt to a model that does not cache removes the upstream's own x-flowgate-cache", async () => {
    const answers = new AnswerCaches(undefined);
    const run = new AdapterRun(catalog, new Cooldowns(), new Credentials({}), answers);
    const first = run.requestHeaders({ 'x-flowgate-llm-model': 'vcached' }, { 'xds.upstream_host_metadata': metadata('vllm'), 'xds.route_name': 'llm:chat:vcached:split' });
    expect(first).toMatchObject({ modeOverride: { response_header_mode: 'SEND' } });
    await run.requestBody(ask('q'));
    expect(run.responseHeaders(200, { 'x-flowgate-cache': 'hit' }, false)).toMatchObject({ headers: { remove: ['x-flowgate-cache'] } });
    const plain = new AdapterRun(catalog, new Cooldowns(), new Credentials({}), answers);
    plain.requestHeaders({ 'x-flowgate-llm-model': 'vllm' }, { 'xds.upstream_host_metadata': metadata('vllm'), 'xds.route_name': 'llm:chat:vllm:split' });
    expect(plain.responseHeaders(200, {}, false)).toEqual({ kind: 'continue' });
  });

  test('a sampled request and no-store bypass: nothing looked up, nothing buffered', async () => {
    const answers = new AnswerCaches(undefined);
    const sampled = cachedAttempt(answers, 'vcached');
    await sampled.run.requestBody(Buffer.from('{"model":"x","messages":[]}'));
    expect(sampled.results).toEqual(['bypass']);
    const marked = sampled.run.responseHeaders(200, { 'content-type': 'application/json' }, false);
    expect(marked).toMatchObject({ headers: { set: { 'x-flowgate-cache': 'bypass' } } });
    expect(marked).not.toHaveProperty('modeOverride');
    const noStore = cachedAttempt(answers, 'vcached', '1', { 'cache-control': 'no-store' });
    await noStore.run.requestBody(ask('q'));
    expect(noStore.results).toEqual(['bypass']);
  });
});
