import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { APIError } from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { estimateRequestTokens } from '../../filters/extproc/tokenizer.js';
import { budgetKey, periodOf } from '../../filters/store/budgets.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiClient } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { registerSecrets } from '../harness/secrets.js';
import { startReplicatedGateway, type ReplicatedGateway } from '../harness/filter-replicas.js';

/**
 * LLM budgets across filter-service replicas: two `flowgate filters` replicas (each fed by its own control
 * plane, each behind its own Envoy) share one real Redis. 50 concurrent calls with the official openai npm
 * SDK, 25 through each Envoy, against a model budget that fits 10 worst-case calls: at most 10 are served,
 * the rest raise RateLimitError with code budget_exceeded and a Retry-After, and the spend left in Redis is
 * exactly the served calls' real costs.
 */

const KEY = 'budget-key-0123456789';
const MAX_TOKENS = 16;
const messages = [{ role: 'user' as const, content: 'what does this cost me, exactly?' }];
// The stand-in reports exactly the worst case the gateway reserves: nothing is given back when settled, so
// no call that arrives later can find room a served call released.
const INPUT = estimateRequestTokens({ model: 'budgeted', max_tokens: MAX_TOKENS, messages });
// 1 USD per million input tokens, 2 per million output: nano-units per call.
const CALL_NANOS = (INPUT * 1 + MAX_TOKENS * 2) * 1000;
const BUDGET_USD = (10.5 * CALL_NANOS) / 1e9;

let redis: TestRedis;
let upstream: LlmUpstream;
const gateways: ReplicatedGateway[] = [];
const bases: string[] = [];

function policyFiles(listener: number, filters: number): Record<string, string> {
  return {
    'gateway.yaml': `kind: Gateway\nlisteners: [{ name: llm, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s }\nopenai: { listener: llm }\n`,
    'consumers.yaml': `kind: Consumer\nname: spender\napiKeys: [{ id: k1, sha256: ${createHash('sha256').update(KEY).digest('hex')} }]\n`,
    'models.yaml': `kind: Model
name: budgeted
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
access: { consumers: [spender] }
llm:
  pricing: { inputPer1M: 1, outputPer1M: 2, currency: USD }
  budgets: [{ amount: ${BUDGET_USD}, currency: USD, per: day }]
---
kind: Model
name: free
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm: {}
`,
  };
}

beforeAll(async () => {
  registerSecrets(KEY);
  redis = await startRedis();
  upstream = await startLlmUpstream({ name: 'budget', behaviour: { usage: { promptTokens: INPUT, completionTokens: MAX_TOKENS } } });
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-budgets-'));
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: ['budgeted', 'free'].map((name) => ({ name, versions: [{ version: '1' }] })) }));
  for (const i of [0, 1]) {
    const gateway = await startReplicatedGateway({ name: 'budgets', index: i, dir, registryFile: join(dir, 'registry.json'), redisUrl: redis.url, files: policyFiles });
    gateways.push(gateway);
    const base = gateway.base;
    bases.push(base);
    await waitFor(`envoy ${i} routes`, async () => {
      const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'free', messages }) }).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    });
  }
}, 240_000);

afterAll(async () => {
  for (const g of gateways) await g.stop();
  await redis?.stop();
  await upstream?.close();
});

test('50 concurrent calls through two replicas against a budget that fits 10: at most 10 served, the spend exact', async () => {
  // Every call is in flight before the first is answered: reservations, not settled costs, decide.
  upstream.behave({ usage: { promptTokens: INPUT, completionTokens: MAX_TOKENS }, delayMs: 1500 });
  const calls = Array.from({ length: 50 }, async (_, i) => {
    const client = openaiClient(`${bases[i % 2] ?? ''}/v1`, KEY, { maxRetries: 0 });
    try {
      await client.chat.completions.create({ model: 'budgeted', max_tokens: MAX_TOKENS, messages });
      return { served: true as const };
    } catch (err) {
      if (!(err instanceof APIError)) throw err;
      const headers = err.headers as Headers | undefined;
      return { served: false as const, status: err.status as number | undefined, code: err.code, retryAfter: headers?.get('retry-after') ?? null };
    }
  });
  const outcomes = await Promise.all(calls);
  const served = outcomes.filter((o) => o.served).length;
  const refused = outcomes.filter((o) => !o.served);
  expect(served).toBeLessThanOrEqual(10);
  expect(served).toBeGreaterThan(0);
  expect(refused).toHaveLength(50 - served);
  for (const r of refused) {
    expect(r).toMatchObject({ status: 429, code: 'budget_exceeded' });
    expect(Number(r.retryAfter)).toBeGreaterThan(0);
    expect(Number(r.retryAfter)).toBeLessThanOrEqual(86_400);
  }
  expect(upstream.received.filter((r) => (r.json as { model?: string } | undefined)?.model === 'budgeted')).toHaveLength(served);

  const client = new Redis(redis.url);
  try {
    const key = `flowgate:${budgetKey('m=budgeted', 'day', periodOf('day', Date.now()).startMs, 'USD')}`;
    // Settled when each exchange ended: the spend is the served calls' real costs, to the nano-dollar.
    const spent = await waitFor('the spend settled', async () => {
      const v = Number((await client.get(key)) ?? 0);
      return v === served * CALL_NANOS ? v : undefined;
    }, { timeoutMs: 10_000, describe: () => `spend ${key}` });
    expect(spent).toBe(served * CALL_NANOS);
  } finally {
    client.disconnect();
  }
});
