import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient } from '../../src/registry/mlflow-client.js';
import { predictChatInProcess, serveModel, startMlflow, type LoggedModel, type MlflowServer, type ServedModel } from '../harness/mlflow.js';

/**
 * The LLM demo model (examples/llm-model, an MLflow ChatModel) end to end: logged and registered in a real
 * MLflow, served by `mlflow models serve`, and asked OpenAI-shaped questions at /invocations. These tests pin
 * down what MLflow 3.17's scoring server accepts and returns for a ChatModel (the table in
 * examples/llm-model/README.md): the gateway's adapter relies on every line, so a new MLflow that changes
 * one fails here first.
 */

let mlflow: MlflowServer;
let v1: LoggedModel;
let v2: LoggedModel;
let served: ServedModel;

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-llm-model-test' });
  v1 = await mlflow.logLlmModel('support-bot', 'v1', { tags: { 'flowgate.upstream': 'mlflow-chat' }, aliases: ['champion'] });
  v2 = await mlflow.logLlmModel('support-bot', 'v2', { aliases: ['challenger'] });
  served = await serveModel(mlflow.uri, 'support-bot', v1.version);
});

afterAll(async () => {
  await served?.stop();
  await mlflow?.stop();
});

interface Invocation {
  status: number;
  contentType: string;
  text: string;
  json: unknown;
}

