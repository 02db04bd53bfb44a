import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPipeline } from '../../src/pipeline/index.js';
import { startFilterServer, type FilterServer } from '../../filters/service/server.js';
import { MODEL_METADATA_KEY as MODEL_METADATA } from '../../src/contract/filter-wire.js';
import { formatIssues } from '../../src/policy/format.js';
import { policyFromFiles } from '../../src/policy/load.js';
import { decodeMessage, encodeMessage } from '../../src/proto/codec.js';
import { seededRandom } from '../harness/prng.js';

/**
 * Malformed input to the filter service over real gRPC: random bytes, valid messages with missing or absurd
 * fields, ext_proc streams out of order, broken and oversized bodies. Every call must end in a decision (a
 * 4xx answer) or a gRPC error, and the service must keep answering good requests afterwards.
 */

const KEY = 'fuzz-key-0123456789';

let server: FilterServer;
let client: grpc.Client;


function unary(path: string, bytes: Uint8Array): Promise<{ ok: true; bytes: Buffer } | { ok: false; code: number }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      bytes,
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, res) => resolve(err ? { ok: false, code: err.code } : { ok: true, bytes: res ?? Buffer.alloc(0) }),
    );
  });
}

/** Runs one ext_proc stream: sends `messages`, collects every answer until the server ends or errors. */
function extProc(model: string, messages: Uint8Array[]): Promise<{ answers: Record<string, unknown>[]; code?: number }> {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    md.set(MODEL_METADATA, model);
    const call = client.makeBidiStreamRequest(
      '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      md,
      { deadline: Date.now() + 5000 },
    );
    const answers: Record<string, unknown>[] = [];
    call.on('data', (b: Buffer) => answers.push(decodeMessage('envoy.service.ext_proc.v3.ProcessingResponse', b)));
    call.on('error', (err: grpc.ServiceError) => resolve({ answers, code: err.code }));
    call.on('end', () => resolve({ answers }));
    for (const m of messages) call.write(m);
    call.end();
  });
}

const check = (value: object): Uint8Array => encodeMessage('envoy.service.auth.v3.CheckRequest', value);
const proc = (value: object): Uint8Array => encodeMessage('envoy.service.ext_proc.v3.ProcessingRequest', value);
const checkResponse = (b: Buffer): Record<string, unknown> => decodeMessage('envoy.service.auth.v3.CheckResponse', b);

function goodCheck(): Uint8Array {
  return check({ attributes: { request: { http: { method: 'POST', path: '/models/guarded', headers: { 'x-api-key': KEY } } }, context_extensions: { model: 'guarded' } } });
}

beforeAll(async () => {
  const load = policyFromFiles('policy', [
    {
      file: 'p.yaml',
      text: `kind: Consumer
name: fuzzer
apiKeys: [{ id: k, sha256: ${createHash('sha256').update(KEY).digest('hex')} }]
rateLimits: [{ requests: 100000, per: minute }]
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:1" }
traffic: { stable: { version: "1" } }
access: { consumers: [fuzzer] }
masking: { request: { patterns: [card, email] }, response: { patterns: [email] }, maxBodyBytes: 4096 }
tokenQuotas: [{ tokens: 1000000, per: hour }]
`,
    },
  ]);
  if (!load.ok) throw new Error(formatIssues(load.issues, 'policy'));
  server = await startFilterServer({ host: '127.0.0.1', port: 0 });
  server.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
  client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.stop();
});

const STILL_OK = async (): Promise<void> => {
  const res = await unary('/envoy.service.auth.v3.Authorization/Check', goodCheck());
  expect(res.ok).toBe(true);
  if (res.ok) expect(checkResponse(res.bytes)).toMatchObject({ status: { code: 0 } });
};

describe('filter service fuzzing', () => {
  test('random bytes to Check and ShouldRateLimit: an error or an answer, never a crash', async () => {
    const next = seededRandom(42);
    for (let i = 0; i < 300; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(next() * 200) }, () => Math.floor(next() * 256));
      for (const path of ['/envoy.service.auth.v3.Authorization/Check', '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit']) {
        const res = await unary(path, bytes);
        if (!res.ok) expect([grpc.status.INTERNAL, grpc.status.UNAVAILABLE, grpc.status.INVALID_ARGUMENT, grpc.status.UNKNOWN]).toContain(res.code);
      }
    }
    await STILL_OK();
  });

  test('well-formed but empty or absurd Check requests get a 4xx decision', async () => {
    const cases = [
      {},
      { attributes: {} },
      { attributes: { request: { http: { headers: {} } } } },
      { attributes: { request: { http: { headers: { 'x-api-key': 'x'.repeat(100_000) } } }, context_extensions: { model: 'guarded' } } },
      { attributes: { request: { http: { headers: { authorization: 'Bearer a.b.c' } } }, context_extensions: { model: 'guarded' } } },
      { attributes: { request: { http: { headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' } } }, context_extensions: { model: 'guarded' } } },
      { attributes: { request: { http: { headers: { 'x-api-key': KEY } } }, context_extensions: { model: 'no-such-model' } } },
    ];
    for (const c of cases) {
      const res = await unary('/envoy.service.auth.v3.Authorization/Check', check(c));
      expect(res.ok).toBe(true);
      if (!res.ok) continue;
      const answer = checkResponse(res.bytes) as { denied_response?: { status?: { code?: string | number } } };
      const code = answer.denied_response?.status?.code;
      const status = typeof code === 'number' ? code : Number.NaN;
      // Enum values decode by name; the HTTP number is what matters.
      const named: Record<string, number> = { BadRequest: 400, Unauthorized: 401, Forbidden: 403 };
      expect([400, 401, 403]).toContain(Number.isNaN(status) ? named[String(code)] : status);
    }
    await STILL_OK();
  });

  test('ext_proc: broken JSON is 400, an oversized body 413, messages out of order or random get answers, never a crash', async () => {
    const headers = proc({ request_headers: { headers: { headers: [{ key: 'x-flowgate-consumer', value: 'fuzzer' }] } } });
    const body = (text: string): Uint8Array => proc({ request_body: { body: Buffer.from(text), end_of_stream: true } });
    const broken = await extProc('guarded', [headers, body('{"a": ')]);
    expect(broken.answers[1]).toMatchObject({ immediate_response: { status: { code: 'BadRequest' } } });
    const big = await extProc('guarded', [headers, body(JSON.stringify({ a: 'x'.repeat(10_000) }))]);
    expect(big.answers[1]).toMatchObject({ immediate_response: { status: { code: 'PayloadTooLarge' } } });
    const masked = await extProc('guarded', [headers, body('{"note":"mail a@b.example"}')]);
    const mutated = (masked.answers[1] as { request_body?: { response?: { body_mutation?: { body?: Buffer } } } }).request_body?.response?.body_mutation?.body;
    expect(mutated?.toString()).not.toContain('a@b.example');

    const outOfOrder = await extProc('guarded', [proc({ response_body: { body: Buffer.from('{"x"'), end_of_stream: true } }), body('{}'), proc({})]);
    expect(outOfOrder.answers.length + (outOfOrder.code === undefined ? 0 : 1)).toBeGreaterThan(0);
    const unknownModel = await extProc('nope', [headers, body('{}')]);
    expect(unknownModel.answers.length).toBe(2);

    const next = seededRandom(7);
    for (let i = 0; i < 100; i++) {
      const junk = Uint8Array.from({ length: Math.floor(next() * 100) }, () => Math.floor(next() * 256));
      const res = await extProc('guarded', [junk]);
      expect(res.answers.length <= 1).toBe(true);
    }
    await STILL_OK();
  });
});
