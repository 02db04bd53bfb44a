import { describe, expect, test } from 'vitest';
import { encodeMessage } from '../../src/proto/codec.js';
import { messageType } from '../../src/proto/root.js';
import { CONFIG_SOURCE_MODES } from '../../src/resources/config-source.js';
import { translateGateway } from '../../src/translate/index.js';
import { CASES, caseIR } from './cases.js';

/**
 * The encoder reuses the bytes of objects it has encoded and splices repeated messages element by element:
 * its output must be exactly protobufjs's encoding of the whole object, or every resource version would
 * change with the encoder (and replicas on two releases would disagree).
 */

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
