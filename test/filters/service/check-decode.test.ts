import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { decodeCheckPartially, decodeCheckRequest } from '../../../filters/service/check-decode.js';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { AUTHORIZATION_SERVICE } from '../../../filters/service/grpc.js';
import { FilterService } from '../../../filters/service/service.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { messageType } from '../../../src/proto/root.js';
import { seededRandom } from '../../harness/prng.js';

/**
 * The partial CheckRequest decoder must read exactly what the full protobufjs decode reads, for every
 * realistic request, and hand anything unusual to the full decode.
 */

const type = messageType('envoy.service.auth.v3.CheckRequest');
const encode = (value: object): Buffer => Buffer.from(type.encode(type.fromObject(value)).finish());
const KEY = 'decode-key-0123456789';

const envoyHeaders = {
  ':method': 'POST',
  ':path': '/models/guarded/invocations?x=1',
  ':authority': '127.0.0.1:10000',
  ':scheme': 'http',
  'x-api-key': KEY,
  'content-type': 'application/json',
  'user-agent': 'curl/8.5.0',
  accept: '*/*',
  'x-request-id': '0b6f3c5e-2c51-4d6e-9f0a-6c1b1d8b9e11',
  'x-forwarded-proto': 'http',
  'content-length': '7',
};

/** What Envoy's ext_authz sends, in the shapes the routes produce, and edge cases of the fields Check reads. */
const REQUESTS: Record<string, object> = {
  'an Envoy request (addresses, time, 11 headers, context extensions)': {
    attributes: {
      source: { address: { socket_address: { address: '127.0.0.1', port_value: 40000 } } },
      destination: { address: { socket_address: { address: '127.0.0.1', port_value: 10000 } }, labels: { a: 'b' }, principal: 'p' },
      request: {
        time: { seconds: '1764700000', nanos: 123 },
        http: { id: '1234567', method: 'POST', path: '/models/guarded', host: '127.0.0.1:10000', scheme: 'http', protocol: 'HTTP/1.1', size: '7', headers: envoyHeaders },
      },
      context_extensions: { model: 'guarded', ratelimit: 'check', api: 'openai' },
    },
  },
  'with a body, a query, metadata and a TLS session': {
    attributes: {
      request: { http: { method: 'POST', path: '/v1/chat/completions', query: 'a=1', fragment: 'f', body: '{"model":"x"}', raw_body: Buffer.from('{"model":"x"}'), headers: { authorization: `Bearer ${KEY}` } } },
      context_extensions: { model: 'guarded' },
      metadata_context: { filter_metadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { string_value: 'x' } } } } },
      route_metadata_context: { filter_metadata: { flowgate: { fields: { m: { number_value: 1 } } } } },
      tls_session: { sni: 'gateway.example' },
    },
  },
  'no headers': { attributes: { request: { http: { method: 'GET' } }, context_extensions: { model: 'guarded' } } },
  'no http': { attributes: { request: {}, context_extensions: { model: 'guarded' } } },
  'no request': { attributes: { context_extensions: { model: 'guarded' } } },
  'no context extensions': { attributes: { request: { http: { headers: { 'x-api-key': KEY } } } } },
  empty: {},
  'unicode, empty and long values': {
    attributes: {
      request: { http: { headers: { 'x-api-key': KEY, 'x-name': 'zoë ☃ 𝄞', 'x-empty': '', 'x-long': 'v'.repeat(70_000), '': 'no name' } } },
      context_extensions: { model: 'guarded', '': '' },
    },
  },
};

function agrees(bytes: Buffer): void {
  const partial = decodeCheckPartially(bytes);
  expect(partial).toBeDefined();
  const whole = type.decode(bytes) as unknown as {
    attributes?: { request?: { http?: Record<string, unknown> | null } | null; context_extensions?: Record<string, string> } | null;
  };
  expect(partial?.attributes === undefined).toBe(whole.attributes == null);
  if (!whole.attributes || !partial?.attributes) return;
  expect(partial.attributes.context_extensions).toEqual({ ...whole.attributes.context_extensions });
  expect(partial.attributes.request === undefined).toBe(whole.attributes.request == null);
  const wholeHttp = whole.attributes.request?.http;
  const partialHttp = partial.attributes.request?.http;
  expect(partialHttp === undefined).toBe(wholeHttp == null);
  if (!wholeHttp || !partialHttp) return;
  for (const field of ['id', 'method', 'path', 'host', 'scheme', 'protocol'] as const) expect(partialHttp[field]).toBe(wholeHttp[field]);
  expect(partialHttp.headers).toEqual({ ...(wholeHttp.headers as Record<string, string>) });
}

