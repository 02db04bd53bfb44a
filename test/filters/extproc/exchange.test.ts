import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { STREAM_ENTRY_BYTES } from '../../../filters/extproc/buffer-budget.js';
import { startFilterServer, type FilterServer } from '../../../filters/service/server.js';
import { MODEL_METADATA_KEY } from '../../../src/contract/filter-wire.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { decodeMessage, encodeMessage } from '../../../src/proto/codec.js';
import { waitFor } from '../../harness/process.js';
import { counterValue } from '../ratelimit/fixtures.js';

/**
 * The ext_proc stream handler over real gRPC, message by message as Envoy sends them: decoded bodies and
 * reframed rewrites, how an exchange's end is charged (complete, cut short, Envoy's own reply), and the
 * buffer budget. The Envoy end-to-end versions of these are in test/security/.
 */

const KEY = 'exchange-key-0123456789';
const CAP = 96 * 1024;

let server: FilterServer;
let client: grpc.Client;

type Answer = Record<string, Record<string, unknown>>;

/** One exchange: write() sends a message and resolves with its answer; end() closes the stream as Envoy would. */
function exchange(model: string): { send(msg: object): Promise<Answer>; post(msg: object): void; answers(): number; end(): void } {
  const md = new grpc.Metadata();
  md.set(MODEL_METADATA_KEY, model);
  const call = client.makeBidiStreamRequest('/envoy.service.ext_proc.v3.ExternalProcessor/Process', (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, md);
  const waiting: ((a: Answer) => void)[] = [];
  let answers = 0;
  call.on('data', (b: Buffer) => {
    answers += 1;
    waiting.shift()?.(decodeMessage<Answer>('envoy.service.ext_proc.v3.ProcessingResponse', b));
  });
  call.on('error', () => undefined);
  return {
    send: (msg) =>
      new Promise<Answer>((resolve) => {
        waiting.push(resolve);
        call.write(encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', msg));
      }),
    post: (msg) => call.write(encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', msg)),
    answers: () => answers,
    end: () => call.end(),
  };
}

const headers = (h: Record<string, string>, eos = false): object => ({ headers: { headers: Object.entries(h).map(([key, value]) => ({ key, value })) }, end_of_stream: eos });
// protobufjs reads google.protobuf.Value in camelCase, whatever keepCase says.
const codeDetails = (value: string): object => ({ 'envoy.filters.http.ext_proc': { fields: { 'response.code_details': { stringValue: value } } } });
// Metric labels are bounded to policy names: every exchange here is the policy's one consumer.
const charged = (consumer: string): Promise<number> => counterValue('flowgate_filter_tokens_charged_total', { consumer, model: 'chat', kind: 'total' });

beforeAll(async () => {
  const load = policyFromFiles('policy', [
    {
      file: 'p.yaml',
      text: `kind: Consumer
name: payer
apiKeys: [{ id: k, sha256: ${createHash('sha256').update(KEY).digest('hex')} }]
---
kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:1" }
traffic: { stable: { version: "1" } }
tokenQuotas: [{ tokens: 1000000, per: hour }]
---
kind: Model
name: masked
upstream: { addressTemplate: "127.0.0.1:1" }
traffic: { stable: { version: "1" } }
masking: { response: { patterns: [email] }, maxBodyBytes: 65536 }
`,
    },
  ]);
  if (!load.ok) throw new Error(formatIssues(load.issues, 'policy'));
  server = await startFilterServer({ host: '127.0.0.1', port: 0, maxBufferedBytes: CAP });
  server.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
  client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.stop();
});

const question = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'one two three four five six seven eight' }] });

