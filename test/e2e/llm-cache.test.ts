import { createHash } from 'node:crypto';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';

/**
 * The LLM answer cache through real Envoy, with the official openai SDK (Node) as the client and the OpenAI
 * stand-in upstreams counting what reaches them: a repeated deterministic request is a hit the upstream
 * never sees; a changed sampling parameter is a miss; a streamed request replays the cached answer as SSE
 * the SDK reads; `Cache-Control: no-store` bypasses; moving the champion alias makes the next request a miss
 * answered by the new version. Two gateways (control plane + embedded filter service + Envoy each) on one
 * Redis share a `store: redis` model's answers.
 */

let redis: TestRedis;
let v1: LlmUpstream;
let v2: LlmUpstream;
let sharedUp: LlmUpstream;
const gateways: LlmGateway[] = [];
let registryPath: string;
const METERED_KEY = 'metered-cache-key-0123456789';

const registry = (champion: string): string =>
  JSON.stringify({
    models: [
      { name: 'cached', aliases: { champion }, versions: [v1, v2].map((u, i) => ({ version: String(i + 1), tags: { 'flowgate.address': `127.0.0.1:${u.port}` } })) },
      { name: 'shared', versions: [{ version: '1' }] },
      { name: 'metered', versions: [{ version: '1' }] },
    ],
  });

function writeRegistry(champion: string): void {
  // Written whole, then renamed: the poller never reads half a file.
  writeFileSync(`${registryPath}.tmp`, registry(champion));
  renameSync(`${registryPath}.tmp`, registryPath);
}

function policy(): Record<string, string> {
  return {
    'consumers.yaml': `kind: Consumer
name: metered
apiKeys: [{ id: m-1, sha256: ${createHash('sha256').update(METERED_KEY).digest('hex')} }]
tokenQuotas: [{ tokens: 100000, per: hour, count: total, model: metered }]
`,
    'models.yaml': `kind: Model
name: cached
upstream: { versionTag: flowgate.address }
traffic: { stable: { alias: champion } }
llm: { cache: { ttl: 60s } }
---
kind: Model
name: shared
upstream: { addressTemplate: "127.0.0.1:${sharedUp.port}" }
traffic: { stable: { version: 1 } }
llm: { cache: { store: redis, scope: model } }
---
kind: Model
name: metered
upstream: { addressTemplate: "127.0.0.1:${sharedUp.port}" }
traffic: { stable: { version: 1 } }
access: { consumers: [metered] }
llm: { cache: {} }
`,
  };
}

const client = (base: string): OpenAI => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'placeholder-key', maxRetries: 0 });
const chats = (u: LlmUpstream): number => u.received.filter((r) => r.path.startsWith('/v1/chat/completions')).length;
const ask = (text: string, extra: Record<string, unknown> = {}): OpenAI.ChatCompletionCreateParamsNonStreaming => ({
  model: 'cached',
  temperature: 0,
  messages: [{ role: 'user', content: text }],
  ...extra,
});

beforeAll(async () => {
  redis = await startRedis();
  v1 = await startLlmUpstream({ name: 'v1' });
  v2 = await startLlmUpstream({ name: 'v2' });
  sharedUp = await startLlmUpstream({ name: 'shared' });
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-llm-cache-'));
  registryPath = join(dir, 'registry.json');
  writeRegistry('1');
  for (const i of [0, 1]) {
    gateways.push(await startLlmGateway({ name: `flowgate-llm-cache-${i}`, dir, files: policy, registry: { file: registryPath }, pollIntervalMs: 300, redisUrl: redis.url, readyModel: 'cached' }));
  }
}, 120_000);

afterAll(async () => {
  for (const g of gateways) await g.stop();
  for (const u of [v1, v2, sharedUp]) await u?.close();
  await redis?.stop();
});

