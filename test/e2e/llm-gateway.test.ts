import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiSdks, resultOf, runPythonOpenaiBatch, type SdkOutcome, type StreamResult } from '../harness/openai-clients.js';
import { registerSecrets } from '../harness/secrets.js';
import { request } from '../harness/traffic.js';

/**
 * The OpenAI-compatible API through real Envoy and the official SDKs (Python and Node), routed by the body's
 * `model`: chat with and without streaming, completions, embeddings, the model list per caller, unknown models
 * (NotFoundError), rate limits (RateLimitError with retry-after), the canary split by model name, `@alias`
 * and `/VERSION` pins, and the routing attacks of the security suite replayed on the body route: no `model`
 * string or header trick reaches a version the caller may not use. Upstreams are the OpenAI stand-in
 * (test/harness/llm-upstream.ts); a registry file stands in for MLflow (test/e2e/llm-mlflow.test.ts has the real one).
 */

const KEYS = { acme: 'acme-llm-key-0123456789', beta: 'beta-llm-key-0123456789' } as const;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let gateway: LlmGateway;
let v1: LlmUpstream;
let v2: LlmUpstream;
let plain: LlmUpstream;
let base: string;

function policy(): Record<string, string> {
  return {
    'consumers.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: acme-1, sha256: ${sha(KEYS.acme)} }]
---
kind: Consumer
name: beta
apiKeys: [{ id: beta-1, sha256: ${sha(KEYS.beta)} }]
`,
    'models.yaml': `kind: Model
name: chat
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 20 }
access: { consumers: [acme, beta], versions: { challenger: { consumers: [beta] } } }
llm:
  names: [gpt-4o]
  modelNameOverride: { versionTag: flowgate.llm.model }
---
kind: Model
name: open
upstream: { addressTemplate: "127.0.0.1:${plain.port}" }
traffic: { stable: { version: 1 } }
llm: {}
---
kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:${plain.port}" }
traffic: { stable: { version: 1 } }
access: { consumers: [acme] }
rateLimits: [{ requests: 2, per: minute }]
llm: { endpoints: [chat] }
---
kind: Model
name: masked
upstream: { addressTemplate: "127.0.0.1:${plain.port}" }
traffic: { stable: { version: 1 } }
masking: { request: { patterns: [email] }, maxBodyBytes: 2048 }
llm: {}
`,
  };
}

const registry = (): string =>
  JSON.stringify({
    models: [
      {
        name: 'chat',
        aliases: { champion: '1', challenger: '2' },
        versions: [v1, v2].map((u, i) => ({ version: String(i + 1), createdAt: 1_767_225_600_000, tags: { 'flowgate.address': `127.0.0.1:${u.port}`, 'flowgate.llm.model': `chat-${i === 0 ? 'small' : 'large'}` } })),
      },
      { name: 'open', versions: [{ version: '1' }] },
      { name: 'limited', versions: [{ version: '1' }] },
      { name: 'masked', versions: [{ version: '1' }] },
    ],
  });

const chatBody = (model: string, text = 'hello there'): string => JSON.stringify({ model, messages: [{ role: 'user', content: text }] });

/** A raw chat completion through the gateway (no SDK), for counting and for hostile requests. */
const chat = (model: string, headers: Record<string, string> = {}): ReturnType<typeof request> =>
  request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: chatBody(model) });

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

/** Which stand-in answered a chat completion (its label opens the answer). */
function servedBy(text: string): string | undefined {
  try {
    const content = (JSON.parse(text) as { choices: { message: { content: string } }[] }).choices[0]?.message.content ?? '';
    return /^\[([^\]]+)\]/.exec(content)?.[1];
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  registerSecrets(...Object.values(KEYS));
  v1 = await startLlmUpstream({ name: 'v1' });
  v2 = await startLlmUpstream({ name: 'v2' });
  plain = await startLlmUpstream({ name: 'plain' });
  gateway = await startLlmGateway({ name: 'flowgate-llm', files: policy, registry: { json: registry() }, readyModel: 'open' });
  base = gateway.base;
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  for (const u of [v1, v2, plain]) await u?.close();
});

describe('the official SDKs', () => {
  for (const [sdk, run] of Object.entries(openaiSdks)) {
    test(`${sdk}: chat, streamed chat, completions, embeddings`, async () => {
      const baseUrl = `${base}/v1`;
      const answer = resultOf<{ model: string; choices: { message: { content: string } }[]; usage: { total_tokens: number } }>(
        await run({ baseUrl, operation: 'chat', args: { model: 'open', messages: [{ role: 'user', content: `hi from ${sdk}` }] } }),
      );
      expect(answer.choices[0]?.message.content).toBe(`[plain] hi from ${sdk}`);
      // An OpenAI-compatible server's own answer passes through: it names the model it was asked for.
      expect(answer.model).toBe('open');
      expect(answer.usage.total_tokens).toBeGreaterThan(0);

      const streamed = resultOf<StreamResult>(await run({ baseUrl, operation: 'stream', args: { model: 'open', messages: [{ role: 'user', content: 'one two three' }] } }));
      expect(streamed.text).toBe('[plain] one two three');
      expect(streamed.chunks.length).toBeGreaterThan(3);

      const completion = resultOf<{ choices: { text: string }[] }>(await run({ baseUrl, operation: 'completions', args: { model: 'open', prompt: 'say this' } }));
      expect(completion.choices[0]?.text).toBe('[plain] say this');

      const embedded = resultOf<{ data: { embedding: number[] }[] }>(await run({ baseUrl, operation: 'embeddings', args: { model: 'open', input: ['a', 'b'] } }));
      expect(embedded.data).toHaveLength(2);
      expect(embedded.data[0]?.embedding).toHaveLength(8);
    });

    test(`${sdk}: an unknown model raises NotFoundError, listing nothing`, async () => {
      const outcome = await run({ baseUrl: `${base}/v1`, apiKey: KEYS.acme, operation: 'chat', args: { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] } });
      expect(outcome.ok).toBe(false);
      if (outcome.ok) return;
      expect(outcome.error.class).toBe('NotFoundError');
      expect(outcome.error.status).toBe(404);
      const text = JSON.stringify(outcome.error.body);
      expect(text).toContain('model_not_found');
      for (const name of ['chat', 'open', 'limited', 'gpt-4o']) expect(text).not.toContain(`'${name}'`);
    });
  }

  test('a model the caller may not use raises NotFoundError too; a bad key raises AuthenticationError', async () => {
    const [forbidden, badKey, anonymous] = await runPythonOpenaiBatch([
      { baseUrl: `${base}/v1`, apiKey: KEYS.beta, operation: 'chat', args: { model: 'limited', messages: [{ role: 'user', content: 'x' }] } },
      { baseUrl: `${base}/v1`, apiKey: 'not-a-key-0123456789', operation: 'chat', args: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } },
      { baseUrl: `${base}/v1`, operation: 'chat', args: { model: 'chat', messages: [{ role: 'user', content: 'x' }] } },
    ]);
    const classOf = (o: SdkOutcome | undefined): string | undefined => (o && !o.ok ? o.error.class : undefined);
    expect(classOf(forbidden)).toBe('NotFoundError');
    expect(classOf(badKey)).toBe('AuthenticationError');
    expect(classOf(anonymous)).toBe('AuthenticationError');
  });

  test('models.list shows each caller only the models it may use, with created and owned_by', async () => {
    const list = async (apiKey: string): Promise<string[]> => {
      const outcome = await openaiSdks.node({ baseUrl: `${base}/v1`, apiKey, operation: 'models' });
      return resultOf<{ data: { id: string }[] }>(outcome)
        .data.map((m) => m.id)
        .sort();
    };
    // An SDK always sends a key; a caller with none sees the open models only.
    const anonymous = JSON.parse((await request(`${base}/v1/models`)).text) as { data: { id: string }[] };
    expect(anonymous.data.map((m) => m.id).sort()).toEqual(['masked', 'open']);
    expect(await list(KEYS.beta)).toEqual(['chat', 'gpt-4o', 'masked', 'open']);
    expect(await list(KEYS.acme)).toEqual(['chat', 'gpt-4o', 'limited', 'masked', 'open']);
    const python = resultOf<{ data: { id: string; created: number; owned_by: string }[] }>((await runPythonOpenaiBatch([{ baseUrl: `${base}/v1`, apiKey: KEYS.beta, operation: 'models' }]))[0] as SdkOutcome);
    expect(python.data.find((m) => m.id === 'chat')).toMatchObject({ created: 1_767_225_600, owned_by: 'mlflow' });
  });

  test('a rate limit raises RateLimitError with retry-after, from the gateway and from the upstream', async () => {
    const args = { model: 'limited', messages: [{ role: 'user', content: 'x' }] };
    const outcomes: SdkOutcome[] = [];
    for (let i = 0; i < 3; i++) outcomes.push(await openaiSdks.node({ baseUrl: `${base}/v1`, apiKey: KEYS.acme, operation: 'chat', args }));
    const limited = outcomes.at(-1);
    expect(outcomes.slice(0, 2).every((o) => o.ok)).toBe(true);
    expect(limited?.ok).toBe(false);
    if (!limited || limited.ok) return;
    expect(limited.error.class).toBe('RateLimitError');
    expect(Number(limited.error.headers['retry-after'])).toBeGreaterThan(0);
    expect(JSON.stringify(limited.error.body)).toContain('rate_limit_exceeded');

    plain.behaveNext({ status: 429, retryAfter: 7 });
    const [upstream] = await runPythonOpenaiBatch([{ baseUrl: `${base}/v1`, operation: 'chat', args: { ...args, model: 'open' } }]);
    expect(upstream?.ok).toBe(false);
    if (!upstream || upstream.ok) return;
    expect(upstream.error.class).toBe('RateLimitError');
    expect(upstream.error.headers['retry-after']).toBe('7');
  });
});

describe("a model's own filters on the OpenAI API", () => {
  test('masking rewrites the body the upstream sees, and its refusals come in OpenAI shape', async () => {
    registerSecrets('jane.doe@example.com');
    plain.clear();
    const answer = await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody('masked', 'write to jane.doe@example.com') });
    expect(answer.status).toBe(200);
    expect(plain.received.at(-1)?.body).not.toContain('jane.doe@example.com');
    expect(plain.received.at(-1)?.body).toContain('write to');
    const tooLarge = await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody('masked', 'x '.repeat(2000)) });
    expect(tooLarge.status).toBe(413);
    expect(JSON.parse(tooLarge.text)).toMatchObject({ error: { type: 'invalid_request_error', code: expect.any(String) as string, message: expect.any(String) as string } });
  });
});

describe('routing by the model field', () => {
  test('a public name reaches the model, and each version gets its own upstream model name', async () => {
    v1.clear();
    const answer = await chat('gpt-4o', bearer(KEYS.acme));
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-flowgate-model')).toBe('chat');
    expect(answer.headers.get('x-flowgate-model-version')).toBe('1');
    expect((v1.received.at(-1)?.json as { model?: string } | undefined)?.model).toBe('chat-small');
  });

  test('the canary splits 80/20 within 3 points over 2,000 requests', async () => {
    const counts = new Map<string, number>();
    const total = 2000;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        next++;
        const answer = await chat('chat', bearer(KEYS.beta));
        const who = answer.status === 200 ? servedBy(answer.text) : `status ${answer.status} ${answer.text.slice(0, 160)}`;
        counts.set(who ?? '?', (counts.get(who ?? '?') ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const v2Share = ((counts.get('v2') ?? 0) / total) * 100;
    expect(Object.fromEntries(counts), 'every request answered by v1 or v2').toEqual({ v1: expect.any(Number) as number, v2: expect.any(Number) as number });
    expect(Math.abs(v2Share - 20)).toBeLessThanOrEqual(3);
  }, 180_000);

  test('@alias and /VERSION pin a version, for a caller its version rules admit', async () => {
    for (const model of ['chat@challenger', 'chat/2', 'gpt-4o@challenger']) {
      const answer = await chat(model, bearer(KEYS.beta));
      expect(answer.status, model).toBe(200);
      expect(answer.headers.get('x-flowgate-model-version'), model).toBe('2');
      expect(servedBy(answer.text)).toBe('v2');
    }
    const champion = await chat('chat@champion', bearer(KEYS.beta));
    expect(servedBy(champion.text)).toBe('v1');
    const notLive = await chat('chat/7', bearer(KEYS.beta));
    expect(notLive.status).toBe(404);
    expect(notLive.text).toContain('model_not_found');
  });
});

describe('routing attacks on the body route: access.versions holds', () => {
  const acme = bearer(KEYS.acme);

  test('a model-field pin to a version the caller may not use is refused as not found', async () => {
    for (const model of ['chat@challenger', 'chat/2', 'gpt-4o/2', 'gpt-4o@challenger']) {
      const answer = await chat(model, acme);
      expect(answer.status, model).toBe(404);
      expect(answer.text).not.toContain('v2');
    }
  });

  test('unpinned traffic of the caller never lands on a version it may not use', async () => {
    const answers = await Promise.all(Array.from({ length: 60 }, () => chat('chat', acme)));
    expect(answers.every((a) => a.status === 200 && servedBy(a.text) === 'v1')).toBe(true);
  });

  test('header pins next to the body, forged internal headers and joined values never widen access', async () => {
    const tricks: Record<string, string>[] = [
      { 'x-model-version': '2' },
      { 'x-model-alias': 'challenger' },
      { 'x-flowgate-route-version': '2' },
      { 'x-flowgate-llm-model': 'chat', 'x-flowgate-route-version': '2' },
      { 'x-model-version': '1,2' },
      { 'x-flowgate-llm-cooldown': '1' },
    ];
    for (const extra of tricks) {
      const answer = await chat('chat', { ...acme, ...extra });
      const label = JSON.stringify(extra);
      expect(answer.status === 200 ? servedBy(answer.text) : answer.status, label).not.toBe('v2');
    }
    // The body's pin and a header pin naming another version are ambiguous, never the more generous one.
    const both = await chat('chat@champion', { ...bearer(KEYS.beta), 'x-model-alias': 'challenger' });
    expect(both.status).toBe(400);
    expect(JSON.parse(both.text)).toMatchObject({ error: { code: 'ambiguous_pin' } });
    // The body's own model field cannot name the internal routing header's value.
    const forgedBody = await request(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...acme },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }], 'x-flowgate-route-version': '2' }),
    });
    expect(servedBy(forgedBody.text)).toBe('v1');
  });

  test('malformed bodies and unknown paths get OpenAI-shaped errors', async () => {
    const post = (body: string): ReturnType<typeof request> => request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const cases: [Promise<Awaited<ReturnType<typeof request>>>, number, string][] = [
      [post('{not json'), 400, 'invalid_json'],
      [post('[]'), 400, 'invalid_request'],
      [post('{"messages": []}'), 400, 'missing_model'],
      [request(`${base}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'limited', input: 'x' }) }), 404, 'unsupported_endpoint'],
      [request(`${base}/v1/chat/completions`), 405, 'method_not_allowed'],
      [request(`${base}/v1/nothing-here`), 404, 'unknown_url'],
    ];
    for (const [pending, status, code] of cases) {
      const answer = await pending;
      expect(answer.status, code).toBe(status);
      expect(JSON.parse(answer.text), code).toMatchObject({ error: { code, message: expect.any(String) as string } });
    }
  });
});
