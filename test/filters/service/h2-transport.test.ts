import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { percentEncode, startH2Transport, timeoutMs, type H2Transport, type UnaryMethod } from '../../../filters/service/h2-transport.js';
import { startRawTransport } from '../../../filters/service/raw-transport.js';
import { defaultTransport, startFilterServer, type FilterServer, type FilterTransport } from '../../../filters/service/server.js';
import { decodeMessage, encodeMessage } from '../../../src/proto/codec.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { MODEL_METADATA_KEY } from '../../../src/contract/filter-wire.js';
import { transportOption } from '../../../src/cli/commands/filters.js';
import { UsageError } from '../../../src/cli/command.js';
import { makeCertificates } from '../../harness/certs.js';

/**
 * The lean unary transports (`--transport h2` on node:http2, `--transport raw` on the socket) against clients
 * nobody here wrote (grpc-js's client, node:http2's client) for the protocol's edges: content type, method,
 * frame prefix, size limit, deadline, compression, unknown methods, ext_proc on the same port, TLS and
 * mutual TLS. Every test runs on both.
 */

const LEAN: readonly FilterTransport[] = ['h2', 'raw'];

const KEY = 'h2-key-0123456789';
const CHECK = '/envoy.service.auth.v3.Authorization/Check';
const RATE_LIMIT = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
const CHECK_REQ = 'envoy.service.auth.v3.CheckRequest';
const CHECK_RES = 'envoy.service.auth.v3.CheckResponse';

function filterPolicy(): Parameters<FilterServer['setPolicy']>[0] {
  const files = {
    'p.yaml': `kind: Consumer
name: acme
apiKeys: [{ id: k, sha256: ${createHash('sha256').update(KEY).digest('hex')} }]
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:9" }
traffic: { stable: { version: "1" } }
access: { consumers: [acme] }
rateLimits: [{ requests: 1000, per: minute }]
`,
  };
  const load = policyFromFiles('t', Object.entries(files).map(([file, text]) => ({ file, text })));
  if (!load.ok) throw new Error(formatIssues(load.issues, 't'));
  return runPipeline({ policy: load.policy, registry: undefined }).filterPolicy;
}

const checkRequest = (key: string | undefined): object => ({
  attributes: { request: { http: { headers: { ...(key && { 'x-api-key': key }), 'x-request-id': 'r1' } } }, context_extensions: { model: 'guarded' } },
});

/** A 5-byte length-prefixed gRPC message. */
function frame(bytes: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(bytes.length, 1);
  Buffer.from(bytes).copy(out, 5);
  return out;
}

interface RawAnswer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly data: Buffer;
  readonly trailers: http2.IncomingHttpHeaders | undefined;
}

/** One raw HTTP/2 request on its own session: the answer's headers, body bytes and trailers. */
function raw(port: number, path: string, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let answer: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (answer = h));
    req.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve({ headers: answer, data: Buffer.concat(chunks), trailers });
    });
    req.end(body);
  });
}

/** The gRPC status of a trailers-only answer (one HEADERS frame, no message, no trailers). */
function trailersOnlyStatus(answer: RawAnswer): { code: number; message: string } {
  expect(answer.headers[':status']).toBe(200);
  expect(String(answer.headers['content-type'])).toMatch(/^application\/grpc/);
  expect(answer.data.length).toBe(0);
  expect(answer.trailers).toBeUndefined();
  return { code: Number(answer.headers['grpc-status']), message: decodeURIComponent(String(answer.headers['grpc-message'] ?? '')) };
}

describe('--transport', () => {
  test('takes h2, grpc-js or raw, raw when absent, and refuses anything else', () => {
    expect(transportOption(undefined)).toBe('raw');
    expect(transportOption('h2')).toBe('h2');
    expect(transportOption('grpc-js')).toBe('grpc-js');
    expect(transportOption('raw')).toBe('raw');
    for (const bad of ['grpc', 'H2', '', 'RAW', true]) expect(() => transportOption(bad)).toThrow(UsageError);
  });
});