describe('charging the end of an exchange', () => {
  test('a stream cut before its usage event is charged the request and the text sent', async () => {
    const before = await charged('payer');
    const ex = exchange('chat');
    await ex.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'payer' }) });
    await ex.send({ request_body: { body: Buffer.from(question), end_of_stream: true } });
    await ex.send({ response_headers: headers({ ':status': '200', 'content-type': 'text/event-stream' }), attributes: codeDetails('via_upstream') });
    for (const word of ['alpha', 'beta', 'gamma', 'delta']) {
      await ex.send({ response_body: { body: Buffer.from(`data: {"choices":[{"delta":{"content":"${word} "}}]}\n\n`), end_of_stream: false } });
    }
    ex.end();
    const after = await waitFor('the cut stream to be charged', async () => ((await charged('payer')) > before ? charged('payer') : undefined));
    expect(after - before).toBeGreaterThanOrEqual(4 + 8);
  });

  test("an answer Envoy made itself (a timeout) is charged the request only, not its text", async () => {
    const before = await charged('payer');
    const ex = exchange('chat');
    await ex.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'payer' }) });
    await ex.send({ request_body: { body: Buffer.from(question), end_of_stream: true } });
    await ex.send({ response_headers: headers({ ':status': '504', 'content-type': 'text/plain' }), attributes: codeDetails('response_timeout') });
    await ex.send({ response_body: { body: Buffer.from('upstream request timeout '.repeat(50)), end_of_stream: true } });
    ex.end();
    const after = await waitFor('the timeout to be charged', async () => ((await charged('payer')) > before ? charged('payer') : undefined));
    // The question alone (an estimate of its JSON): far below the 150 words of Envoy's text.
    expect(after - before).toBeGreaterThan(0);
    expect(after - before).toBeLessThan(60);
  });

  test("Envoy's own refusal, seen by ext_proc without its request, passes untouched and is charged to no one", async () => {
    const beforeAnonymous = await counterValue('flowgate_filter_tokens_charged_total', { consumer: '-anonymous-', model: 'chat', kind: 'total' });
    const ex = exchange('chat');
    const head = await ex.send({ response_headers: headers({ ':status': '401', 'content-type': 'application/json' }), attributes: codeDetails('ext_authz_denied') });
    expect(head).toMatchObject({ response_headers: { response: { header_mutation: null, body_mutation: null } } });
    const body = await ex.send({ response_body: { body: Buffer.from('{"error":"missing_credentials","message":"a long refusal text that would be estimated"}'), end_of_stream: true } });
    expect(body.response_body?.response).not.toHaveProperty('body_mutation.body');
    ex.end();
    // A charged exchange after it: once that one shows, this one would have too.
    const before = await charged('payer');
    const next = exchange('chat');
    // (the refusal above is already over: its answer has been read)
    await next.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'payer' }) });
    await next.send({ response_headers: headers({ ':status': '200', 'content-type': 'application/json' }), attributes: codeDetails('via_upstream') });
    await next.send({ response_body: { body: Buffer.from('{"usage":{"prompt_tokens":5,"completion_tokens":6}}'), end_of_stream: true } });
    next.end();
    await waitFor('the next exchange to be charged', async () => ((await charged('payer')) === before + 11 ? true : undefined));
    expect(await counterValue('flowgate_filter_tokens_charged_total', { consumer: '-anonymous-', model: 'chat', kind: 'total' })).toBe(beforeAnonymous);
  });
});

describe('decoded bodies', () => {
  test('a gzipped answer is masked decoded, and goes back without content-encoding or content-length', async () => {
    const ex = exchange('masked');
    await ex.send({ request_headers: headers({ ':method': 'POST' }) });
    await ex.send({ response_headers: headers({ ':status': '200', 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '99' }) });
    const answer = await ex.send({ response_body: { body: gzipSync(Buffer.from('{"text":"write to jane@example.com"}')), end_of_stream: true } });
    ex.end();
    const response = answer.response_body?.response as { body_mutation?: { body?: Buffer }; header_mutation?: { remove_headers?: string[] } };
    const masked = JSON.parse(Buffer.from(response.body_mutation?.body ?? []).toString('utf8')) as { text: string };
    expect(masked.text).toMatch(/^write to /);
    expect(masked.text).not.toContain('jane@example.com');
    expect(response.header_mutation?.remove_headers).toEqual(expect.arrayContaining(['content-encoding', 'content-length']));
  });

  test('a gzipped answer with nothing to mask goes back as it came, still encoded', async () => {
    const ex = exchange('masked');
    await ex.send({ request_headers: headers({ ':method': 'POST' }) });
    await ex.send({ response_headers: headers({ ':status': '200', 'content-type': 'application/json', 'content-encoding': 'gzip' }) });
    const answer = await ex.send({ response_body: { body: gzipSync(Buffer.from('{"text":"nothing personal"}')), end_of_stream: true } });
    ex.end();
    expect(answer.response_body?.response).not.toHaveProperty('body_mutation.body');
    expect((answer.response_body?.response as { header_mutation?: { remove_headers?: string[] } }).header_mutation?.remove_headers ?? []).not.toContain('content-encoding');
  });

  test('an answer in a coding it cannot read is refused at its headers, 502', async () => {
    const ex = exchange('masked');
    await ex.send({ request_headers: headers({ ':method': 'POST' }) });
    const answer = await ex.send({ response_headers: headers({ ':status': '200', 'content-type': 'application/json', 'content-encoding': 'zstd' }) });
    ex.end();
    expect(answer.immediate_response).toMatchObject({ status: { code: 'BadGateway' } });
    expect(JSON.parse(Buffer.from(answer.immediate_response?.body as Buffer).toString('utf8'))).toMatchObject({ error: 'unsupported_content_encoding' });
  });
});

