import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiClient } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request } from '../harness/traffic.js';

/**
 * Token usage and cost through real Envoy, with the official openai npm SDK: a stream is asked for usage by
 * the gateway (the stand-in reports usage only when asked), the caller that did not ask never sees the usage
 * chunk and the one that asked does; quotas are charged exactly what the upstream reported, for JSON and
 * SSE, OpenAI and Anthropic shapes; a client abort is charged; the price table gives the cost per consumer
 * and model (flowgate_llm_cost_total), and Envoy's access log carries it (the control plane's ALS receiver
 * counts it from the entries' flowgate.llm dynamic metadata).
 */

const KEY = 'acme-usage-key-0123456789';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let gateway: LlmGateway;
let upstream: LlmUpstream;
let base: string;

const PROMPT = 11;
const COMPLETION = 7;

function policy(): Record<string, string> {
  return {
    'consumers.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: acme-1, sha256: ${sha(KEY)} }]
`,
    'models.yaml': `kind: Model
name: priced
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 2 } }
access: { consumers: [acme] }
tokenQuotas: [{ tokens: 100000000, per: day }]
llm:
  endpoints: [chat, completions, messages]
  pricing: { inputPer1M: 3, outputPer1M: 15, currency: USD, versions: { "2": { inputPer1M: 1, outputPer1M: 5 } } }
