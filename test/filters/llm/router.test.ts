import { describe, expect, test } from 'vitest';
import { Header } from '../../../src/contract/filter-wire.js';
import { resolveModelRef } from '../../../src/contract/model-ref.js';
import { filterPolicyOf } from '../../../src/translate/filter-policy.js';
import { llmCatalog } from '../../../filters/llm/catalog.js';
import { Cooldowns } from '../../../filters/llm/cooldown.js';
import { RouterRun } from '../../../filters/llm/router.js';
import { FilterEngine } from '../../../filters/service/engine.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import type { LlmAnswer } from '../../../filters/llm/answers.js';
import { caseIR } from '../../translate/cases.js';

/**
 * The LLM router on the policy of the `llm` golden case: how a `model` string becomes the model's routing
 * header, a pin and the upstream's model name; what an unknown or unservable one gets; the model list per
 * caller; and the cooldown header.
 */

const engine = new FilterEngine(filterPolicyOf(caseIR('llm')), 'test', new MemoryStore());
const catalog = llmCatalog(engine);

async function route(model: unknown, options: { path?: string; cooldowns?: Cooldowns; headers?: Record<string, string> } = {}): Promise<LlmAnswer> {
  const run = new RouterRun(engine, catalog, options.cooldowns ?? new Cooldowns(), 'openai');
  const headers = { ':method': 'POST', ':path': options.path ?? '/v1/chat/completions', ...options.headers };
  const first = await run.requestHeaders(headers, false);
  if (first.kind === 'reply') return first;
  return run.requestBody(Buffer.from(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] })));
}

const setOf = (a: LlmAnswer): Record<string, string> => (a.kind === 'continue' ? { ...a.headers?.set } : {});
const appendOf = (a: LlmAnswer): Record<string, string> => (a.kind === 'continue' ? { ...a.headers?.append } : {});
const bodyModel = (a: LlmAnswer): unknown => (a.kind === 'continue' && a.body ? (JSON.parse(a.body.toString()) as { model: unknown }).model : undefined);

describe('model strings', () => {
  const lookup = (n: string): string | undefined => ({ a: 'a', 'org/m': 'm', b: 'b' })[n];
  test.each([
    ['a', { model: 'a', pin: undefined }],
    ['a@challenger', { model: 'a', pin: { alias: 'challenger' } }],
    ['a/12', { model: 'a', pin: { version: '12' } }],
    ['org/m', { model: 'm', pin: undefined }],
    ['org/m/3', { model: 'm', pin: { version: '3' } }],
    ['org/m@x', { model: 'm', pin: { alias: 'x' } }],
  ])('%s', (text, expected) => {
    expect(resolveModelRef(text, lookup)).toEqual(expected);
  });
  test.each(['c', 'a@', '@a', 'a@latest', 'a@v2', 'a/0', 'a/x', 'a@b@c', 'a/1@x', ''])('%s names nothing', (text) => {
    expect(resolveModelRef(text, lookup)).toBeUndefined();
  });
});

