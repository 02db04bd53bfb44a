import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { openaiClient } from '../harness/openai-clients.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { rawRequest, sample, startStack, type GatewayStack } from './stack.js';

/**
 * Issue 8, item 6: a streamed answer reports its usage in its last event, so a client that disconnects just
 * before it used to get the answer for free. Through real Envoy: the official OpenAI SDK aborts a stream
 * part-way and the tokens it was sent are charged anyway (estimated); an upstream that breaks off is charged
 * likewise; and the 401, 403 and 429 answers Envoy gives locally are charged to no one, anonymous included.
 */

const KEYS = { streamer: 'streamer-key-0123456789', tight: 'tight-key-0123456789', outsider: 'outsider-key-0123456789' } as const;
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let llm: LlmUpstream;
let stack: GatewayStack;

const QUESTION = 'tell me a long story about the sea and the ships that sail on it every day';
const charged = (consumer?: string): Promise<number> => sample(stack.flowgate, 'flowgate_filter_tokens_charged_total', { kind: 'total', ...(consumer !== undefined && { consumer }) });
/** ext_proc messages the filter service answered. */
const processStreams = (): Promise<number> => sample(stack.flowgate, 'flowgate_filter_grpc_seconds_count', { method: 'Process' });

beforeAll(async () => {
  registerSecrets(...Object.values(KEYS));
  llm = await startLlmUpstream({ name: 'story' });
  stack = await startStack({
    name: 'stream-abort',
    models: ['chat', 'chat-limited'],
    readyPath: '/models/chat/v1/chat/completions',
    readyHeaders: { 'x-api-key': KEYS.streamer },
    readyBody: JSON.stringify({ model: 'story', messages: [{ role: 'user', content: 'ready?' }] }),
    files: {
      'consumers.yaml': `kind: Consumer
name: streamer
apiKeys: [{ id: s-1, sha256: ${sha(KEYS.streamer)} }]
tokenQuotas: [{ tokens: 1000000, per: hour, model: chat }]
---
kind: Consumer
name: tight
apiKeys: [{ id: t-1, sha256: ${sha(KEYS.tight)} }]
tokenQuotas: [{ tokens: 5, per: hour, model: chat }]
---
kind: Consumer
name: outsider
apiKeys: [{ id: o-1, sha256: ${sha(KEYS.outsider)} }]
`,
      'models.yaml': `kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [streamer, tight] }
tokenQuotas: [{ tokens: 1000000, per: hour }]
---
kind: Model
name: chat-limited
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [streamer] }
rateLimits: [{ requests: 1, per: hour }]
tokenQuotas: [{ tokens: 1000000, per: hour }]
`,
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await llm?.close();
});

describe('a stream the client aborts is charged', () => {
  test('the official SDK aborts after two chunks: the words it was sent and its question are charged', async () => {
    llm.behave({ chunkDelayMs: 150 });
    const before = await charged('streamer');
    const client = openaiClient(`${stack.base}/models/chat/v1`, KEYS.streamer);
    const stream = await client.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: QUESTION }], stream: true, stream_options: { include_usage: true } });
    let chunks = 0;
    // Leaving the loop makes the SDK abort its request: the connection closes before the usage event.
    for await (const chunk of stream) {
      if ((chunk.choices[0]?.delta.content ?? '') !== '') chunks++;
      if (chunks === 2) break;
    }
    expect(chunks).toBe(2);
    const record = await waitFor('the upstream to see the client go', () => (llm.received.at(-1)?.outcome === 'client-closed' ? llm.received.at(-1) : undefined));
    // The whole answer would have been more events than the client let through: it really stopped early.
    expect(record.eventsSent).toBeLessThan(QUESTION.split(' ').length + 2);
    const after = await waitFor('the aborted stream to be charged', async () => {
      const now = await charged('streamer');
      return now > before ? now : undefined;
    }, { timeoutMs: 10_000, describe: () => stack.flowgate.process.tail(20) });
    // Estimated: at least the question (16 words) and the two chunks of text the client received.
    expect(after - before).toBeGreaterThanOrEqual(QUESTION.split(' ').length);
    llm.behave({});
  });

  test('an Anthropic stream aborted after its first report is charged the text it sent, not only that report', async () => {
    // message_start reports the input and 1 output token; the real output count only comes at the end.
    llm.behave({ chunkDelayMs: 100 });
    const before = await charged('streamer');
    const seen = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${stack.base}/models/chat/v1/messages`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEYS.streamer, 'anthropic-version': '2023-06-01' }, agent: false },
        (res) => {
          let deltas = 0;
          res.on('data', (chunk: Buffer) => {
            deltas += chunk.toString('utf8').split('event: content_block_delta').length - 1;
            if (deltas >= 10) {
              res.destroy();
              resolve(deltas);
            }
          });
          res.on('end', () => reject(new Error(`the stream ended after ${deltas} deltas, before the client could abort it`)));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ model: 'story', max_tokens: 100, stream: true, messages: [{ role: 'user', content: QUESTION }] }));
    });
    expect(seen).toBeGreaterThanOrEqual(10);
    await waitFor('the upstream to see the client go', () => (llm.received.at(-1)?.outcome === 'client-closed' ? true : undefined));
    const after = await waitFor('the aborted stream to be charged', async () => {
      const now = await charged('streamer');
      return now > before ? now : undefined;
    }, { timeoutMs: 10_000, describe: () => stack.flowgate.process.tail(20) });
    // The reported input (16 words) plus at least the ten words the client had received.
    expect(after - before).toBeGreaterThanOrEqual(QUESTION.split(' ').length + 10);
    llm.behave({});
  });

  test('an upstream that breaks off mid-stream is charged what it sent', async () => {
    llm.behave({ abortAfterEvents: 3 });
    const before = await charged('streamer');
    const answer = await rawRequest(`${stack.base}/models/chat/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEYS.streamer },
      body: JSON.stringify({ model: 'story', messages: [{ role: 'user', content: QUESTION }], stream: true, stream_options: { include_usage: true } }),
    }).catch((err: unknown) => err);
    // Either a truncated 200 or a reset: what matters is the charge.
    expect(answer).toBeDefined();
    const after = await waitFor('the broken stream to be charged', async () => {
      const now = await charged('streamer');
      return now > before ? now : undefined;
    }, { timeoutMs: 10_000, describe: () => stack.flowgate.process.tail(20) });
    expect(after - before).toBeGreaterThanOrEqual(QUESTION.split(' ').length);
    llm.behave({});
  });

  test('a complete stream is charged exactly what the upstream reported, once', async () => {
    llm.behave({ usage: { promptTokens: 111, completionTokens: 222 } });
    const before = await charged('streamer');
    const client = openaiClient(`${stack.base}/models/chat/v1`, KEYS.streamer);
    const stream = await client.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: 'hello' }], stream: true, stream_options: { include_usage: true } });
    let usage: unknown;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    expect(usage).toMatchObject({ total_tokens: 333 });
    await waitFor('the stream to be charged', async () => ((await charged('streamer')) > before ? true : undefined));
    expect((await charged('streamer')) - before).toBe(333);
    llm.behave({});
  });
});