async function invoke(body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Invocation> {
  const res = await fetch(`${served.url}/invocations`, {
    method: 'POST',
    headers,
    // Bytes, not a string: fetch would add a text/plain content type to a string body.
    body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text, json };
}

interface ChatAnswer {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { index: number; message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  custom_outputs: { label: string; params: Record<string, unknown> };
}

/** The demo's tokenizer, restated: whitespace-separated words. */
const words = (text: string): number => text.split(/\s+/).filter(Boolean).length;

const question = [
  { role: 'system', content: 'You answer in one line.' },
  { role: 'user', content: 'Where is my parcel number 42?' },
];

describe('LLM demo model (ChatModel) in a real MLflow', () => {
  it('registers versions with their aliases and tags', async () => {
    expect([v1.name, v1.version, v2.version]).toEqual(['support-bot', '1', '2']);
    const snapshot = await new MlflowClient({ trackingUri: mlflow.uri }).fetchSnapshot(['support-bot']);
    const model = snapshot.models.get('support-bot');
    expect(model?.aliases).toEqual({ champion: '1', challenger: '2' });
    expect(model?.versions.map((v) => [v.version, v.status, v.runId])).toEqual([
      ['1', 'READY', v1.runId],
      ['2', 'READY', v2.runId],
    ]);
    expect(model?.versions[0]?.tags['flowgate.upstream']).toBe('mlflow-chat');
  });

  it('answers an unwrapped chat request with an OpenAI-like chat.completion', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await invoke({ messages: question, temperature: 0, max_tokens: 50 });
    expect(res.status, res.text).toBe(200);
    expect(res.contentType).toBe('application/json');
    const answer = res.json as ChatAnswer;
    const content = '[v1] Where is my parcel number 42?';
    expect(answer.object).toBe('chat.completion');
    expect(answer.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    expect(answer.model).toBe('support-bot');
    expect(answer.created).toBeGreaterThanOrEqual(before - 1);
    expect(answer.choices).toEqual([{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }]);
    const prompt = words(question[0]!.content) + words(question[1]!.content);
    expect(answer.usage).toEqual({ prompt_tokens: prompt, completion_tokens: words(content), total_tokens: prompt + words(content) });
    // MLflow's own extra field, which OpenAI's schema does not have; ChatParams defaults filled in.
    expect(answer.custom_outputs).toEqual({ label: 'v1', params: { temperature: 0, max_tokens: 50, n: 1, stream: false } });
    // None of OpenAI's optional response fields: the dataclasses drop what is None.
    expect(Object.keys(answer).sort()).toEqual(['choices', 'created', 'custom_outputs', 'id', 'model', 'object', 'usage']);

    // Same question, same version: same id (a deterministic model); another question: another id.
    const again = (await invoke({ messages: question, temperature: 0, max_tokens: 50 })).json as ChatAnswer;
    expect(again.id).toBe(answer.id);
    const other = (await invoke({ messages: [{ role: 'user', content: 'Something else' }] })).json as ChatAnswer;
    expect(other.id).not.toBe(answer.id);
    expect(other.choices[0]?.message.content).toBe('[v1] Something else');
  });

  it('honours max_tokens and n, and takes the last user message after tool turns', async () => {
    const cut = (await invoke({ messages: [{ role: 'user', content: 'one two three four five' }], max_tokens: 3, n: 2 })).json as ChatAnswer;
    expect(cut.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, '[v1] one two', 'length'],
      [1, '[v1] one two', 'length'],
    ]);
    expect(cut.usage).toEqual({ prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 });

    const toolTurns = [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
      { role: 'tool', content: 'rain', tool_call_id: 'call_1' },
      { role: 'user', content: 'so umbrella?' },
    ];
    const tools = [{ type: 'function', function: { name: 'weather', description: 'd', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const res = await invoke({ messages: toolTurns, tools });
    expect(res.status, res.text).toBe(200);
    expect((res.json as ChatAnswer).choices[0]?.message.content).toBe('[v1] so umbrella?');
  });

  it('accepts and silently drops top-level fields it does not know (model, stream_options, max_completion_tokens, ...)', async () => {
    const res = await invoke({
      model: 'support-bot',
      messages: [{ role: 'user', content: 'a b c d' }],
      max_completion_tokens: 2,
      stream_options: { include_usage: true },
      user: 'u-1',
      seed: 7,
      response_format: { type: 'text' },
      tool_choice: 'auto',
      custom_inputs: { tenant: 'acme' },
    });
    expect(res.status, res.text).toBe(200);
    const answer = res.json as ChatAnswer;
    // max_completion_tokens never reached the model: the answer is not cut.
    expect(answer.choices[0]).toMatchObject({ message: { content: '[v1] a b c d' }, finish_reason: 'stop' });
    expect(answer.custom_outputs.params).toEqual({ temperature: 1, n: 1, stream: false, custom_inputs: { tenant: 'acme' } });
  });

  it('does not stream over /invocations: stream=true gets one JSON answer', async () => {
    const res = await invoke({ messages: [{ role: 'user', content: 'stream me' }], stream: true });
    expect(res.status, res.text).toBe(200);
    expect(res.contentType).toBe('application/json');
    expect(res.text).not.toContain('data:');
    const answer = res.json as ChatAnswer;
    expect(answer.object).toBe('chat.completion');
    expect(answer.choices[0]?.message.content).toBe('[v1] stream me');
    // The flag reaches the model's params, but the server calls predict(), never predict_stream().
    expect(answer.custom_outputs.params.stream).toBe(true);
  });

  it('refuses what OpenAI accepts but the ChatModel signature does not, in MLflow error shape', async () => {
    const refused: [string, unknown][] = [
      ['null for an optional param', { messages: [{ role: 'user', content: 'x' }], max_tokens: null }],
      ['stop as a string', { messages: [{ role: 'user', content: 'x' }], stop: 'END' }],
      ['a float max_tokens', { messages: [{ role: 'user', content: 'x' }], max_tokens: 3.0 + 0.5 }],
      ['multimodal content parts', { messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }] }] }],
      ['an unknown key in a message', { messages: [{ role: 'user', content: 'x', audio: null }] }],
      ['a tool without parameters', { messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] }],
      ['a user message without content', { messages: [{ role: 'user' }] }],
    ];
    for (const [what, body] of refused) {
      const res = await invoke(body);
      expect(res.status, `${what}: ${res.text}`).toBe(400);
      const error = res.json as { error_code?: string; message?: string };
      expect(['INVALID_PARAMETER_VALUE', 'BAD_REQUEST'], what).toContain(error.error_code);
      expect(typeof error.message, what).toBe('string');
    }
    // Without a JSON content type the server does not answer JSON at all.
    const plain = await invoke({ messages: [{ role: 'user', content: 'x' }] }, { 'content-type': 'text/plain' });
    expect([plain.status, plain.contentType]).toEqual([415, 'text/plain; charset=utf-8']);
    const bare = await invoke({ messages: [{ role: 'user', content: 'x' }] }, {});
    expect([bare.status, bare.text]).toEqual([500, 'Internal Server Error']);
    const notJson = await invoke('{"messages": [', { 'content-type': 'application/json' });
    expect([notJson.status, (notJson.json as { error_code: string }).error_code]).toEqual([400, 'BAD_REQUEST']);
  });

  it('has /invocations as its only prediction path, and never compresses', async () => {
    const openaiPath = await fetch(`${served.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"messages": []}' });
    expect(openaiPath.status).toBe(404);
    const version = await fetch(`${served.url}/version`);
    expect(await version.text()).toBe('3.17.2');
    const gzipAsked = await fetch(`${served.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'zip it' }] }),
    });
    expect(gzipAsked.headers.get('content-encoding')).toBeNull();
    expect(((await gzipAsked.json()) as ChatAnswer).choices[0]?.message.content).toBe('[v1] zip it');
  });

  it('streams in-process with predict_stream: OpenAI-shaped chunks, usage last with empty choices', async () => {
    const chunks = (await predictChatInProcess(mlflow.uri, `models:/support-bot@challenger`, { messages: [{ role: 'user', content: 'hello stream world' }] }, { stream: true })) as {
      object: string;
      id: string;
      choices: { delta: { role?: string; content?: string }; finish_reason?: string }[];
      usage?: ChatAnswer['usage'];
    }[];
    expect(chunks.length).toBeGreaterThan(2);
    expect(new Set(chunks.map((c) => c.object))).toEqual(new Set(['chat.completion.chunk']));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('[v2] hello stream world');
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } });
  });
});
