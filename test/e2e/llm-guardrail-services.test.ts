import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { GUARDRAIL_BLOCKED, GUARDRAIL_STREAM_UNSUPPORTED, GUARDRAIL_UNAVAILABLE } from '../../src/contract/guardrails.js';
import { guardedModel, startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startGuardrailStub, type GuardrailStub } from '../harness/guardrail-services.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiClient } from '../harness/openai-clients.js';

/**
 * Guardrail services through real Envoy, the filter service and the official Node SDK: an `external` rule
 * speaking Flowgate's JSON contract and a `presidio` rule calling a stub of the Presidio Analyzer API
 * (test/harness/guardrail-services.ts; Microsoft's Presidio itself is not run here). The service's block is a
 * BadRequestError, its mask reaches the upstream rewritten, Presidio's entities are masked on the way in and
 * block a JSON answer on the way out (422); a service that fails or hangs past the rule's timeout refuses
 * (503 guardrail_unavailable) unless the rule fails open.
 */

let gateway: LlmGateway;
let upstream: LlmUpstream;
let stub: GuardrailStub;
let client: OpenAI;

const ask = (model: string, content: string): Promise<OpenAI.Chat.Completions.ChatCompletion> => client.chat.completions.create({ model, messages: [{ role: 'user', content }] });
const failure = async (p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
};
/** The request bodies the upstream received with `marker` in them. */
const receivedWith = (marker: string): string[] => upstream.received.map((r) => r.body).filter((t) => t.includes(marker));

beforeAll(async () => {
  upstream = await startLlmUpstream({ name: 'guardrail-services' });
  stub = await startGuardrailStub();
  const model = (name: string, guardrails: string): string => guardedModel(name, upstream.port, guardrails);
  gateway = await startLlmGateway({
    name: 'flowgate-guardrail-services',
    files: () => ({
      'models.yaml':
        [
      model('ext-closed', `    input: [{ name: policy-check, type: external, url: "${stub.url}/check", timeout: 300ms }]\n`),
      model('ext-open', `    input: [{ name: policy-check-open, type: external, url: "${stub.url}/check", timeout: 300ms, failOpen: true }]\n`),
      model('presidio-in', `    input: [{ name: pii-presidio, type: presidio, url: "${stub.url}", action: mask, timeout: 300ms }]\n`),
      model('presidio-out', `    output: [{ name: no-emails-out, type: presidio, url: "${stub.url}", entities: [EMAIL_ADDRESS], timeout: 300ms }]\n`),
        ].join('---\n'),
    }),
    registry: { json: JSON.stringify({ models: ['ext-closed', 'ext-open', 'presidio-in', 'presidio-out'].map((name) => ({ name, versions: [{ version: '1' }] })) }) },
    readyModel: 'ext-open',
  });
  client = openaiClient(`${gateway.base}/v1`);
}, 120_000);

afterEach(() => {
  stub.mode = 'ok';
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await stub?.close();
});

describe('external guardrail service', () => {
  test("the service's block is a BadRequestError naming the rule, and the upstream never sees the request", async () => {
    const marker = `ext-block-${Date.now()}`;
    const e = await failure(ask('ext-closed', `a forbidden question ${marker}`));
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.code).toBe(GUARDRAIL_BLOCKED);
    expect(e.message).toContain('policy-check');
    expect(receivedWith(marker)).toEqual([]);
    const sent = stub.received.find((r) => JSON.stringify(r.json).includes(marker))?.json;
    expect(sent).toMatchObject({ version: 1, phase: 'input', model: 'ext-closed', rule: 'policy-check', roles: ['user'] });
  });

  test("the service's mask reaches the upstream rewritten", async () => {
    const marker = `ext-mask-${Date.now()}`;
    const answer = await ask('ext-closed', `my code is secret-1234 ${marker}`);
    expect(receivedWith(marker)).toHaveLength(1);
    expect(receivedWith(marker)[0]).toContain('my code is [REDACTED]');
    expect(receivedWith(marker)[0]).not.toContain('secret-1234');
    expect(answer.choices[0]?.message.content).toContain('[REDACTED]');
  });

  test.each(['error', 'hang'] as const)('a service that answers %s: 503 guardrail_unavailable, or passes with failOpen', async (mode) => {
    stub.mode = mode;
    const marker = `ext-${mode}-${Date.now()}`;
    const started = Date.now();
    const e = await failure(ask('ext-closed', `hello ${marker}`));
    expect(e.status).toBe(503);
    expect(e.code).toBe(GUARDRAIL_UNAVAILABLE);
    // A hang is cut at the rule's timeout (300 ms), well before the filter service's (2 s).
    if (mode === 'hang') expect(Date.now() - started).toBeLessThan(1500);
    expect(receivedWith(marker)).toEqual([]);
    await ask('ext-open', `hello ${marker}`);
    expect(receivedWith(marker)).toHaveLength(1);
    const errors = await gateway.flowgate.metric(`flowgate_llm_guardrail_service_errors_total{model="ext-closed",rule="policy-check",reason="${mode === 'hang' ? 'timeout' : 'bad_answer'}"}`);
    expect(errors).toBeGreaterThan(0);
  });
});

describe('presidio (a stub of the Analyzer API)', () => {
  test('entities are masked on the way in with their type', async () => {
    const marker = `presidio-${Date.now()}`;
    await ask('presidio-in', `John Smith at john@example.com ${marker}`);
    expect(receivedWith(marker)).toHaveLength(1);
    expect(receivedWith(marker)[0]).toContain(`[PERSON] at [EMAIL_ADDRESS] ${marker}`);
  });

  test('an answer with an entity is withheld (422); a streamed request is refused first (400)', async () => {
    const e = await failure(ask('presidio-out', 'repeat: mail bob@example.com'));
    expect(e).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect(e.code).toBe(GUARDRAIL_BLOCKED);
    expect((await ask('presidio-out', 'repeat: no address here')).choices[0]?.message.content).toBeTruthy();
    const streamed = await failure(client.chat.completions.create({ model: 'presidio-out', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    expect(streamed.status).toBe(400);
    expect(streamed.code).toBe(GUARDRAIL_STREAM_UNSUPPORTED);
  });

  test('a hanging Analyzer refuses (the rule fails closed by default)', async () => {
    stub.mode = 'hang';
    const e = await failure(ask('presidio-in', 'John Smith'));
    expect(e.status).toBe(503);
    expect(e.code).toBe(GUARDRAIL_UNAVAILABLE);
  });
});
