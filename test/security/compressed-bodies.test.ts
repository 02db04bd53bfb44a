import { createHash } from 'node:crypto';
import { brotliCompressSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { jsonOf, rawRequest, sample, startStack, type GatewayStack, type RawAnswer } from './stack.js';

/**
 * Issue 8, item 3: compression used to blind every body Flowgate reads. A gzipped answer went through the
 * masker as opaque bytes (the e-mail and card reached the client, or JSON answers became 502), a gzipped usage
 * block was charged as a few tokens of binary, and a compressed request body skipped request masking.
 * Through real Envoy, for every coding (gzip, deflate, br) in both directions, whether the client asked for
 * compression or the upstream compressed on its own: what Flowgate reads is decoded, what it rewrites is
 * framed again, codings it cannot read are refused, and bombs are cut at the body limit.
 */

const KEY = 'metered-key-0123456789';
const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

let llm: LlmUpstream;
let metered: LlmUpstream;
let echo: EchoUpstream;
let stack: GatewayStack;

const question = `please write to ${EMAIL} and charge card ${CARD} today`;
const chat = (extra: Record<string, unknown> = {}): string => JSON.stringify({ model: 'm', messages: [{ role: 'user', content: question }], ...extra });
const compress: Record<string, (b: Buffer) => Buffer> = { gzip: gzipSync, deflate: deflateSync, br: brotliCompressSync };

function expectFramed(answer: RawAnswer): void {
  // A body Envoy forwards must be framed by its own length or by chunked encoding, never by a stale length.
  if (answer.headers['content-length'] !== undefined) expect(Number(answer.headers['content-length'])).toBe(answer.body.length);
}

function expectMasked(text: string): void {
  expect(text).not.toContain(EMAIL);
  expect(text).not.toContain('4111');
}

beforeAll(async () => {
  registerSecrets(KEY, EMAIL, CARD, '4111111111111111');
  llm = await startLlmUpstream({ name: 'masked' });
  metered = await startLlmUpstream({ name: 'metered' });
  echo = await startEchoUpstream('echo');
  stack = await startStack({
    name: 'compressed',
    models: ['masked-out', 'masked-in', 'metered'],
    readyPath: '/models/masked-out/v1/chat/completions',
    readyBody: chat(),
    files: {
      'consumers.yaml': `kind: Consumer\nname: payer\napiKeys: [{ id: p-1, sha256: ${sha(KEY)} }]\n`,
      'models.yaml': `kind: Model
name: masked-out
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
masking:
  response: { patterns: [email, card], mode: replace }
  maxBodyBytes: 65536
---
kind: Model
name: masked-in
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
masking:
  request: { patterns: [email, card], mode: replace }
  maxBodyBytes: 4096
---
kind: Model
name: metered
upstream: { addressTemplate: "127.0.0.1:${metered.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [payer] }
tokenQuotas: [{ tokens: 100000000, per: hour }]
`,
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  for (const u of [llm, metered, echo]) await u?.close();
});

const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> =>
  rawRequest(`${stack.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

describe('response masking reads decoded answers', () => {
  test('a client asking for gzip: the upstream is not asked, the masked answer comes back gzipped by Envoy', async () => {
    llm.behave({ gzip: 'if-asked' });
    const before = llm.received.length;
    const answer = await post('/models/masked-out/v1/chat/completions', chat(), { 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(200);
    expect(llm.received[before]?.headers['accept-encoding']).toBeUndefined();
    expect(answer.headers['content-encoding']).toBe('gzip');
    const text = gunzipSync(answer.body).toString('utf8');
    expectMasked(text);
    expect(JSON.parse(text)).toMatchObject({ object: 'chat.completion' });
    expectFramed(answer);
  });

  test.each(['gzip', 'deflate', 'br'])('an upstream that compresses with %s unasked: the client gets masked, valid, reframed JSON', async (coding) => {
    llm.behave({ gzip: 'always', encoding: coding });
    const answer = await post('/models/masked-out/v1/chat/completions', chat());
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBeUndefined();
    const text = answer.body.toString('utf8');
    expectMasked(text);
    const doc = JSON.parse(text) as { choices: { message: { content: string } }[] };
    expect(doc.choices[0]?.message.content).toContain('today');
    expectFramed(answer);
  });

  test('a coding Flowgate cannot decode is refused with 502 and a JSON error, never passed unread', async () => {
    llm.behave({ gzip: 'always', encoding: 'zstd' });
    const answer = await post('/models/masked-out/v1/chat/completions', chat());
    expect(answer.status).toBe(502);
    expect(jsonOf(answer)).toMatchObject({ error: 'unsupported_content_encoding' });
    expectMasked(answer.body.toString('utf8'));
  });

  test('a gzip bomb from the upstream is cut at the body limit (502), not inflated whole', async () => {
    llm.behave({ gzip: 'always' });
    // The answer echoes the question: 300 kB of one letter gzips to well under 1 kB.
    const answer = await post('/models/masked-out/v1/chat/completions', JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'a'.repeat(300_000) }] }));
    expect(answer.status).toBe(502);
    expect(jsonOf(answer)).toMatchObject({ error: 'body_too_large' });
  });
});

describe('request masking reads decoded requests', () => {
  test.each(['gzip', 'deflate', 'br'])('a %s request body is decoded, masked, and sent upstream without its content-encoding', async (coding) => {
    const before = echo.received.length;
    const answer = await post('/models/masked-in', (compress[coding] as (b: Buffer) => Buffer)(Buffer.from(chat())), { 'content-encoding': coding });
    expect(answer.status).toBe(200);
    const seen = echo.received[before];
    expect(seen).toBeDefined();
    expect(seen?.headers['content-encoding']).toBeUndefined();
    expectMasked(seen?.body ?? '');
    expect(JSON.parse(seen?.body ?? '')).toMatchObject({ model: 'm' });
    expect(Number(seen?.headers['content-length'] ?? Buffer.byteLength(seen?.body ?? ''))).toBe(Buffer.byteLength(seen?.body ?? ''));
  });

  test('a request coding Flowgate cannot decode is refused with 415 and a JSON error', async () => {
    const before = echo.received.length;
    const answer = await post('/models/masked-in', Buffer.from(chat()), { 'content-encoding': 'compress' });
    expect(answer.status).toBe(415);
    expect(jsonOf(answer)).toMatchObject({ error: 'unsupported_content_encoding' });
    expect(echo.received.length).toBe(before);
  });

  test('a gzip bomb in the request is refused at the body limit (413)', async () => {
    const before = echo.received.length;
    const bomb = gzipSync(Buffer.from(`{"pad":"${' '.repeat(2_000_000)}"}`));
    expect(bomb.length).toBeLessThan(4096);
    const answer = await post('/models/masked-in', bomb, { 'content-encoding': 'gzip' });
    expect(answer.status).toBe(413);
    expect(jsonOf(answer)).toMatchObject({ error: 'body_too_large' });
    expect(echo.received.length).toBe(before);
  });
});

describe('token accounting reads decoded answers', () => {
  const charged = (): Promise<number> => sample(stack.flowgate, 'flowgate_filter_tokens_charged_total', { consumer: 'payer', kind: 'total' });

  test.each(['gzip', 'br'])('a %s JSON answer is charged the usage it reports', async (coding) => {
    metered.behave({ gzip: 'always', encoding: coding, usage: { promptTokens: 1200, completionTokens: 3400 } });
    const before = await charged();
    const answer = await post('/models/metered/v1/chat/completions', chat(), { 'x-api-key': KEY });
    expect(answer.status).toBe(200);
    await waitFor('the answer to be charged', async () => ((await charged()) > before ? true : undefined));
    expect((await charged()) - before).toBe(4600);
  });

  test('a gzip stream is charged the usage of its last event, and a client asking for gzip gets the stream gzipped', async () => {
    metered.behave({ gzip: 'if-asked', usage: { promptTokens: 700, completionTokens: 800 } });
    const before = await charged();
    const first = metered.received.length;
    const answer = await post('/models/metered/v1/chat/completions', chat({ stream: true, stream_options: { include_usage: true } }), { 'x-api-key': KEY, 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(200);
    expect(metered.received[first]?.headers['accept-encoding']).toBeUndefined();
    expect(answer.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(answer.body).toString('utf8')).toContain('"total_tokens":1500');
    await waitFor('the stream to be charged', async () => ((await charged()) > before ? true : undefined));
    expect((await charged()) - before).toBe(1500);

    // And an upstream that gzips its stream unasked is read just as well.
    metered.behave({ gzip: 'always', usage: { promptTokens: 70, completionTokens: 80 } });
    const again = await charged();
    const unasked = await post('/models/metered/v1/chat/completions', chat({ stream: true, stream_options: { include_usage: true } }), { 'x-api-key': KEY });
    expect(unasked.status).toBe(200);
    await waitFor('the unasked gzip stream to be charged', async () => ((await charged()) > again ? true : undefined));
    expect((await charged()) - again).toBe(150);
  });
});
