import { describe, expect, test } from 'vitest';
import { Stream } from 'openai/core/streaming';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { LlmCacheRules } from '../../../src/contract/filter-policy.js';
import { AnswerCaches, cacheKey, cachePlan, MemoryAnswers, sortedJson, type CacheKeyInput } from '../../../filters/llm/cache.js';
import { replay } from '../../../filters/llm/adapter.js';

/**
 * The LLM answer cache's pieces: what changes the key and what does not, when a request is cached at all,
 * the memory store's LRU order, TTL and purge of versions no longer live, and the replay of a stored
 * completion as a stream that the official openai SDK reads back to the same message.
 */

const RULES: LlmCacheRules = { ttlMs: 300_000, maxEntries: 1000, scope: 'consumer', store: 'memory', cacheNonDeterministic: false, chargeHits: false };

const base: CacheKeyInput = {
  model: 'support-bot',
  version: '2',
  endpoint: 'chat',
  scope: 'consumer',
  consumer: 'alice',
  request: { model: 'support-bot', temperature: 0, messages: [{ role: 'user', content: 'hello' }], max_tokens: 32 },
};
const keyWith = (change: Partial<CacheKeyInput> & { fields?: Record<string, unknown> }): string => {
  const { fields, ...rest } = change;
  return cacheKey({ ...base, ...rest, request: { ...base.request, ...fields } });
};

describe('cache key', () => {
  const k = cacheKey(base);

  test('is a sha256 in hex', () => {
    expect(k).toMatch(/^[0-9a-f]{64}$/);
  });

  test('changes with the version, endpoint, model, consumer and every field that changes the answer', () => {
    const variants: Record<string, string> = {
      version: keyWith({ version: '3' }),
      endpoint: keyWith({ endpoint: 'completions' }),
      model: keyWith({ model: 'other-bot' }),
      consumer: keyWith({ consumer: 'bob' }),
      anonymous: keyWith({ consumer: undefined }),
      messages: keyWith({ fields: { messages: [{ role: 'user', content: 'hello!' }] } }),
      temperature: keyWith({ fields: { temperature: 0.5 } }),
      top_p: keyWith({ fields: { top_p: 0.9 } }),
      max_tokens: keyWith({ fields: { max_tokens: 33 } }),
      seed: keyWith({ fields: { seed: 7 } }),
      tools: keyWith({ fields: { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] } }),
      response_format: keyWith({ fields: { response_format: { type: 'json_object' } } }),
      stop: keyWith({ fields: { stop: ['\n'] } }),
    };
    const keys = Object.values(variants);
    expect(keys.length).toBe(13);
    for (const [name, key] of Object.entries(variants)) expect(key, name).not.toBe(k);
    expect(new Set(keys).size).toBe(keys.length);
  });

  test('does not change with delivery fields, the body model string, or key order', () => {
    expect(keyWith({ fields: { stream: true, stream_options: { include_usage: true } } })).toBe(k);
    expect(keyWith({ fields: { user: 'end-user-42' } })).toBe(k);
    expect(keyWith({ fields: { model: 'support-bot@champion' } })).toBe(k);
    const reordered = { max_tokens: 32, messages: [{ content: 'hello', role: 'user' }], temperature: 0, model: 'support-bot' };
    expect(cacheKey({ ...base, request: reordered })).toBe(k);
  });

  test('scope model shares answers across consumers; scope consumer does not', () => {
    const shared = (consumer: string | undefined): string => cacheKey({ ...base, scope: 'model', consumer });
    expect(shared('alice')).toBe(shared('bob'));
    expect(shared('alice')).not.toBe(k);
    expect(keyWith({ consumer: 'bob' })).not.toBe(k);
  });

  test('sorted JSON keeps arrays in order and sorts nested keys', () => {
    expect(sortedJson({ b: [2, 1], a: { d: 1, c: null } })).toBe('{"a":{"c":null,"d":1},"b":[2,1]}');
  });
});