describe('partial CheckRequest decode', () => {
  test.each(Object.entries(REQUESTS))('%s: the fields Check reads agree with the full decode', (_what, value) => {
    agrees(encode(value));
  });

  test('Check is Check: the real handler answers the same to both decodes (allow, deny, limit)', async () => {
    const sha = createHash('sha256').update(KEY).digest('hex');
    const text = `kind: Consumer\nname: acme\nroles: [caller]\napiKeys: [{ id: k, sha256: ${sha} }]\n---\nkind: Model\nname: guarded\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\naccess: { roles: [caller] }\nrateLimits: [{ requests: 3, per: minute }]\n`;
    const load = policyFromFiles('t', [{ file: 'p.yaml', text }]);
    if (!load.ok) throw new Error(formatIssues(load.issues, 't'));
    const service = (): FilterService => {
      const s = new FilterService({ store: new MemoryStore(), audit: new MemoryAuditLog() });
      s.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
      return s;
    };
    const [a, b] = [service(), service()];
    const check = AUTHORIZATION_SERVICE.Check;
    if (!check) throw new Error('no Check');
    const envoyLike = REQUESTS['an Envoy request (addresses, time, 11 headers, context extensions)'] as { attributes: Record<string, unknown> };
    const wrongKey = { attributes: { ...envoyLike.attributes, request: { http: { headers: { ...envoyHeaders, 'x-api-key': 'wrong' } } } } };
    for (const value of [envoyLike, envoyLike, wrongKey, envoyLike, envoyLike, REQUESTS['no http'] as object]) {
      const bytes = encode(value);
      const viaPartial = check.responseSerialize(await a.check(decodeCheckRequest(bytes) as never));
      const viaFull = check.responseSerialize(await b.check(type.decode(bytes) as never));
      expect(viaPartial.equals(viaFull)).toBe(true);
    }
  });

  test('unusual messages go to the full decode', () => {
    const good = encode(REQUESTS['no headers'] as object);
    const cases: Record<string, Buffer> = {
      'header_map instead of headers': encode({ attributes: { request: { http: { header_map: { headers: [{ key: 'x-api-key', raw_value: Buffer.from(KEY) }] } } }, context_extensions: { model: 'm' } } }),
      'attributes twice': Buffer.concat([good, good]),
      'a known field with another wire type': Buffer.from([0x08, 0x01]),
      'field number 0': Buffer.from([0x02, 0x00]),
      'a group': Buffer.from([0x0b, 0x0c]),
      'a length past the end': Buffer.from([0x0a, 0x05, 0x22, 0x00]),
      'an over-long varint': Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      truncated: good.subarray(0, good.length - 1),
    };
    for (const [what, bytes] of Object.entries(cases)) expect(decodeCheckPartially(bytes), what).toBeUndefined();
    // The full decode is what Check then gets (here: the header_map form, decoded as protobufjs does).
    const viaFallback = decodeCheckRequest(cases['header_map instead of headers'] as Buffer) as { attributes: { request: { http: { header_map: { headers: unknown[] } } } } };
    expect(viaFallback.attributes.request.http.header_map.headers).toHaveLength(1);
    expect(() => decodeCheckRequest(cases.truncated as Buffer)).toThrow();
  });

  test('mutated requests: partially decoded only when the fields Check reads agree with the full decode', () => {
    const random = seededRandom(14);
    const seeds = Object.values(REQUESTS).map(encode).filter((b) => b.length > 0 && b.length < 10_000);
    let partial = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(seeds[Math.floor(random() * seeds.length)] as Buffer);
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      const cut = random() < 0.2 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      if (decodeCheckPartially(cut) === undefined) continue;
      let decodes = true;
      try {
        type.decode(cut);
      } catch {
        // A field Check does not read is skipped at its length, not decoded: its contents may be broken.
        decodes = false;
      }
      if (decodes) {
        agrees(cut);
        partial += 1;
      }
    }
    expect(partial).toBeGreaterThan(100);
  });
});