describe('the router', () => {
  test('a public name names its model, and the body gets the upstream model name', async () => {
    const a = await route('support');
    expect(a.kind).toBe('continue');
    expect(setOf(a)[Header.llmModel]).toBe('support-bot');
    expect(bodyModel(a)).toBe('support-bot');
    expect(setOf(a)['content-length']).toBe(String(a.kind === 'continue' ? a.body?.length : -1));
    expect(a.kind === 'continue' && a.clearRouteCache).toBe(true);
  });

  test('a name with a slash is read whole before a version is looked for', async () => {
    expect(setOf(await route('meta-llama/Llama-3-8B'))[Header.llmModel]).toBe('chat-vllm');
    const pinned = await route('meta-llama/Llama-3-8B/3');
    expect(appendOf(pinned)).toEqual({ [Header.pinVersion]: '3' });
  });

  test('@alias and /VERSION become pin headers, added beside any the caller sent', async () => {
    expect(appendOf(await route('support-bot@challenger'))).toEqual({ [Header.pinAlias]: 'challenger' });
    expect(appendOf(await route('support/2'))).toEqual({ [Header.pinVersion]: '2' });
    expect(appendOf(await route('support-bot'))).toEqual({});
  });

  test('unknown names, pins on a model without versions, and bad bodies are refused without listing models', async () => {
    for (const model of ['nope', 'gpt-4o-mini/1', 'gpt-4o-mini@champion', 'support-bot@latest']) {
      const a = await route(model);
      expect(a).toMatchObject({ kind: 'reply', status: 404 });
      if (a.kind === 'reply') {
        expect(JSON.parse(a.body)).toMatchObject({ error: { code: 'model_not_found', type: 'invalid_request_error' } });
        for (const name of ['chat-vllm', 'claude', 'fraud']) expect(a.body).not.toContain(name);
      }
    }
    expect(await route(42)).toMatchObject({ kind: 'reply', status: 400 });
    expect(await route('claude', { path: '/v1/embeddings' })).toMatchObject({ kind: 'reply', status: 404 });
  });

  test('a model cooling down starts at its fallback, unless the body pins', async () => {
    const cooldowns = new Cooldowns();
    expect(setOf(await route('support-bot', { cooldowns }))[Header.llmCooldown]).toBeUndefined();
    cooldowns.start('support-bot', 5_000, 300_000);
    expect(setOf(await route('support-bot', { cooldowns }))[Header.llmCooldown]).toBe('1');
    expect(setOf(await route('support-bot@champion', { cooldowns }))[Header.llmCooldown]).toBeUndefined();
    // A pin sent as a header is not the router's to read: the model's pin routes come before its cooldown route.
    // A model without a fallback chain has nowhere else to go.
    cooldowns.start('chat-vllm', 5_000, 300_000);
    expect(setOf(await route('chat-vllm', { cooldowns }))[Header.llmCooldown]).toBeUndefined();
  });

  test('GET /v1/models lists what the caller may call; a bad key is a 401', async () => {
    const list = async (headers: Record<string, string>): Promise<LlmAnswer> => new RouterRun(engine, catalog, new Cooldowns(), 'openai').requestHeaders({ ':method': 'GET', ':path': '/v1/models', ...headers }, true);
    const ids = (a: LlmAnswer): string[] => (a.kind === 'reply' ? (JSON.parse(a.body) as { data: { id: string }[] }).data.map((m) => m.id).sort() : []);
    expect(ids(await list({}))).toEqual(['chat-vllm', 'claude', 'claude-sonnet', 'gpt-4o-mini', 'meta-llama/Llama-3-8B']);
    expect(ids(await list({ 'x-api-key': 'acme-key' }))).toEqual(['chat-vllm', 'claude', 'claude-sonnet', 'gpt-4o-mini', 'meta-llama/Llama-3-8B', 'support', 'support-bot']);
    expect(await list({ 'x-api-key': 'wrong-key' })).toMatchObject({ kind: 'reply', status: 401 });
    const one = await new RouterRun(engine, catalog, new Cooldowns(), 'openai').requestHeaders({ ':method': 'GET', ':path': '/v1/models/meta-llama%2FLlama-3-8B' }, true);
    expect(one.kind === 'reply' && JSON.parse(one.body)).toMatchObject({ id: 'meta-llama/Llama-3-8B', object: 'model', owned_by: 'mlflow' });
    const owned = await list({ 'x-api-key': 'acme-key' });
    expect(owned.kind === 'reply' && (JSON.parse(owned.body) as { data: { id: string; created: number; owned_by: string }[] }).data.find((m) => m.id === 'support-bot')).toEqual({
      id: 'support-bot',
      object: 'model',
      created: 1_767_225_600,
      owned_by: 'support-team',
    });
  });

  test('methods and bodies the endpoints do not take', async () => {
    const run = new RouterRun(engine, catalog, new Cooldowns(), 'openai');
    expect(await run.requestHeaders({ ':method': 'GET', ':path': '/v1/chat/completions' }, true)).toMatchObject({ status: 405, headers: { allow: 'POST' } });
    expect(await run.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions' }, true)).toMatchObject({ status: 400 });
    expect(await run.requestHeaders({ ':method': 'POST', ':path': '/v1/models' }, false)).toMatchObject({ status: 405 });
  });
});

describe('usage of streams', () => {
  async function routeBody(body: Record<string, unknown>, path = '/v1/chat/completions'): Promise<LlmAnswer> {
    const run = new RouterRun(engine, catalog, new Cooldowns(), 'openai');
    await run.requestHeaders({ ':method': 'POST', ':path': path }, false);
    return run.requestBody(Buffer.from(JSON.stringify(body)));
  }
  const sent = (a: LlmAnswer): Record<string, unknown> | undefined => (a.kind === 'continue' && a.body ? (JSON.parse(a.body.toString()) as Record<string, unknown>) : undefined);

  test('a stream is asked for usage, and the route told to strip the chunk the caller did not ask for', async () => {
    const a = await routeBody({ model: 'support-bot', stream: true, stream_options: { other: 1 }, messages: [] });
    expect(sent(a)?.stream_options).toEqual({ other: 1, include_usage: true });
    expect(setOf(a)[Header.llmUsageAdded]).toBe('1');
    const c = await routeBody({ model: 'chat-vllm', stream: true, prompt: 'x' }, '/v1/completions');
    expect(sent(c)?.stream_options).toEqual({ include_usage: true });
  });

  test('a caller who asked for usage, or did not stream, gets the body as sent', async () => {
    const asked = await routeBody({ model: 'support-bot', stream: true, stream_options: { include_usage: true }, messages: [] });
    expect(setOf(asked)[Header.llmUsageAdded]).toBeUndefined();
    expect(sent(asked)).toBeUndefined();
    const json = await routeBody({ model: 'support-bot', messages: [] });
    expect(setOf(json)[Header.llmUsageAdded]).toBeUndefined();
    expect(sent(json)).toBeUndefined();
  });
});
