import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingVector } from './llm-answers.js';
import { startLlmUpstream, type LlmRequestRecord, type LlmUpstream } from './llm-upstream.js';
import { resultOf, runNodeOpenai, runPythonOpenaiBatch, type OpenaiCommand, type SdkOutcome, type StreamResult } from './openai-clients.js';
import { registerSecrets } from './secrets.js';

/**
 * The official OpenAI SDKs (PyPI `openai` and npm `openai`) against the LLM stand-in upstream, no gateway:
 * proves the stand-in speaks the API the way the SDKs expect (so gateway tests can trust it), and that the
 * SDK helpers report results and exceptions the same way for both languages. Every case sends an
 * `x-test-case` header, so the request the stand-in recorded for it can be found.
 */

const upstreamKey = 'sk-standin-5f1c2a9e7b';
registerSecrets(upstreamKey);

let primary: LlmUpstream;
let limited: LlmUpstream;
let zipped: LlmUpstream;
let hanging: LlmUpstream;
let broken: LlmUpstream;

beforeAll(async () => {
  [primary, limited, zipped, hanging, broken] = await Promise.all([
    startLlmUpstream({ name: 'alpha', apiKey: upstreamKey, models: ['support-bot', 'embedder', 'claude-x'] }),
    startLlmUpstream({ name: 'limited', behaviour: { status: 429, retryAfter: 1 } }),
    startLlmUpstream({ name: 'zipped', behaviour: { gzip: 'always' } }),
    startLlmUpstream({ name: 'hanging', behaviour: { hang: true } }),
    startLlmUpstream({ name: 'broken', behaviour: { abortAfterEvents: 3 } }),
  ]);
});

afterAll(async () => {
  await Promise.all([primary, limited, zipped, hanging, broken].map((u) => u?.close()));
});

const question = [
  { role: 'system', content: 'Answer briefly.' },
  { role: 'user', content: 'Where is my parcel?' },
];

/** Every case, by name; the same table runs against each SDK. */
function cases(): Record<string, OpenaiCommand> {
  const at = (upstream: LlmUpstream, operation: OpenaiCommand['operation'], args: Record<string, unknown>, extra: Partial<OpenaiCommand> = {}): OpenaiCommand => ({
    baseUrl: upstream.baseUrl,
    apiKey: upstream === primary ? upstreamKey : 'sk-any',
    operation,
    args,
    ...extra,
  });
  return {
    chat: at(primary, 'chat', { model: 'support-bot', messages: question, max_tokens: 20 }),
    stream: at(primary, 'stream', { model: 'support-bot', messages: question }),
    streamWithUsage: at(primary, 'stream', { model: 'support-bot', messages: question, stream_options: { include_usage: true } }),
    completions: at(primary, 'completions', { model: 'support-bot', prompt: 'Say this is a test', max_tokens: 3 }),
    embeddings: at(primary, 'embeddings', { model: 'embedder', input: ['first text', 'second'], dimensions: 4 }),
    models: at(primary, 'models', {}),
    unknownModel: at(primary, 'chat', { model: 'no-such-model', messages: question }),
    wrongKey: { ...at(primary, 'chat', { model: 'support-bot', messages: question }), apiKey: 'sk-wrong' },
    rateLimited: at(limited, 'chat', { model: 'any', messages: question }),
    retriedAfter: at(limited, 'chat', { model: 'any', messages: question }, { maxRetries: 1 }),
    gzipChat: at(zipped, 'chat', { model: 'any', messages: question }),
    gzipStream: at(zipped, 'stream', { model: 'any', messages: question, stream_options: { include_usage: true } }),
    timeout: at(hanging, 'chat', { model: 'any', messages: question }, { timeoutMs: 500 }),
    cutStream: at(broken, 'stream', { model: 'any', messages: question }),
  };
}

const sdkRunners: Record<'python' | 'node', (commands: OpenaiCommand[]) => Promise<SdkOutcome[]>> = {
  // One interpreter for the whole table: starting Python and importing the SDK is most of the cost.
  python: runPythonOpenaiBatch,
  node: async (commands) => {
    const outcomes: SdkOutcome[] = [];
    for (const command of commands) outcomes.push(await runNodeOpenai(command));
    return outcomes;
  },
};

