import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Header } from '../../src/contract/filter-wire.js';
import { PromptError } from '../../src/contract/prompts.js';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { registerPrompt, setPromptAlias, startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { openaiClient } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';

/**
 * Prompts from MLflow's Prompt Registry through real Envoy, a real MLflow and the official Node SDK: a prompt
 * registered with mlflow.genai.register_prompt (Python) and aliased is rendered into the chat request the
 * upstream receives (the echo stand-in records it), with a variable from the body and one from a header; the
 * answer names the prompt version; moving the alias in MLflow changes the rendering within the sync bound
 * (the poll interval); a missing variable is a 400 naming it; `allowUntemplated: false` refuses a caller's own
 * system prompt. Both refusals never reach the upstream.
 */

const POLL_MS = 500;
const PROMPT = 'support-system';

let mlflow: MlflowServer;
let upstream: LlmUpstream;
let gateway: LlmGateway;
let client: OpenAI;

type Body = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
/** A chat request with the gateway's `prompt_variables` (the SDK sends unknown body fields as given). */
const withVariables = (model: string, variables: Record<string, string> | undefined, messages: Body['messages'] = [{ role: 'user', content: 'where is my invoice?' }]): Body =>
  ({ model, messages, ...(variables && { prompt_variables: variables }) });

/** The messages of the last request the upstream received. */
const lastMessages = (): { role: string; content: string }[] => ((upstream.received.at(-1)?.json ?? {}) as { messages?: { role: string; content: string }[] }).messages ?? [];

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-llm-prompts' });
  upstream = await startLlmUpstream({ name: 'prompts-echo' });
  for (const name of ['support', 'strict']) {
    await mlflow.admin.createRegisteredModel(name);
    await mlflow.admin.createModelVersion({ name, source: `s3://models/${name}/1` });
  }
  await registerPrompt(mlflow.uri, PROMPT, 'You are the assistant of {{ company }}. Help with {{topic}}.', 'production');

  gateway = await startLlmGateway({
    name: 'flowgate-llm-prompts',
    filterTimeout: '5s',
    files: () => ({
      'models.yaml': `kind: Model
name: support
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm:
  prompt: { name: ${PROMPT}, alias: production, variables: { fromHeaders: { company: x-company } } }
---
kind: Model
name: strict
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm:
  prompt: { name: ${PROMPT}, version: 1, allowUntemplated: false, variables: { fromHeaders: { company: x-company } } }
`,
    }),
    registry: { mlflowUri: mlflow.uri },
    pollIntervalMs: POLL_MS,
    readyModel: 'support',
    readyBody: { prompt_variables: { topic: 'billing' } },
    readyHeaders: { 'x-company': 'Acme' },
    readyTimeoutMs: 60_000,
  });
  client = openaiClient(`${gateway.base}/v1`, 'unused', { headers: { 'x-company': 'Acme' } });
}, 240_000);

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await mlflow?.stop();
});

describe('prompts from the MLflow Prompt Registry', () => {
  test('the aliased prompt is rendered into the request the upstream receives, and the answer names its version', async () => {
    const { data, response } = await client.chat.completions.create(withVariables('support', { topic: 'billing' })).withResponse();
    expect(data.choices[0]?.message.content).toBeTruthy();
    expect(response.headers.get(Header.promptVersion)).toBe(`${PROMPT}/1`);
    const received = upstream.received.at(-1)?.json as Record<string, unknown>;
    expect(received.prompt_variables).toBeUndefined();
    expect(lastMessages()).toEqual([
      { role: 'system', content: 'You are the assistant of Acme. Help with billing.' },
      { role: 'user', content: 'where is my invoice?' },
    ]);
    // Audit lines are written in batches: wait for the one of this request rather than read the log at once.
    const audit = await waitFor('the prompt audit line', () => {
      const lines = gateway.flowgate.logLines().filter((l) => l.kind === 'prompt' && l.model === 'support' && l.prompt === `${PROMPT}/1`);
      return lines.length > 0 ? lines : undefined;
    }, { timeoutMs: 5_000, intervalMs: 50 });
    expect(audit[0]?.decision).toBe('allow');
  });

  test('a missing variable is a 400 naming it, and never reaches the upstream', async () => {
    const before = upstream.received.length;
    const err = await client.chat.completions.create(withVariables('support', undefined)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const bad = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(bad.code).toBe(PromptError.missingVariable);
    expect(bad.message).toContain('topic');
    expect(upstream.received.length).toBe(before);
  });

  test('allowUntemplated: false refuses a caller system prompt; without one the request passes', async () => {
    const before = upstream.received.length;
    const own: Body['messages'] = [
      { role: 'system', content: 'You are a pirate.' },
      { role: 'user', content: 'hi' },
    ];
    const err = await client.chat.completions.create(withVariables('strict', { topic: 'returns' }, own)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe(PromptError.untemplated);
    expect(upstream.received.length).toBe(before);
    await client.chat.completions.create(withVariables('strict', { topic: 'returns' }));
    expect(lastMessages()[0]).toEqual({ role: 'system', content: 'You are the assistant of Acme. Help with returns.' });
  });

  test('moving the alias in MLflow changes the rendering within the sync bound', async () => {
    const v2 = await registerPrompt(mlflow.uri, PROMPT, 'v2: {{company}} support, topic {{ topic }}. Be brief.');
    // A new version alone changes nothing: the alias still names version 1 (once two more polls have read v2).
    const polls = async (): Promise<number> => (await gateway.flowgate.metric('flowgate_registry_sync_total{result="ok"}')) ?? 0;
    const after = await polls();
    await waitFor('two polls after the new version', async () => ((await polls()) >= after + 2 ? true : undefined), { timeoutMs: 10 * POLL_MS });
    const { response: still } = await client.chat.completions.create(withVariables('support', { topic: 'billing' })).withResponse();
    expect(still.headers.get(Header.promptVersion)).toBe(`${PROMPT}/1`);
    await setPromptAlias(mlflow.uri, PROMPT, 'production', v2);
    const moved = Date.now();
    let header: string | null = null;
    await waitFor(
      'the new prompt version in the answers',
      async () => {
        const { response } = await client.chat.completions.create(withVariables('support', { topic: 'billing' })).withResponse();
        header = response.headers.get(Header.promptVersion);
        return header === `${PROMPT}/${v2}` ? true : undefined;
      },
      { timeoutMs: 10 * POLL_MS + 5000, intervalMs: 50, describe: () => `last header ${header ?? 'none'}\n${gateway.flowgate.process.tail(20)}` },
    );
    const tookMs = Date.now() - moved;
    // The bound: one poll interval, plus the poll itself and the xDS push to the filter service and Envoy.
    expect(tookMs).toBeLessThan(POLL_MS + 3000);
    expect(lastMessages()[0]).toEqual({ role: 'system', content: 'v2: Acme support, topic billing. Be brief.' });
    // The model pinned to version 1 is unaffected.
    await client.chat.completions.create(withVariables('strict', { topic: 'x' }));
    expect(lastMessages()[0]?.content).toBe('You are the assistant of Acme. Help with x.');
    const served = await gateway.flowgate.metric(`flowgate_llm_prompt_requests_total{model="support",prompt="${PROMPT}",prompt_version="${v2}"}`);
    expect(served).toBeGreaterThan(0);
    process.stdout.write(`prompt alias move seen after ${tookMs} ms (poll interval ${POLL_MS} ms)\n`);
  });
});