`,
  };
}

const registry = (): string => JSON.stringify({ models: [{ name: 'priced', versions: [{ version: '2' }] }] });

/** The sum of a metric's samples whose labels include every one given (label order does not matter). */
async function sample(name: string, labels: Record<string, string>): Promise<number> {
  const text = await gateway.flowgate.metrics();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const m = /^[^{]+\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const have = new Map([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x): [string, string] => [x[1] ?? '', x[2] ?? '']));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[2]);
  }
  return sum;
}

const charged = (kind: 'input' | 'output'): Promise<number> => sample('flowgate_filter_tokens_charged_total', { consumer: 'acme', model: 'priced', kind });

/** Runs `action` and waits until the charged tokens moved by what the stand-in reported (or fails with the counts). */
async function expectCharged(action: () => Promise<void>, expected: { input: number; output: number }): Promise<void> {
  const before = { input: await charged('input'), output: await charged('output') };
  await action();
  await waitFor(
    'the exchange charged',
    async () => {
      const now = { input: (await charged('input')) - before.input, output: (await charged('output')) - before.output };
      return now.input >= expected.input && now.output >= expected.output ? now : undefined;
    },
    { timeoutMs: 10_000 },
  );
  // Nothing more arrives later: the charge is the reported usage, exactly.
  const settled = { input: (await charged('input')) - before.input, output: (await charged('output')) - before.output };
  expect(settled).toEqual(expected);
}

const client = (): ReturnType<typeof openaiClient> => openaiClient(`${base}/v1`, KEY);

beforeAll(async () => {
  registerSecrets(KEY);
  upstream = await startLlmUpstream({ name: 'priced', behaviour: { usage: { promptTokens: PROMPT, completionTokens: COMPLETION } } });
  gateway = await startLlmGateway({ name: 'flowgate-llm-usage', files: policy, registry: { json: registry() }, readyModel: 'priced', readyHeaders: { authorization: `Bearer ${KEY}` } });
  base = gateway.base;
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
});

const messages = [{ role: 'user' as const, content: 'count my tokens please' }];

describe('usage of streams', () => {
  test('a caller that did not ask for usage never sees the usage chunk; the upstream was asked, and the charge is exact', async () => {
    const chunks: { choices: unknown[]; usage?: unknown }[] = [];
    let text = '';
    await expectCharged(
      async () => {
        const stream = await client().chat.completions.create({ model: 'priced', messages, stream: true });
        for await (const chunk of stream) {
          chunks.push(chunk);
          text += chunk.choices[0]?.delta.content ?? '';
        }
      },
      { input: PROMPT, output: COMPLETION },
    );
    expect(text.length).toBeGreaterThan(0);
    expect(chunks.filter((c) => c.choices.length === 0)).toEqual([]);
    expect(chunks.some((c) => c.usage)).toBe(false);
    const sent = upstream.received.at(-1)?.json as { stream_options?: unknown } | undefined;
    expect(sent?.stream_options).toEqual({ include_usage: true });
  });

  test('the raw stream stays valid server-sent events ending in [DONE]', async () => {
    const r = await request(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'priced', messages, stream: true }),
    });
    expect(r.status).toBe(200);
    const events = r.text.split('\n\n').filter((e) => e.trim() !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    for (const e of events.slice(0, -1)) {
      expect(e.startsWith('data: ')).toBe(true);
      expect((JSON.parse(e.slice(6)) as { choices: unknown[] }).choices.length).toBeGreaterThan(0);
    }
  });

  test('a caller that asked for usage gets the usage chunk, and is charged exactly', async () => {
    let usage: unknown;
    await expectCharged(
      async () => {
        const stream = await client().chat.completions.create({ model: 'priced', messages, stream: true, stream_options: { include_usage: true } });
        for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
      },
      { input: PROMPT, output: COMPLETION },
    );
    expect(usage).toMatchObject({ prompt_tokens: PROMPT, completion_tokens: COMPLETION });
  });

  test('a streamed completion is asked for usage too, and charged exactly', async () => {
    let chunks = 0;
    await expectCharged(
      async () => {
        const stream = await client().completions.create({ model: 'priced', prompt: 'say something', stream: true });
        for await (const chunk of stream) {
          chunks += 1;
          expect(chunk.choices.length).toBeGreaterThan(0);
        }
      },
      { input: PROMPT, output: COMPLETION },
    );
    expect(chunks).toBeGreaterThan(0);
  });

  test('JSON answers are charged exactly', async () => {
    await expectCharged(
      async () => {
        const answer = await client().chat.completions.create({ model: 'priced', messages });
        expect(answer.usage?.prompt_tokens).toBe(PROMPT);
      },
      { input: PROMPT, output: COMPLETION },
    );
  });

  test("Anthropic's message_start and message_delta usage are merged, for JSON and streams", async () => {
    const headers = { 'content-type': 'application/json', 'x-api-key': KEY, 'anthropic-version': '2023-06-01' };
    const body = (stream: boolean): string => JSON.stringify({ model: 'priced', max_tokens: 64, stream, messages });
    await expectCharged(async () => {
      const r = await request(`${base}/v1/messages`, { method: 'POST', headers, body: body(false) });
      expect(r.status).toBe(200);
    }, { input: PROMPT, output: COMPLETION });
    await expectCharged(async () => {
      const r = await request(`${base}/v1/messages`, { method: 'POST', headers, body: body(true) });
      expect(r.status).toBe(200);
      expect(r.text).toContain('message_delta');
    }, { input: PROMPT, output: COMPLETION });
  });

  test('a client that leaves mid-stream is still charged', async () => {
    upstream.behave({ usage: { promptTokens: PROMPT, completionTokens: COMPLETION }, chunkDelayMs: 200 });
    try {
      const before = await charged('input');
      const stream = await client().chat.completions.create({ model: 'priced', messages, stream: true });
      let seen = 0;
      // Leaving the loop closes the SDK's connection.
      for await (const _ of stream) if (++seen === 1) break;
      expect(seen).toBe(1);
      await waitFor('the abort charged', async () => ((await charged('input')) > before ? true : undefined), { timeoutMs: 10_000 });
    } finally {
      upstream.behave({ usage: { promptTokens: PROMPT, completionTokens: COMPLETION } });
    }
  });
});

describe('the price table', () => {
  // Version 2's own prices: 1 per million input tokens, 5 per million output tokens.
  const cost = (PROMPT * 1 + COMPLETION * 5) / 1_000_000;

  test('an answer is priced at its version and counted per consumer and model', async () => {
    const labels = { model: 'priced', version: '2', consumer: 'acme', currency: 'USD' };
    const before = await sample('flowgate_llm_cost_total', labels);
    await client().chat.completions.create({ model: 'priced', messages });
    const after = await waitFor('the cost counted', async () => {
      const now = await sample('flowgate_llm_cost_total', labels);
      return now > before ? now : undefined;
    });
    expect(after - before).toBeCloseTo(cost, 12);
  });

  test("Envoy's access log carries the cost the filter service set as dynamic metadata", async () => {
    const labels = { model: 'priced', version: '2', currency: 'USD' };
    const logged = (): Promise<number> => sample('flowgate_model_llm_cost_total', labels);
    // Envoy flushes access logs every second: wait until the earlier tests' entries have all arrived.
    let previous = await logged();
    const before = await waitFor(
      'the access logs to settle',
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const now = await logged();
        const settled = now === previous && now > 0;
        previous = now;
        return settled ? now : undefined;
      },
      { timeoutMs: 20_000 },
    );
    const stream = await client().chat.completions.create({ model: 'priced', messages, stream: true });
    for await (const _ of stream) {
      // drained
    }
    const after = await waitFor(
      'the access log entry',
      async () => {
        const now = await logged();
        return now > before ? now : undefined;
      },
      { timeoutMs: 15_000, describe: () => gateway.envoy.process.tail(20) },
    );
    expect(after - before).toBeCloseTo(cost, 12);
  });
});

describe('GenAI metrics and the overhead header', () => {
  const labels = { gen_ai_operation_name: 'chat', gen_ai_request_model: 'priced', gen_ai_response_model: 'priced', gen_ai_provider_name: 'openai_compatible', version: '2' };

  test('tokens by type, request duration, time to first token and per output token, in the semantic conventions', async () => {
    const before = {
      input: await sample('gen_ai_client_token_usage_sum', { ...labels, gen_ai_token_type: 'input' }),
      output: await sample('gen_ai_client_token_usage_sum', { ...labels, gen_ai_token_type: 'output' }),
      duration: await sample('gen_ai_server_request_duration_seconds_count', labels),
      ttft: await sample('gen_ai_server_time_to_first_token_seconds_count', labels),
      tpot: await sample('gen_ai_server_time_per_output_token_seconds_count', labels),
    };
    const stream = await client().chat.completions.create({ model: 'priced', messages, stream: true });
    for await (const _ of stream) {
      // drained
    }
    await waitFor('the stream measured', async () => ((await sample('gen_ai_server_time_to_first_token_seconds_count', labels)) > before.ttft ? true : undefined), { timeoutMs: 10_000 });
    expect((await sample('gen_ai_client_token_usage_sum', { ...labels, gen_ai_token_type: 'input' })) - before.input).toBe(PROMPT);
    expect((await sample('gen_ai_client_token_usage_sum', { ...labels, gen_ai_token_type: 'output' })) - before.output).toBe(COMPLETION);
    expect((await sample('gen_ai_server_request_duration_seconds_count', labels)) - before.duration).toBe(1);
    expect((await sample('gen_ai_server_time_per_output_token_seconds_count', labels)) - before.tpot).toBe(1);
    // A JSON answer has a duration but no time to first token.
    const ttft = await sample('gen_ai_server_time_to_first_token_seconds_count', labels);
    await client().chat.completions.create({ model: 'priced', messages });
    await waitFor('the answer measured', async () => ((await sample('gen_ai_server_request_duration_seconds_count', labels)) - before.duration >= 2 ? true : undefined), { timeoutMs: 10_000 });
    expect(await sample('gen_ai_server_time_to_first_token_seconds_count', labels)).toBe(ttft);
  });

  test('every answer says how long the filter service spent on it', async () => {
    const { response } = await client().chat.completions.create({ model: 'priced', messages }).withResponse();
    const overhead = response.headers.get('x-flowgate-overhead-ms');
    expect(overhead).toMatch(/^\d+\.\d{2}$/);
    expect(Number(overhead)).toBeLessThan(1000);
  });
});
