import { describe, expect, test } from 'vitest';
import { encodeMessage, UnknownFieldError } from '../../src/proto/codec.js';
import { encodeDirect, encodeDirectFramed } from '../../src/proto/direct.js';
import { messageType } from '../../src/proto/root.js';
import { CONFIG_SOURCE_MODES } from '../../src/resources/config-source.js';
import type { TypeUrl } from '../../src/resources/types.js';
import { translateGateway } from '../../src/translate/index.js';
import { contentHash, Snapshot } from '../../src/xds/snapshot.js';
import { CASES, caseIR } from './cases.js';

/**
 * The encoder reuses the bytes of objects it has encoded and splices repeated messages element by element:
 * its output must be exactly protobufjs's encoding of the whole object, or every resource version would
 * change with the encoder (and replicas on two releases would disagree).
 */

/** The bytes of an unsigned varint. */
const varint = (v: number): number[] => {
  const out: number[] = [];
  while (v > 127) {
    out.push((v & 127) | 128);
    v >>>= 7;
  }
  out.push(v);
  return out;
};

const plain = (typeUrl: string, message: object): Uint8Array => {
  const type = messageType(typeUrl);
  return type.encode(type.fromObject(message)).finish();
};

describe('encodeMessage', () => {
  test.each(CASES)('gives protobufjs bytes for every resource of %s, also on a second encoding', (name) => {
    const inputs = CONFIG_SOURCE_MODES.flatMap((mode) => translateGateway(caseIR(name), mode));
    expect(inputs.length).toBeGreaterThan(0);
    for (const r of inputs) {
      const expected = Buffer.from(plain(r.typeUrl, r.message));
      expect(Buffer.from(encodeMessage(r.typeUrl, r.message)).equals(expected), `${r.typeUrl} ${r.name}`).toBe(true);
      expect(Buffer.from(encodeMessage(r.typeUrl, r.message)).equals(expected), `${r.typeUrl} ${r.name} (reused)`).toBe(true);
    }
  });

  test('a route configuration whose routes were encoded before reuses them and still refuses an unknown field', () => {
    const route = { name: 'r', match: { prefix: '/' }, direct_response: { status: 200 } };
    const config = (extra: object) => ({ name: 'x', virtual_hosts: [{ name: 'any', domains: ['*'], routes: [route, route] }], ...extra });
    const url = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
    expect(Buffer.from(encodeMessage(url, config({}))).equals(Buffer.from(plain(url, config({}))))).toBe(true);
    expect(() => encodeMessage(url, config({ no_such_field: 1 }))).toThrow(/no_such_field/);
    const bad = { name: 'x', virtual_hosts: [{ name: 'any', domains: ['*'], routes: [route, { ...route, bogus: true }] }] };
    expect(() => encodeMessage(url, bad)).toThrow(/virtual_hosts\[0\]\.routes\[1\]\.bogus/);
  });
});

/**
 * The direct encoder (src/proto/direct.ts) writes the hot shapes without protobufjs's fromObject: for every
 * kind of value it writes, its bytes must be protobufjs's; for every value it does not handle it must give
 * the message back (undefined) so the generic path converts it, or refuses the unknown field by name.
 */