describe('grpc-timeout and grpc-message', () => {
  test('reads every unit and refuses malformed values', () => {
    expect(timeoutMs(undefined)).toBeUndefined();
    expect(timeoutMs('2S')).toBe(2000);
    expect(timeoutMs('1H')).toBe(3_600_000);
    expect(timeoutMs('3M')).toBe(180_000);
    expect(timeoutMs('250m')).toBe(250);
    expect(timeoutMs('1500u')).toBe(1.5);
    expect(timeoutMs('2000000n')).toBe(2);
    for (const bad of ['', '5', 'S', '-1S', '123456789S', '1.5S', '10x']) expect(timeoutMs(bad)).toBeNaN();
  });

  test('percent-encodes % and bytes outside printable ASCII only', () => {
    expect(percentEncode('plain message: ok')).toBe('plain message: ok');
    expect(percentEncode('100% sure')).toBe('100%25 sure');
    expect(percentEncode('line\nbreak é')).toBe('line%0Abreak %C3%A9');
    expect(decodeURIComponent(percentEncode('ünïcode 50%\t'))).toBe('ünïcode 50%\t');
  });
});

describe.each(LEAN)('the filter service on the lean transport %s', (transport) => {
  let server: FilterServer;
  let client: grpc.Client;
  const unary = (path: string, bytes: Uint8Array, c: grpc.Client = client): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      c.makeUnaryRequest(path, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, bytes, (err, res) => (err ? reject(err) : resolve(res as Buffer))),
    );

  beforeAll(async () => {
    server = await startFilterServer({ host: '127.0.0.1', port: 0, transport });
    server.setPolicy(filterPolicy(), 'v1');
    client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await server.stop();
  });

  test('grpc-js clients get the same answers as the service gives in process', async () => {
    for (const key of [KEY, 'wrong-key-0123456789', undefined]) {
      const expected = encodeMessage(CHECK_RES, await server.service.check(checkRequest(key)));
      const got = await unary(CHECK, encodeMessage(CHECK_REQ, checkRequest(key)));
      expect(got.equals(Buffer.from(expected))).toBe(true);
    }
    const allowed = decodeMessage<{ status?: { code?: number } }>(CHECK_RES, await unary(CHECK, encodeMessage(CHECK_REQ, checkRequest(KEY))));
    expect(allowed.status?.code ?? 0).toBe(0);
    const rl = decodeMessage<{ overall_code?: number | string }>(
      'envoy.service.ratelimit.v3.RateLimitResponse',
      await unary(RATE_LIMIT, encodeMessage('envoy.service.ratelimit.v3.RateLimitRequest', { domain: 'flowgate', descriptors: [{ entries: [{ key: 'model', value: 'guarded' }] }], hits_addend: 1 })),
    );
    expect(['OK', 1]).toContain(rl.overall_code);
  });

  test('a grpc-js client compressing with gzip is answered', async () => {
    const gzipClient = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
    try {
      const got = await unary(CHECK, encodeMessage(CHECK_REQ, checkRequest(KEY)), gzipClient);
      expect(Buffer.from(got).equals(Buffer.from(encodeMessage(CHECK_RES, await server.service.check(checkRequest(KEY) as never))))).toBe(true);
    } finally {
      gzipClient.close();
    }
  });

  test('an answer is HEADERS, one length-prefixed message, then grpc-status 0 in trailers', async () => {
    const answer = await raw(server.port, CHECK, frame(encodeMessage(CHECK_REQ, checkRequest(KEY))));
    expect(answer.headers[':status']).toBe(200);
    expect(answer.headers['content-type']).toBe('application/grpc');
    expect(answer.headers['grpc-status']).toBeUndefined();
    expect(answer.data[0]).toBe(0);
    expect(answer.data.readUInt32BE(1)).toBe(answer.data.length - 5);
    expect(answer.trailers?.['grpc-status']).toBe('0');
  });

  test('a raw gzip-compressed message with grpc-encoding gzip is inflated', async () => {
    const answer = await raw(server.port, CHECK, frame(gzipSync(encodeMessage(CHECK_REQ, checkRequest(KEY))), true), { 'grpc-encoding': 'gzip' });
    expect(answer.trailers?.['grpc-status']).toBe('0');
    expect(answer.data.length).toBeGreaterThan(5);
  });

  test('protocol errors are trailers-only statuses', async () => {
    const message = encodeMessage(CHECK_REQ, checkRequest(KEY));
    const cases: [string, Buffer, http2.OutgoingHttpHeaders, number, RegExp][] = [
      ['truncated message', frame(message).subarray(0, 20), {}, grpc.status.INTERNAL, /truncated message/],
      ['short prefix', Buffer.from([0, 0, 0]), {}, grpc.status.INTERNAL, /truncated message prefix/],
      ['no message', Buffer.alloc(0), {}, grpc.status.INTERNAL, /no request message/],
      ['two messages', Buffer.concat([frame(message), frame(message)]), {}, grpc.status.INTERNAL, /more than one/],
      ['bad flag', Buffer.from([7, 0, 0, 0, 0]), {}, grpc.status.INTERNAL, /invalid message flag/],
      ['compressed flag without encoding', frame(message, true), {}, grpc.status.INTERNAL, /without a grpc-encoding/],
      ['unknown encoding', frame(message, true), { 'grpc-encoding': 'snappy' }, grpc.status.UNIMPLEMENTED, /snappy/],
      ['gzip flag, bytes not gzip', frame(message, true), { 'grpc-encoding': 'gzip' }, grpc.status.INTERNAL, /decompress/],
      ['not protobuf', frame(Buffer.from([0xff, 0xff, 0xff, 0xff])), {}, grpc.status.INTERNAL, /does not decode/],
      ['malformed grpc-timeout', frame(message), { 'grpc-timeout': 'soon' }, grpc.status.INTERNAL, /grpc-timeout/],
    ];
    for (const [name, body, headers, code, text] of cases) {
      const status = trailersOnlyStatus(await raw(server.port, CHECK, body, headers));
      expect({ name, code: status.code }).toEqual({ name, code });
      expect(status.message).toMatch(text);
    }
    const unknownEncoding = await raw(server.port, CHECK, frame(message, true), { 'grpc-encoding': 'snappy' });
    expect(unknownEncoding.headers['grpc-accept-encoding']).toBe('identity,gzip,deflate');
  });

  test('a wrong content type is HTTP 415 and a GET is HTTP 405', async () => {
    const message = frame(encodeMessage(CHECK_REQ, checkRequest(KEY)));
    expect((await raw(server.port, CHECK, message, { 'content-type': 'application/json' })).headers[':status']).toBe(415);
    expect((await raw(server.port, CHECK, message, { 'content-type': 'text/plain' })).headers[':status']).toBe(415);
    const get = await new Promise<number>((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      const req = session.request({ ':method': 'GET', ':path': CHECK, 'content-type': 'application/grpc' });
      req.on('response', (h) => {
        resolve(Number(h[':status']));
        session.close();
      });
      req.on('error', reject);
      req.end();
    });
    expect(get).toBe(405);
  });

  test('an unknown method is UNIMPLEMENTED, for raw and grpc-js clients', async () => {
    const status = trailersOnlyStatus(await raw(server.port, '/envoy.service.auth.v3.Authorization/Nope', frame(Buffer.alloc(0))));
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
    await expect(unary('/no.Such/Method', Buffer.alloc(0))).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });

  /** An ext_proc Process stream for a model, through the same port (and the hand-off to grpc-js). */
  function openProcess(model: string): grpc.ClientDuplexStream<Uint8Array, unknown> {
    const metadata = new grpc.Metadata();
    metadata.set(MODEL_METADATA_KEY, model);
    return client.makeBidiStreamRequest(
      '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => decodeMessage('envoy.service.ext_proc.v3.ProcessingResponse', b),
      metadata,
    );
  }

  test('ext_proc (streaming) is served on the same port (h2: grpc-js; raw: its duplex stand-in)', async () => {
    const call = openProcess('guarded');
    const first = new Promise<unknown>((resolve, reject) => {
      call.on('data', resolve);
      call.on('error', reject);
    });
    call.write(encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', { request_headers: { headers: { headers: [{ key: ':path', value: '/models/guarded' }] } } }));
    const answer = (await first) as { response?: string; request_headers?: { response?: { status?: string } } };
    expect(answer.response).toBe('request_headers');
    expect(answer.request_headers?.response?.status).toBe('CONTINUE');
    call.end();
  });

  test('a 24 MB ext_proc body message goes through whole', async () => {
    const call = openProcess('guarded');
    const answers: { response?: string }[] = [];
    const ended = new Promise<number>((resolve) => {
      call.on('data', (a: { response?: string }) => answers.push(a));
      call.on('error', (err: grpc.ServiceError) => resolve(err.code));
      call.on('end', () => resolve(grpc.status.OK));
    });
    call.write(encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', { request_headers: { headers: { headers: [{ key: ':path', value: '/models/guarded' }] } } }));
    call.write(encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', { request_body: { body: Buffer.alloc(24 * 1024 * 1024, 0x61), end_of_stream: true } }));
    call.end();
    expect(await ended).toBe(grpc.status.OK);
    expect(answers.map((a) => a.response)).toEqual(['request_headers', 'request_body']);
  });
});

describe.each(LEAN)('the lean transport %s itself', (kind) => {
  let transport: H2Transport;
  let release: (() => void) | undefined;
  const echo: UnaryMethod = { decode: (b) => b, encode: (a) => a as Buffer, handle: (req) => Promise.resolve(req as Buffer) };
  const slow: UnaryMethod = {
    decode: (b) => b,
    encode: (a) => a as Buffer,
    handle: (req) => new Promise((resolve) => (release = () => resolve(req as Buffer))),
  };
  const failing: UnaryMethod = {
    decode: (b) => b,
    encode: (a) => a as Buffer,
    handle: () => Promise.reject(Object.assign(new Error('store down'), { code: grpc.status.UNAVAILABLE, details: 'counter store unavailable: 50% of nodes' })),
  };

  beforeAll(async () => {
    const options = {
      host: '127.0.0.1',
      port: 0,
      unary: new Map([
        ['/t.T/Echo', echo],
        ['/t.T/Slow', slow],
        ['/t.T/Fail', failing],
      ]),
      maxMessageBytes: 1024,
      maxConcurrentStreams: 10,
      keepaliveMs: 30_000,
      keepaliveTimeoutMs: 10_000,
    };
    transport = kind === 'h2' ? await startH2Transport({ ...options, fallback: new grpc.Server() }) : await startRawTransport(options);
  });
  afterAll(() => transport.close(100));

  test('a message past the size limit is RESOURCE_EXHAUSTED, the exact limit is served', async () => {
    const ok = await raw(transport.port, '/t.T/Echo', frame(Buffer.alloc(1024, 1)));
    expect(ok.trailers?.['grpc-status']).toBe('0');
    expect(ok.data.subarray(5).equals(Buffer.alloc(1024, 1))).toBe(true);
    expect(trailersOnlyStatus(await raw(transport.port, '/t.T/Echo', frame(Buffer.alloc(1025, 1)))).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Refused from the prefix alone, before the body would have arrived.
    expect(trailersOnlyStatus(await raw(transport.port, '/t.T/Echo', frame(Buffer.alloc(2000, 1)).subarray(0, 10))).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // A gzip bomb: small on the wire, past the limit inflated.
    const bomb = frame(gzipSync(Buffer.alloc(100_000)), true);
    expect(bomb.length).toBeLessThan(1024);
    expect(trailersOnlyStatus(await raw(transport.port, '/t.T/Echo', bomb, { 'grpc-encoding': 'gzip' })).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  test('past grpc-timeout the call is DEADLINE_EXCEEDED and the late answer is dropped', async () => {
    const answer = await raw(transport.port, '/t.T/Slow', frame(Buffer.from('late')), { 'grpc-timeout': '50m' });
    expect(trailersOnlyStatus(answer).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(release).toBeDefined();
    release?.();
    // The transport still serves after the dropped answer.
    expect((await raw(transport.port, '/t.T/Echo', frame(Buffer.from('x')))).trailers?.['grpc-status']).toBe('0');
  });

  test("a handler's gRPC error is its status and percent-encoded message", async () => {
    const answer = await raw(transport.port, '/t.T/Fail', frame(Buffer.from('x')));
    expect(answer.headers['grpc-message']).toBe('counter store unavailable: 50%25 of nodes');
    expect(trailersOnlyStatus(answer)).toEqual({ code: grpc.status.UNAVAILABLE, message: 'counter store unavailable: 50% of nodes' });
  });

  test('the server advertises its max concurrent streams', async () => {
    const settings = await new Promise<http2.Settings>((resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${transport.port}`);
      session.on('error', reject);
      session.once('remoteSettings', (s: http2.Settings) => {
        resolve(s);
        session.close();
      });
    });
    expect(settings.maxConcurrentStreams).toBe(10);
  });
});

describe.each(LEAN)('TLS and mutual TLS on %s', (transport) => {
  const certs = makeCertificates({ server: 'DNS:filters.test,IP:127.0.0.1', envoy: 'DNS:envoy.test' });
  const call = async (port: number, credentials: grpc.ChannelCredentials): Promise<number> => {
    const c = new grpc.Client(`127.0.0.1:${port}`, credentials, { 'grpc.ssl_target_name_override': 'filters.test' });
    try {
      return await new Promise<number>((resolve) =>
        c.makeUnaryRequest(CHECK, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, encodeMessage(CHECK_REQ, checkRequest(KEY)), { deadline: Date.now() + 5000 }, (err) =>
          resolve(err ? err.code : grpc.status.OK),
        ),
      );
    } finally {
      c.close();
    }
  };
  const read = (file: string): Buffer => readFileSync(file);

  test('server TLS: a client trusting the CA is served', async () => {
    const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport, tls: certs.leaf('server') });
    server.setPolicy(filterPolicy(), 'v1');
    try {
      expect(await call(server.port, grpc.credentials.createSsl(read(certs.ca)))).toBe(grpc.status.OK);
    } finally {
      await server.stop();
    }
  });

  test('mutual TLS: a client without a certificate is refused, one the CA signed is served', async () => {
    const server = await startFilterServer({ host: '127.0.0.1', port: 0, transport, tls: { ...certs.leaf('server'), clientCa: certs.ca } });
    server.setPolicy(filterPolicy(), 'v1');
    try {
      expect(await call(server.port, grpc.credentials.createSsl(read(certs.ca)))).toBe(grpc.status.UNAVAILABLE);
      const envoy = certs.leaf('envoy');
      expect(await call(server.port, grpc.credentials.createSsl(read(certs.ca), read(envoy.key), read(envoy.cert)))).toBe(grpc.status.OK);
    } finally {
      await server.stop();
    }
  });
});

describe('FLOWGATE_FILTERS_TRANSPORT (the embedded filter service of serve reads it)', () => {
  const saved = process.env.FLOWGATE_FILTERS_TRANSPORT;
  afterAll(() => {
    if (saved === undefined) delete process.env.FLOWGATE_FILTERS_TRANSPORT;
    else process.env.FLOWGATE_FILTERS_TRANSPORT = saved;
  });

  test('unset or empty is raw, h2, grpc-js and raw are themselves, anything else is refused by name', () => {
    delete process.env.FLOWGATE_FILTERS_TRANSPORT;
    expect(defaultTransport()).toBe('raw');
    process.env.FLOWGATE_FILTERS_TRANSPORT = '';
    expect(defaultTransport()).toBe('raw');
    process.env.FLOWGATE_FILTERS_TRANSPORT = 'h2';
    expect(defaultTransport()).toBe('h2');
    process.env.FLOWGATE_FILTERS_TRANSPORT = 'grpc-js';
    expect(defaultTransport()).toBe('grpc-js');
    process.env.FLOWGATE_FILTERS_TRANSPORT = 'raw';
    expect(defaultTransport()).toBe('raw');
    process.env.FLOWGATE_FILTERS_TRANSPORT = 'http3';
    expect(() => defaultTransport()).toThrow(/FLOWGATE_FILTERS_TRANSPORT is one of h2, grpc-js, raw \(got "http3"\)/);
  });
});