describe('the buffer budget', () => {
  test('an exchange whose body would pass the cap is refused with 503, and everything is given back', async () => {
    const ex = exchange('chat');
    await ex.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'big' }) });
    expect(server.service.buffers.usedBytes).toBe(STREAM_ENTRY_BYTES);
    const answer = await ex.send({ request_body: { body: Buffer.alloc(CAP, 0x61), end_of_stream: true } });
    expect(answer.immediate_response).toMatchObject({ status: { code: 'ServiceUnavailable' } });
    expect(JSON.parse(Buffer.from(answer.immediate_response?.body as Buffer).toString('utf8'))).toMatchObject({ error: 'filter_overloaded' });
    ex.end();
    await waitFor('the exchange to give its bytes back', () => (server.service.buffers.usedBytes === 0 ? true : undefined));
  });

  test('an answer cut at the cap is refused once: the chunks Envoy had already sent get no answer and no count', async () => {
    const before = await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'response_body' });
    const ex = exchange('chat');
    await ex.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'payer' }) });
    await ex.send({ response_headers: headers({ ':status': '200', 'content-type': 'application/json' }), attributes: codeDetails('via_upstream') });
    // Envoy streams the answer's chunks without waiting: all of them are on the wire before the refusal is read.
    const chunk = (): object => ({ response_body: { body: Buffer.alloc(CAP / 2, 0x63), end_of_stream: false } });
    const first = ex.send(chunk());
    for (let i = 0; i < 4; i += 1) ex.post(chunk());
    expect((await first).response_body).toBeDefined();
    await waitFor('the refusal', async () => ((await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'response_body' })) > before ? true : undefined));
    // One more round trip on another exchange: by then every chunk of the cut one has been handled.
    const probe = exchange('chat');
    await probe.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'payer' }) });
    probe.end();
    expect(await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'response_body' })).toBe(before + 1);
    expect(ex.answers()).toBe(2 + 2);
    ex.end();
    await waitFor('the cut exchange to give its bytes back', () => (server.service.buffers.usedBytes === 0 ? true : undefined));
  });

  test('while held bodies fill it, a new exchange is refused at its first message', async () => {
    const holders = [exchange('chat'), exchange('chat')];
    for (const h of holders) {
      await h.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'holder' }) });
      await h.send({ request_body: { body: Buffer.alloc(CAP / 2 - STREAM_ENTRY_BYTES - 1024, 0x62), end_of_stream: true } });
    }
    expect(CAP - server.service.buffers.usedBytes).toBeLessThan(STREAM_ENTRY_BYTES);
    const before = await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'open' });
    const late = exchange('chat');
    const answer = await late.send({ request_headers: headers({ ':method': 'POST', 'x-flowgate-consumer': 'late' }) });
    late.end();
    expect(answer.immediate_response).toMatchObject({ status: { code: 'ServiceUnavailable' } });
    expect(await counterValue('flowgate_filter_buffer_refusals_total', { phase: 'open' })).toBe(before + 1);
    for (const h of holders) h.end();
    await waitFor('the holders to give their bytes back', () => (server.service.buffers.usedBytes === 0 ? true : undefined));
  });
});