describe('memory store, one gateway', () => {
  test('a repeated deterministic request is a hit the upstream never sees; a changed sampling parameter is a miss', async () => {
    const openai = client(gateways[0]?.base ?? '');
    const before = chats(v1);
    const first = await openai.chat.completions.create(ask('cache me')).withResponse();
    expect(first.response.headers.get('x-flowgate-cache')).toBe('miss');
    expect(first.data.choices[0]?.message.content).toBe('[v1] cache me');
    const second = await openai.chat.completions.create(ask('cache me')).withResponse();
    expect(second.response.headers.get('x-flowgate-cache')).toBe('hit');
    expect(second.data).toEqual(first.data);
    // The version that stored the answer, read from the endpoint Envoy picked, as on any answer.
    expect([second.response.headers.get('x-flowgate-model'), second.response.headers.get('x-flowgate-model-version')]).toEqual(['cached', '1']);
    expect(chats(v1) - before).toBe(1);

    const changed = await openai.chat.completions.create(ask('cache me', { top_p: 0.5 })).withResponse();
    expect(changed.response.headers.get('x-flowgate-cache')).toBe('miss');
    expect(chats(v1) - before).toBe(2);

    // A sampled request (no temperature 0) is not cached at all.
    const sampled = await openai.chat.completions.create({ model: 'cached', messages: [{ role: 'user', content: 'cache me' }] }).withResponse();
    expect(sampled.response.headers.get('x-flowgate-cache')).toBe('bypass');
    expect(chats(v1) - before).toBe(3);

    const metrics = await gateways[0]?.flowgate.metrics();
    expect(metrics).toMatch(/flowgate_llm_cache_total\{model="cached",result="hit"\} [1-9]/);
    expect(metrics).toMatch(/flowgate_llm_cache_total\{model="cached",result="miss"\} [1-9]/);
  });

  test('a streamed request replays the cached answer as SSE the SDK reads', async () => {
    const openai = client(gateways[0]?.base ?? '');
    await openai.chat.completions.create(ask('stream me back'));
    const before = chats(v1);
    const { data: stream, response } = await openai.chat.completions.create({ ...ask('stream me back'), stream: true, stream_options: { include_usage: true } }).withResponse();
    expect(response.headers.get('x-flowgate-cache')).toBe('hit');
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('[v1] stream me back');
    expect(chunks.at(-1)?.usage?.total_tokens).toBeGreaterThan(0);
    expect(chats(v1)).toBe(before);
  });

  test('Cache-Control: no-store bypasses; no-cache asks the model and refreshes the entry', async () => {
    const openai = client(gateways[0]?.base ?? '');
    await openai.chat.completions.create(ask('directives'));
    const before = chats(v1);
    const noStore = await openai.chat.completions.create(ask('directives'), { headers: { 'cache-control': 'no-store' } }).withResponse();
    expect(noStore.response.headers.get('x-flowgate-cache')).toBe('bypass');
    const noCache = await openai.chat.completions.create(ask('directives'), { headers: { 'cache-control': 'no-cache' } }).withResponse();
    expect(noCache.response.headers.get('x-flowgate-cache')).toBe('miss');
    expect(chats(v1) - before).toBe(2);
    const after = await openai.chat.completions.create(ask('directives')).withResponse();
    expect(after.response.headers.get('x-flowgate-cache')).toBe('hit');
    expect(chats(v1) - before).toBe(2);
  });

  test('moving the champion alias makes the next request a miss answered by the new version', async () => {
    const openai = client(gateways[0]?.base ?? '');
    await openai.chat.completions.create(ask('which version'));
    const hit = await openai.chat.completions.create(ask('which version')).withResponse();
    expect(hit.response.headers.get('x-flowgate-cache')).toBe('hit');
    writeRegistry('2');
    await waitFor('both gateways to route to version 2', async () => {
      const answers = await Promise.all(gateways.map((g) => client(g.base).chat.completions.create(ask('probe v2'), { headers: { 'cache-control': 'no-store' } })));
      return answers.every((a) => a.choices[0]?.message.content === '[v2] probe v2') ? true : undefined;
    });
    const v2Before = chats(v2);
    const moved = await openai.chat.completions.create(ask('which version')).withResponse();
    expect(moved.response.headers.get('x-flowgate-cache')).toBe('miss');
    expect(moved.data.choices[0]?.message.content).toBe('[v2] which version');
    expect(chats(v2) - v2Before).toBe(1);
  });
});

describe('token quotas', () => {
  test('a hit is not charged: after a miss, a hit and a bypass of one request, two answers were charged', async () => {
    const g = gateways[0];
    const openai = new OpenAI({ baseURL: `${g?.base ?? ''}/v1`, apiKey: METERED_KEY, maxRetries: 0 });
    const charged = async (): Promise<number> => (await g?.flowgate.metric('flowgate_filter_tokens_charged_total{consumer="metered",model="metered",kind="total"}')) ?? 0;
    const body: OpenAI.ChatCompletionCreateParamsNonStreaming = { model: 'metered', temperature: 0, messages: [{ role: 'user', content: 'count my tokens please' }] };
    const before = await charged();
    const miss = await openai.chat.completions.create(body).withResponse();
    expect(miss.response.headers.get('x-flowgate-cache')).toBe('miss');
    const one = miss.data.usage?.total_tokens ?? 0;
    expect(one).toBeGreaterThan(0);
    await waitFor('the miss to be charged', async () => ((await charged()) === before + one ? true : undefined));
    const hit = await openai.chat.completions.create(body).withResponse();
    expect(hit.response.headers.get('x-flowgate-cache')).toBe('hit');
    const bypass = await openai.chat.completions.create(body, { headers: { 'cache-control': 'no-store' } }).withResponse();
    expect(bypass.response.headers.get('x-flowgate-cache')).toBe('bypass');
    await waitFor('the bypass to be charged', async () => ((await charged()) >= before + 2 * one ? true : undefined));
    expect(await charged()).toBe(before + 2 * one);
  });
});

describe('redis store, two gateways', () => {
  test("one gateway's answer is a hit on the other; the upstream saw it once", async () => {
    const [a, b] = gateways;
    const body: OpenAI.ChatCompletionCreateParamsNonStreaming = { model: 'shared', temperature: 0, messages: [{ role: 'user', content: 'shared across replicas' }] };
    const before = chats(sharedUp);
    const first = await client(a?.base ?? '').chat.completions.create(body).withResponse();
    expect(first.response.headers.get('x-flowgate-cache')).toBe('miss');
    const second = await client(b?.base ?? '').chat.completions.create(body).withResponse();
    expect(second.response.headers.get('x-flowgate-cache')).toBe('hit');
    expect(second.data.choices[0]?.message.content).toBe('[shared] shared across replicas');
    expect(chats(sharedUp) - before).toBe(1);
  });
});