describe('local replies are charged to no one', () => {
  test('401, 403 and 429 (quota and rate limit) answers charge nothing, anonymous included', async () => {
    // Spend the tight consumer's 5 tokens so its next call is refused by the quota check.
    llm.behave({ usage: { promptTokens: 10, completionTokens: 10 } });
    const post = (path: string, headers: Record<string, string>, stream = false): ReturnType<typeof rawRequest> =>
      rawRequest(`${stack.base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'story', messages: [{ role: 'user', content: QUESTION }], ...(stream && { stream: true }) }),
      });
    const first = await post('/models/chat/v1/chat/completions', { 'x-api-key': KEYS.tight });
    expect(first.status).toBe(200);
    await waitFor('the tight consumer to be charged', async () => ((await charged('tight')) >= 20 ? true : undefined));
    expect((await post('/models/chat-limited/v1/chat/completions', { 'x-api-key': KEYS.streamer })).status).toBe(200);
    await waitFor('the rate-limited model to be charged', async () => ((await charged('streamer')) > 0 ? true : undefined));

    const totalBefore = await charged();
    const streamsBefore = await processStreams();
    const refusals: [string, Record<string, string>, number][] = [
      ['/models/chat/v1/chat/completions', {}, 401],
      ['/models/chat/v1/chat/completions', { 'x-api-key': 'not-a-key-at-all' }, 401],
      ['/models/chat/v1/chat/completions', { 'x-api-key': KEYS.outsider }, 403],
      ['/models/chat/v1/chat/completions', { 'x-api-key': KEYS.tight }, 429],
      ['/models/chat-limited/v1/chat/completions', { 'x-api-key': KEYS.streamer }, 429],
    ];
    for (const [path, headers, status] of refusals) {
      for (const stream of [false, true]) {
        const answer = await post(path, headers, stream);
        expect(answer.status, `${path} ${JSON.stringify(headers)}`).toBe(status);
        expect(JSON.parse(answer.body.toString('utf8'))).toHaveProperty('error');
      }
    }
    // A charged request after them: once its charge shows, any charge of the refusals before it would too.
    llm.behave({ usage: { promptTokens: 1, completionTokens: 2 } });
    const streamsBeforeBarrier = await processStreams();
    expect((await post('/models/chat/v1/chat/completions', { 'x-api-key': KEYS.streamer })).status).toBe(200);
    await waitFor('the barrier request to be charged', async () => ((await charged()) > totalBefore ? true : undefined));
    expect((await charged()) - totalBefore).toBe(3);
    // Envoy does hand its own replies to ext_proc (their answers pass through it): they were seen, and not charged.
    expect(streamsBeforeBarrier).toBeGreaterThan(streamsBefore);
    llm.behave({});
  });
});