describe('direct encoder', () => {
  const direct = (typeUrl: string, message: object): Buffer | undefined => {
    const bytes = encodeDirect(messageType(typeUrl), message as Record<string, unknown>);
    return bytes && Buffer.from(bytes);
  };
  const ROUTE = 'envoy.config.route.v3.Route';
  const long = 'x'.repeat(300);
  const written: [string, string, object][] = [
    ['strings: ASCII, empty, non-ASCII, 300 characters (two-byte lengths)', ROUTE, { name: 'r', match: { prefix: '' }, request_headers_to_remove: ['a', 'é€😀', long] }],
    ['bool, uint32, message, zero values written when present', ROUTE, { name: 'r', match: { path: '/p', case_sensitive: { value: false } }, direct_response: { status: 0 } }],
    ['enum by name and by number', ROUTE, { name: 'r', match: { prefix: '/' }, route: { cluster: 'c', priority: 'HIGH', cluster_not_found_response_code: 2 } }],
    ['int64 (Duration seconds) as strings and numbers, negative and beyond 32 bits; int32 negative', ROUTE, { name: 'r', match: { prefix: '/' }, route: { cluster: 'c', timeout: { seconds: '30', nanos: 0 }, idle_timeout: { seconds: -5, nanos: -1 }, max_stream_duration: { max_stream_duration: { seconds: '1099511627776', nanos: 7 }, grpc_timeout_header_max: { seconds: -1099511627776 } } } }],
    ['packed uint32 and oneof name keys', ROUTE, { name: 'r', match: { prefix: '/', path_specifier: 'prefix' }, route: { cluster: 'c', retry_policy: { retry_on: '5xx', retriable_status_codes: [503, 504, 0, 70000] } } }],
    ['maps of messages (Any values) and of strings, in key order; nested Any', ROUTE, { name: 'r', match: { prefix: '/' }, direct_response: { status: 200 }, typed_per_filter_config: { 'z.filter': { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', check_settings: { context_extensions: { model: 'm', a: '' } } }, 'a.filter': { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', disabled: true } } } }],
    ['Struct values (camelCase), metadata maps, a list and a nested struct', ROUTE, { name: 'r', match: { prefix: '/' }, direct_response: { status: 200 }, metadata: { filter_metadata: { flowgate: { fields: { s: { stringValue: 'v' }, n: { numberValue: 1.5 }, b: { boolValue: false }, z: { nullValue: 'NULL_VALUE' }, l: { listValue: { values: [{ numberValue: -0 }, { stringValue: '' }] } }, o: { structValue: { fields: {} } } } } } } }],
    ['a sub-message longer than 16 KB (three-byte length)', ROUTE, { name: 'r', match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'y'.repeat(20_000) } } }],
    ['packed enums, uint64, double, float, bytes, empty and null fields', 'envoy.config.core.v3.HealthStatusSet', { statuses: ['HEALTHY', 'DRAINING', 0] }],
    ['uint64 wrapper', 'google.protobuf.UInt64Value', { value: '18014398509481' }],
    ['double', 'envoy.type.v3.Percent', { value: 12.25 }],
    ['float', 'google.protobuf.FloatValue', { value: 0.1 }],
    ['bytes', 'google.protobuf.BytesValue', { value: Buffer.from([0, 1, 255]) }],
    ['an empty message, null and undefined fields, empty lists', ROUTE, { name: 'r', match: { prefix: '/', headers: [] }, route: { cluster: 'c', timeout: null, hash_policy: undefined }, response_headers_to_add: [] }],
    ['an Any at the top', 'google.protobuf.Any', { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true }],
    ['an Int64Range', 'envoy.type.v3.Int64Range', { start: 0, end: '-7' }],
    // The generated writers read keys in any order and write in field-number order.
    ['keys in reverse field order, repeated messages and strings', ROUTE, { request_headers_to_remove: ['b', 'a'], request_headers_to_add: [{ header: { key: 'k', value: 'v' } }, { header: { key: 'k2', value: '' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }], route: { cluster: 'c' }, match: { prefix: '/' }, name: 'r' }],
    ['a key holding undefined beside keys holding values', ROUTE, { name: 'r', match: { prefix: '/', headers: undefined }, decorator: undefined, route: { cluster: 'c', timeout: undefined } }],
    ['inherited enumerable keys (fromObject reads them too)', ROUTE, Object.assign(Object.create({ name: 'inherited' }) as object, { match: { prefix: '/' } })],
    ['a cluster with its nested config source, a repeated Any and a packed-free uint32 list', 'envoy.config.cluster.v3.Cluster', { name: 'c', type: 'EDS', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } }, connect_timeout: { seconds: '5', nanos: 0 }, typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } }, health_checks: [{ timeout: { seconds: '1' }, interval: { seconds: '2' }, http_health_check: { path: '/health', expected_statuses: [{ start: 200, end: 300 }] } }] }],
  ];
  test.each(written)('writes %s exactly as protobufjs', (_what, typeUrl, message) => {
    const bytes = direct(typeUrl, message);
    expect(bytes, 'handled directly').toBeDefined();
    expect(bytes?.equals(Buffer.from(plain(typeUrl, message)))).toBe(true);
  });

  const generic: [string, string, object][] = [
    ['an unknown field', ROUTE, { name: 'r', match: { prefix: '/', nope: 1 } }],
    ['a string given as a number (fromObject converts)', ROUTE, { name: 'r', match: { prefix: 5 } }],
    ['an enum name the enum lacks (fromObject drops it)', ROUTE, { name: 'r', match: { prefix: '/' }, route: { cluster: 'c', priority: 'URGENT' } }],
    ['a 64-bit integer beyond the safe range', 'google.protobuf.UInt64Value', { value: '18446744073709551615' }],
    ['a 64-bit integer that is not a decimal string', 'google.protobuf.Duration', { seconds: '0x10' }],
    ['a lone surrogate', ROUTE, { name: '\ud800' }],
    ['an Any of an unknown type', ROUTE, { name: 'r', typed_per_filter_config: { f: { '@type': 'type.googleapis.com/no.such.Type' } } }],
    ['bytes as base64 text', 'google.protobuf.BytesValue', { value: 'AAE=' }],
    ['a fractional integer', 'envoy.type.v3.FractionalPercent', { numerator: 1.5 }],
    ['an unknown key after every field, deep in a repeated message', ROUTE, { name: 'r', match: { prefix: '/' }, request_headers_to_add: [{ header: { key: 'k', value: 'v' } }, { header: { key: 'k', value: 'v', nope: 1 } }] }],
    ['an unknown key holding undefined', ROUTE, { name: 'r', match: { prefix: '/' }, nope: undefined }],
    ['an @type key outside an Any', ROUTE, { '@type': 'type.googleapis.com/envoy.config.route.v3.Route', name: 'r' }],
    ['a repeated field given one value, not a list', ROUTE, { name: 'r', request_headers_to_remove: 'a' }],
    ['a message given as a string', ROUTE, { name: 'r', match: '/' }],
  ];
  test.each(generic)('leaves %s to the generic path', (_what, typeUrl, message) => {
    expect(direct(typeUrl, message)).toBeUndefined();
  });

  test('the generic path still refuses an unknown field by its path, and converts what fromObject converts', () => {
    expect(() => encodeMessage(ROUTE, { name: 'r', match: { prefix: '/', nope: 1 } })).toThrow(UnknownFieldError);
    expect(() => encodeMessage(ROUTE, { name: 'r', match: { prefix: '/', nope: 1 } })).toThrow(/match\.nope/);
    const converted = { name: 'r', match: { prefix: 5 }, route: { cluster: 'c', priority: 'URGENT' } };
    expect(Buffer.from(encodeMessage(ROUTE, converted)).equals(Buffer.from(plain(ROUTE, converted)))).toBe(true);
  });

  test('a field that is neither a field nor a oneof beside a spliced list is refused by name', () => {
    const url = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
    const route = { name: 'r', match: { prefix: '/' }, direct_response: { status: 200 } };
    expect(() => encodeMessage(url, { name: 'x', virtual_hosts: [{ name: 'a', domains: ['*'], routes: [route] }], nope: true })).toThrow(/^unknown field nope /);
    expect(() => encodeMessage(url, { name: 'x', virtual_hosts: [{ name: 'a', domains: ['*'], routes: [route], nope: true }] })).toThrow(/virtual_hosts\[0\]\.nope/);
    expect(() => encodeMessage(url, { name: 'x', virtual_hosts: [{ name: 'a', domains: ['*'], routes: [route] }], validate_clusters: { nope: 1 } })).toThrow(/validate_clusters\.nope/);
  });

  test('a list or map given again in the same field is written as before; in another field, type or size, afresh', () => {
    // The writers keep the bytes of a list or map seen twice in a row in one field and put them again.
    const removed = ['authorization', 'x-api-key'];
    const added = [{ header: { key: 'x-v', value: '%UPSTREAM_METADATA(flowgate:version)%' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
    const perFilter = { 'flowgate.authz': { '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', check_settings: { context_extensions: { model: 'm' } } } };
    const large = Array.from({ length: 40 }, (_, i) => `x-header-${i}-${'h'.repeat(20)}`);
    const bad = ['ok', '\ud800'];
    const other = ['x-other', 'x-more'];
    const route = (i: number, extra: object = {}) => ({ name: `r${i}`, match: { prefix: `/m${i}` }, route: { cluster: `c${i}` }, request_headers_to_remove: removed, response_headers_to_add: added, typed_per_filter_config: perFilter, ...extra });
    const messages: [string, object][] = [
      ...Array.from({ length: 4 }, (_, i): [string, object] => [ROUTE, route(i)]),
      // The same list in the other field of its type (another key), and in a field of another type.
      [ROUTE, route(4, { response_headers_to_remove: removed })],
      [ROUTE, { name: 'swap', match: { prefix: '/' }, route: { cluster: 'c' }, response_headers_to_remove: removed, request_headers_to_add: added }],
      ['envoy.config.route.v3.VirtualHost', { name: 'vh', domains: removed, request_headers_to_remove: removed }],
      ['envoy.config.route.v3.VirtualHost', { name: 'vh2', domains: removed, request_headers_to_remove: removed, routes: [route(5), route(6)] }],
      ...Array.from({ length: 3 }, (_, i): [string, object] => [ROUTE, route(7 + i, { request_headers_to_remove: large })]),
      ...Array.from({ length: 3 }, (_, i): [string, object] => [ROUTE, route(10 + i)]),
      // Another small list after one kept: its own bytes, not the kept ones.
      ...Array.from({ length: 3 }, (_, i): [string, object] => [ROUTE, route(13 + i, { request_headers_to_remove: ['x-other'] })]),
      ...Array.from({ length: 3 }, (_, i): [string, object] => [ROUTE, route(16 + i, { request_headers_to_remove: other })]),
    ];
    for (const [typeUrl, message] of messages) {
      const name = (message as { name: string }).name;
      expect(direct(typeUrl, message)?.equals(Buffer.from(plain(typeUrl, message))), name).toBe(true);
    }
    // A list it cannot write is never kept: given again, it is left to the generic path each time.
    for (let i = 0; i < 3; i++) expect(direct(ROUTE, { name: 'b', request_headers_to_remove: bad })).toBeUndefined();
    // In one buffer of framed elements (a model's routes): the shared lists of each element.
    const type = messageType(ROUTE);
    const routes = Array.from({ length: 6 }, (_, i) => route(20 + i));
    const framed = encodeDirectFramed(type, routes, 26, () => undefined);
    const expected = Buffer.concat(routes.map((r) => {
      const bytes = Buffer.from(plain(ROUTE, r));
      return Buffer.concat([Buffer.from([26]), Buffer.from(varint(bytes.length)), bytes]);
    }));
    expect(framed && Buffer.from(framed).equals(expected)).toBe(true);
  });

  test('results kept together stay their own bytes (cut from shared slabs, or their own buffer when large)', () => {
    // Sizes from a few bytes to past the slab's own-buffer limit, enough of them to fill several slabs.
    const messages = Array.from({ length: 3000 }, (_, i) => ({ name: `r${i}`, match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'z'.repeat((i * 37) % (i % 500 === 0 ? 40_000 : 900)) } } }));
    const results = messages.map((m) => direct(ROUTE, m));
    messages.forEach((m, i) => expect(results[i]?.equals(Buffer.from(plain(ROUTE, m))), m.name).toBe(true));
  });

  test('a resource version is the hash of its type URL, a zero byte and its bytes', () => {
    const url = 'type.googleapis.com/envoy.config.route.v3.Route';
    const message = { name: 'r', match: { prefix: '/' }, direct_response: { status: 200 } };
    const r = Snapshot.from([{ typeUrl: url as TypeUrl, name: 'r', message }]).get(url as TypeUrl, 'r');
    expect(r?.version).toBe(contentHash(url, '\u0000', plain(url, message)));
    // A message longer than the hash input buffer (it grows), then a short one (only its own bytes hashed).
    const big = { name: 'big', match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'b'.repeat(100_000) } } };
    const both = Snapshot.from([
      { typeUrl: url as TypeUrl, name: 'big', message: big },
      { typeUrl: url as TypeUrl, name: 's', message: { name: 's', match: { prefix: '/' } } },
    ]);
    expect(both.get(url as TypeUrl, 'big')?.version).toBe(contentHash(url, '\u0000', plain(url, big)));
    expect(both.get(url as TypeUrl, 's')?.version).toBe(contentHash(url, '\u0000', plain(url, { name: 's', match: { prefix: '/' } })));
  });
});