interface ChatCompletion {
  id: string;
  object: string;
  model: string;
  choices: { index: number; message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

describe.each(['python', 'node'] as const)('the %s OpenAI SDK against the stand-in', (sdk) => {
  const outcomes: Record<string, SdkOutcome> = {};
  const tag = (name: string): string => `${sdk}-${name}`;
  /** The requests the stand-in recorded for one case. */
  const requestsOf = (upstream: LlmUpstream, name: string): LlmRequestRecord[] => upstream.received.filter((r) => r.headers['x-test-case'] === tag(name));
  const failure = (name: string): SdkOutcome & { ok: false } => {
    const outcome = outcomes[name];
    if (outcome === undefined || outcome.ok) throw new Error(`${name}: expected the SDK to raise, got ${JSON.stringify(outcome)}`);
    return outcome;
  };

  beforeAll(async () => {
    const table = Object.entries(cases()).map(([name, command]) => ({ name, command: { ...command, headers: { 'x-test-case': tag(name) } } }));
    const results = await sdkRunners[sdk](table.map((t) => t.command));
    table.forEach((t, i) => (outcomes[t.name] = results[i] as SdkOutcome));
  });

  it('creates a chat completion, and the stand-in saw what the SDK sent', () => {
    const answer = resultOf<ChatCompletion>(outcomes.chat as SdkOutcome);
    expect(answer.object).toBe('chat.completion');
    expect(answer.model).toBe('support-bot');
    expect(answer.choices).toMatchObject([{ index: 0, message: { role: 'assistant', content: '[alpha] Where is my parcel?' }, finish_reason: 'stop' }]);
    // Prompt: "Answer briefly." (2) + "Where is my parcel?" (4); completion: 5 words.
    expect(answer.usage).toEqual({ prompt_tokens: 6, completion_tokens: 5, total_tokens: 11 });
    const [request] = requestsOf(primary, 'chat');
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/v1/chat/completions');
    expect(request?.headers.authorization).toBe(`Bearer ${upstreamKey}`);
    expect(String(request?.headers['user-agent'])).toMatch(sdk === 'python' ? /^OpenAI\/Python/ : /^OpenAI\/JS/);
    expect(request?.json).toEqual({ model: 'support-bot', messages: question, max_tokens: 20 });
  });

  it('streams a chat completion without usage unless include_usage is asked', () => {
    const plain = resultOf<StreamResult>(outcomes.stream as SdkOutcome);
    expect(plain.text).toBe('[alpha] Where is my parcel?');
    expect(plain.usage).toBeNull();
    expect(plain.chunks.every((c) => !('usage' in c) && (c.choices as unknown[]).length === 1)).toBe(true);
    // A role chunk, one per word, one with the finish_reason.
    expect(plain.chunks).toHaveLength(1 + 5 + 1);
    expect(requestsOf(primary, 'stream')[0]?.json).toMatchObject({ stream: true });

    const counted = resultOf<StreamResult>(outcomes.streamWithUsage as SdkOutcome);
    expect(counted.text).toBe(plain.text);
    expect(counted.usage).toEqual({ prompt_tokens: 6, completion_tokens: 5, total_tokens: 11 });
    const last = counted.chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(counted.chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('creates a completion (legacy endpoint) honouring max_tokens', () => {
    const answer = resultOf<{ object: string; choices: { text: string; finish_reason: string }[]; usage: unknown }>(outcomes.completions as SdkOutcome);
    expect(answer.object).toBe('text_completion');
    expect(answer.choices).toMatchObject([{ text: '[alpha] Say this', finish_reason: 'length' }]);
    expect(answer.usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
  });

  it('creates embeddings the stand-in computed, whatever encoding the SDK asked for', () => {
    const answer = resultOf<{ data: { index: number; embedding: number[] }[]; usage: unknown }>(outcomes.embeddings as SdkOutcome);
    expect(answer.data.map((d) => d.index)).toEqual([0, 1]);
    expect(answer.data[0]?.embedding).toEqual(embeddingVector('alpha', 'first text', 4));
    expect(answer.data[1]?.embedding).toEqual(embeddingVector('alpha', 'second', 4));
    expect(answer.data[0]?.embedding).not.toEqual(answer.data[1]?.embedding);
    expect(answer.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
    // Both SDKs ask for base64 when the caller names no encoding, and decode it: an upstream (or a gateway
    // reading the answer) must handle packed float32.
    expect((requestsOf(primary, 'embeddings')[0]?.json as { encoding_format?: string }).encoding_format).toBe('base64');
  });

  it('lists models', () => {
    const answer = resultOf<{ data: { id: string; object: string; owned_by: string }[] }>(outcomes.models as SdkOutcome);
    expect(answer.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([
      ['support-bot', 'model', 'alpha'],
      ['embedder', 'model', 'alpha'],
      ['claude-x', 'model', 'alpha'],
    ]);
  });

  it('raises NotFoundError for an unknown model and AuthenticationError for a wrong key', () => {
    const notFound = failure('unknownModel').error;
    expect([notFound.class, notFound.status]).toEqual(['NotFoundError', 404]);
    expect(notFound.body).toMatchObject({ code: 'model_not_found', type: 'invalid_request_error' });
    const denied = failure('wrongKey').error;
    expect([denied.class, denied.status]).toEqual(['AuthenticationError', 401]);
    expect(JSON.stringify(denied.body)).not.toContain('sk-wrong');
  });

  it('raises RateLimitError exposing Retry-After, and retries after it when allowed to', () => {
    const limitedError = failure('rateLimited').error;
    expect([limitedError.class, limitedError.status]).toEqual(['RateLimitError', 429]);
    expect(limitedError.headers['retry-after']).toBe('1');
    expect(limitedError.body).toMatchObject({ code: 'rate_limit_exceeded' });
    expect(requestsOf(limited, 'rateLimited')).toHaveLength(1);
    // With one retry allowed the SDK tries again (after the Retry-After it was given) and then gives up.
    expect(failure('retriedAfter').error.class).toBe('RateLimitError');
    expect(requestsOf(limited, 'retriedAfter')).toHaveLength(2);
  });

  it('decodes gzip-compressed answers, JSON and streamed', () => {
    expect(resultOf<ChatCompletion>(outcomes.gzipChat as SdkOutcome).choices[0]?.message.content).toBe('[zipped] Where is my parcel?');
    const streamed = resultOf<StreamResult>(outcomes.gzipStream as SdkOutcome);
    expect(streamed.text).toBe('[zipped] Where is my parcel?');
    expect(streamed.usage).toEqual({ prompt_tokens: 6, completion_tokens: 5, total_tokens: 11 });
    expect(zipped.received.filter((r) => String(r.headers['x-test-case']).startsWith(sdk)).every((r) => r.outcome === 'answered')).toBe(true);
  });

  it('times out on an upstream that never answers, and fails on a stream cut short', () => {
    const timeout = failure('timeout').error;
    expect(timeout.class).toBe(sdk === 'python' ? 'APITimeoutError' : 'APIConnectionTimeoutError');
    expect(requestsOf(hanging, 'timeout')[0]?.outcome).toBe('client-closed');
    // Python's SDK wraps the broken read; Node's lets fetch's own error through.
    const cut = failure('cutStream').error;
    expect([cut.class, cut.status]).toEqual([sdk === 'python' ? 'APIConnectionError' : 'TypeError', null]);
    const [seen] = requestsOf(broken, 'cutStream');
    expect([seen?.outcome, seen?.eventsSent]).toEqual(['aborted-by-upstream', 3]);
  });
});

describe('the stand-in itself', () => {
  it('takes one-off behaviours in order, then its standing one again', async () => {
    const upstream = await startLlmUpstream({ name: 'queue' });
    try {
      upstream.behaveNext({ status: 503 }, { usage: { promptTokens: 1000, completionTokens: 7 } });
      const command: OpenaiCommand = { baseUrl: upstream.baseUrl, operation: 'chat', args: { model: 'm', messages: question } };
      const first = await runNodeOpenai(command);
      const second = resultOf<ChatCompletion>(await runNodeOpenai(command));
      const third = resultOf<ChatCompletion>(await runNodeOpenai(command));
      expect(first.ok ? 'answered' : [first.error.class, first.error.status]).toEqual(['InternalServerError', 503]);
      expect(second.usage).toEqual({ prompt_tokens: 1000, completion_tokens: 7, total_tokens: 1007 });
      expect(third.usage).toEqual({ prompt_tokens: 6, completion_tokens: 5, total_tokens: 11 });
      expect(upstream.received.map((r) => r.status)).toEqual([503, 200, 200]);
    } finally {
      await upstream.close();
    }
  });

  it('speaks Anthropic messages: JSON, and SSE with usage in message_start and message_delta', async () => {
    const headers = { 'content-type': 'application/json', 'x-api-key': upstreamKey, 'anthropic-version': '2023-06-01' };
    const body = { model: 'claude-x', max_tokens: 3, system: 'Be short.', messages: [{ role: 'user', content: [{ type: 'text', text: 'one two three four' }] }] };
    const json = (await (await fetch(`${primary.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(body) })).json()) as Record<string, unknown>;
    expect(json).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-x', content: [{ type: 'text', text: '[alpha] one two' }], stop_reason: 'max_tokens', usage: { input_tokens: 6, output_tokens: 3 } });

    const res = await fetch(`${primary.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ ...body, stream: true }) });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const events = (await res.text())
      .trim()
      .split('\n\n')
      .map((block) => {
        const [eventLine, dataLine] = block.split('\n');
        return { event: eventLine?.replace('event: ', ''), data: JSON.parse(dataLine?.replace('data: ', '') ?? '') as Record<string, unknown> };
      });
    expect(events.map((e) => e.event)).toEqual(['message_start', 'content_block_start', 'ping', 'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(events.every((e) => e.data.type === e.event)).toBe(true);
    expect(events[0]?.data).toMatchObject({ message: { usage: { input_tokens: 6, output_tokens: 1 } } });
    expect(events[7]?.data).toMatchObject({ delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 3 } });

    const { 'anthropic-version': _dropped, ...withoutVersion } = headers;
    const refused = await fetch(`${primary.url}/v1/messages`, { method: 'POST', headers: withoutVersion, body: JSON.stringify(body) });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const wrongKey = await fetch(`${primary.url}/v1/messages`, { method: 'POST', headers: { ...headers, 'x-api-key': 'nope' }, body: JSON.stringify(body) });
    expect([wrongKey.status, ((await wrongKey.json()) as { error: { type: string } }).error.type]).toEqual([401, 'authentication_error']);
  });
});
