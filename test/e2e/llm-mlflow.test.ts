import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { serveModel, startMlflow, type LoggedModel, type MlflowServer, type ServedModel } from '../harness/mlflow.js';
import { openaiSdks, resultOf, runPythonOpenaiBatch, type SdkOutcome, type StreamResult } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request } from '../harness/traffic.js';

/**
 * The demo ChatModel (examples/llm-model) registered in a real MLflow, each version served by `mlflow models
 * serve`, reached through /v1/chat/completions with the official SDKs: the answer comes back in OpenAI's shape
 * (the served version in `model`), `stream: true` is answered with server-sent events made from MLflow's one
 * JSON answer, `max_completion_tokens` keeps limiting, MLflow's error bodies (which repeat the request) never
 * reach the caller, and moving the champion alias under load fails no request.
 */

const SECRET_TEXT = 'card 4111 1111 1111 1111 belongs to jane@example.com';

let mlflow: MlflowServer;
let served: ServedModel[] = [];
let gateway: LlmGateway;
let versions: LoggedModel[];
let base: string;

const chat = (body: Record<string, unknown>): ReturnType<typeof request> =>
  request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

const contentOf = (text: string): string => (JSON.parse(text) as { choices: { message: { content: string } }[] }).choices[0]?.message.content ?? '';

beforeAll(async () => {
  registerSecrets(SECRET_TEXT);
  mlflow = await startMlflow({ name: 'mlflow-llm' });
  // Logged and served side by side (each takes a Python start-up), so MLflow numbers them in either order:
  // versions[0] is the one labelled v1 (the champion), whatever its number.
  versions = await Promise.all([
    mlflow.logLlmModel('support-bot', 'v1', { aliases: ['champion'] }),
    mlflow.logLlmModel('support-bot', 'v2', { aliases: ['challenger'] }),
  ]);
  served = await Promise.all(versions.map((v) => serveModel(mlflow.uri, 'support-bot', v.version)));
  for (const [i, v] of versions.entries()) await mlflow.admin.setModelVersionTag('support-bot', v.version, 'flowgate.address', `127.0.0.1:${served[i]?.port ?? 0}`);

  gateway = await startLlmGateway({
    name: 'flowgate-llm-mlflow',
    filterTimeout: '5s',
    files: () => ({
      'support-bot.yaml': `kind: Model
name: support-bot
upstream: { versionTag: flowgate.address }
# The challenger takes no unpinned traffic, but is live, so it can be pinned.
traffic: { stable: { alias: champion }, canary: { alias: challenger, weight: 0 } }
llm: { upstream: mlflow, names: [support] }
`,
    }),
    registry: { mlflowUri: mlflow.uri },
    pollIntervalMs: 500,
    readyModel: 'support-bot',
    readyTimeoutMs: 60_000,
  });
  base = gateway.base;
}, 300_000);

afterAll(async () => {
  await gateway?.stop();
  await Promise.all(served.map((s) => s.stop()));
  await mlflow?.stop();
});

describe('an MLflow ChatModel on the OpenAI API', () => {
  test('the Node SDK gets an OpenAI chat completion naming the served version; max_completion_tokens still limits', async () => {
    const answer = resultOf<{ object: string; model: string; id: string; choices: { message: { role: string; content: string }; finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } }>(
      await openaiSdks.node({ baseUrl: `${base}/v1`, operation: 'chat', args: { model: 'support', messages: [{ role: 'user', content: 'hello there friend' }], max_completion_tokens: 3 } }),
    );
    expect(answer).toMatchObject({ object: 'chat.completion', model: `support-bot/${versions[0]?.version ?? ''}` });
    expect(answer.id).toMatch(/^chatcmpl-/);
    expect(answer.choices[0]).toMatchObject({ message: { role: 'assistant', content: '[v1] hello there' }, finish_reason: 'length' });
    expect(answer.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3 });
  });

  test('the Python SDK streams: events made from the one JSON answer, the usage chunk only when asked', async () => {
    const messages = [{ role: 'user', content: 'stream me please' }];
    const [plain, withUsage] = await runPythonOpenaiBatch([
      { baseUrl: `${base}/v1`, operation: 'stream', args: { model: 'support-bot', messages } },
      { baseUrl: `${base}/v1`, operation: 'stream', args: { model: 'support-bot', messages, stream_options: { include_usage: true } } },
    ]);
    const a = resultOf<StreamResult>(plain as SdkOutcome);
    const b = resultOf<StreamResult>(withUsage as SdkOutcome);
    expect(a.text).toBe('[v1] stream me please');
    expect(a.usage).toBeNull();
    expect(a.chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === `support-bot/${versions[0]?.version ?? ''}`)).toBe(true);
    expect(b.text).toBe('[v1] stream me please');
    expect(b.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
  });

  test('@challenger and /VERSION pins reach the other version', async () => {
    for (const model of ['support-bot@challenger', `support-bot/${versions[1]?.version ?? ''}`]) {
      const answer = await chat({ model, messages: [{ role: 'user', content: 'who are you' }] });
      expect(answer.status, model).toBe(200);
      expect(contentOf(answer.text)).toBe('[v2] who are you');
    }
  });

  test("MLflow's error bodies never reach the caller; parts MLflow cannot read are a clear 400", async () => {
    // n: 1.5 passes the gateway and fails MLflow's schema, whose message would repeat the whole request.
    const refused = await chat({ model: 'support-bot', n: 1.5, messages: [{ role: 'user', content: SECRET_TEXT }] });
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text)).toMatchObject({ error: { type: 'invalid_request_error', code: expect.any(String) as string } });
    expect(refused.text).not.toContain('4111');
    expect(refused.text).not.toContain('jane@');
    const image = await chat({ model: 'support-bot', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x.test/a.png' } }] }] });
    expect(image.status).toBe(400);
    expect(JSON.parse(image.text)).toMatchObject({ error: { code: 'unsupported_request' } });
    // Text parts are joined into the one string MLflow takes.
    const parts = await chat({ model: 'support-bot', messages: [{ role: 'user', content: [{ type: 'text', text: 'two' }, { type: 'text', text: 'parts' }] }] });
    expect(contentOf(parts.text)).toBe('[v1] two parts');
  });

  test('moving the champion alias under load fails no request', async () => {
    let running = true;
    let sent = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const loop = async (): Promise<void> => {
      while (running) {
        const answer = await chat({ model: 'support-bot', messages: [{ role: 'user', content: 'ping' }] });
        sent++;
        if (answer.status !== 200) failures.push(`${answer.status} ${answer.text.slice(0, 200)}`);
        else seen.add(contentOf(answer.text));
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    await waitFor('traffic on v1', () => (seen.has('[v1] ping') ? true : undefined), { timeoutMs: 30_000 });
    await mlflow.admin.setAlias('support-bot', 'champion', versions[1]?.version ?? '');
    await waitFor('traffic on v2 after the alias moved', () => (seen.has('[v2] ping') ? true : undefined), { timeoutMs: 30_000 });
    const before = sent;
    await waitFor('more traffic after the move', () => (sent >= before + 40 ? true : undefined), { timeoutMs: 30_000 });
    running = false;
    await Promise.all(loops);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(sent).toBeGreaterThan(40);
  }, 120_000);
});