describe('cache plan', () => {
  const chat = { messages: [], temperature: 0 };
  test('deterministic chat is looked up and stored; Cache-Control no-cache only stored; no-store neither', () => {
    expect(cachePlan(RULES, 'chat', chat, undefined)).toEqual({ lookup: true, store: true });
    expect(cachePlan(RULES, 'chat', chat, 'no-cache')).toEqual({ lookup: false, store: true });
    expect(cachePlan(RULES, 'chat', chat, 'max-age=0, No-Store')).toEqual({ lookup: false, store: false });
  });

  test('a sampled request is cached only with cacheNonDeterministic', () => {
    expect(cachePlan(RULES, 'chat', { messages: [], temperature: 0.7 }, undefined)).toEqual({ lookup: false, store: false });
    expect(cachePlan(RULES, 'chat', { messages: [] }, undefined)).toEqual({ lookup: false, store: false });
    expect(cachePlan({ ...RULES, cacheNonDeterministic: true }, 'chat', { messages: [] }, undefined)).toEqual({ lookup: true, store: true });
  });

  test('embeddings are deterministic; streams are cached on chat only; messages never', () => {
    expect(cachePlan(RULES, 'embeddings', { input: 'x' }, undefined).lookup).toBe(true);
    expect(cachePlan(RULES, 'chat', { ...chat, stream: true }, undefined).lookup).toBe(true);
    expect(cachePlan(RULES, 'completions', { prompt: 'x', temperature: 0, stream: true }, undefined).lookup).toBe(false);
    expect(cachePlan(RULES, 'messages', chat, undefined).lookup).toBe(false);
  });
});

describe('memory store', () => {
  test('evicts the least recently used beyond maxEntries', () => {
    const m = new MemoryAnswers(2);
    m.set('a', { version: '1', body: 'A' }, 1000);
    m.set('b', { version: '1', body: 'B' }, 1000);
    expect(m.get('a')?.body).toBe('A');
    m.set('c', { version: '1', body: 'C' }, 1000);
    expect(m.get('b')).toBeUndefined();
    expect(m.get('a')?.body).toBe('A');
    expect(m.get('c')?.body).toBe('C');
    expect(m.size).toBe(2);
  });

  test('an entry past its TTL is gone', () => {
    let now = 1_000;
    const m = new MemoryAnswers(10, () => now);
    m.set('a', { version: '1', body: 'A' }, 500);
    now = 1_499;
    expect(m.get('a')?.body).toBe('A');
    now = 1_500;
    expect(m.get('a')).toBeUndefined();
    expect(m.size).toBe(0);
  });

  test('a smaller maxEntries from a new policy trims; versions that left the live set are purged', async () => {
    const caches = new AnswerCaches(undefined);
    for (const [key, version] of [['k1', '1'], ['k2', '2'], ['k3', '2']] as const) await caches.set('m', RULES, ['1', '2'], key, { version, body: key });
    expect((await caches.get('m', RULES, ['1', '2'], 'k1'))?.body).toBe('k1');
    expect(await caches.get('m', RULES, ['2'], 'k1')).toBeUndefined();
    expect((await caches.get('m', RULES, ['2'], 'k2'))?.body).toBe('k2');
    // k2 was read last: trimming to one entry keeps it and drops k3.
    await caches.get('m', { ...RULES, maxEntries: 1 }, ['2'], 'none');
    expect(await caches.get('m', RULES, ['2'], 'k3')).toBeUndefined();
    expect((await caches.get('m', RULES, ['2'], 'k2'))?.body).toBe('k2');
  });

  test('store redis without a Redis is unavailable (answers are not cached), memory always is', () => {
    const caches = new AnswerCaches(undefined);
    expect(caches.available({ ...RULES, store: 'redis' })).toBe(false);
    expect(caches.available(RULES)).toBe(true);
  });
});

describe('replay', () => {
  const completion = {
    id: 'chatcmpl-cached',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'support-bot/2',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the cache.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
  };
  const stored = `${JSON.stringify(completion)}\n`;

  test('a JSON request gets the stored body as is', () => {
    expect(replay(stored, { messages: [] })).toEqual({ contentType: 'application/json', body: stored });
  });

  test('a stream is valid SSE the openai SDK reads back to the same message and usage', async () => {
    const out = replay(stored, { messages: [], stream: true, stream_options: { include_usage: true } });
    expect(out?.contentType).toMatch(/^text\/event-stream/);
    expect(out?.body.endsWith('data: [DONE]\n\n')).toBe(true);
    const stream = Stream.fromSSEResponse<ChatCompletionChunk>(new Response(out?.body), new AbortController());
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === 'chatcmpl-cached')).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the cache.');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)?.usage).toEqual(completion.usage);
  });

  test('a stored body that is not a completion is not replayed as a stream', () => {
    expect(replay('{"object":"list","data":[]}', { stream: true })).toBeUndefined();
    expect(replay('not json', { stream: true })).toBeUndefined();
  });
});
