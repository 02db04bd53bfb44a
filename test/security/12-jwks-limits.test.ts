import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { JWKS_LIMITS } from '../../src/contract/filter-policy.js';
import { GatewaySchema } from '../../src/policy/schema/index.js';
import { startGateway, type TestGateway } from '../harness/gateway.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';

/**
 * Item 12: the JWKS fetch had no size cap, so a 20 MB key set was downloaded and parsed on the filter
 * service's event loop. Now a `jwksUri` set is read as a stream and dropped past JWKS_LIMITS.maxBytes, and a
 * set with more than JWKS_LIMITS.maxKeys keys is refused; the issuer's tokens are then refused (401) while
 * other issuers keep working. Through real Envoy and the embedded filter service, with the JWKS served by a
 * local HTTP server that holds the real signing key in every set, so only the limits can refuse.
 */

let gateway: TestGateway;
let echo: EchoUpstream;
let jwksServer: Server;
let key: CryptoKey;
let jwk: JWK;
let hugeBytes = 0;

function junkKeys(n: number): JWK[] {
  return Array.from({ length: n }, (_, i) => ({ kty: 'EC', crv: 'P-256', kid: `junk-${i}`, x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }));
}

async function startJwksServer(): Promise<string> {
  const sets: Record<string, string> = {
    '/ok.json': JSON.stringify({ keys: [jwk] }),
    '/many.json': JSON.stringify({ keys: [...junkKeys(JWKS_LIMITS.maxKeys + 50), jwk] }),
  };
  const huge = Buffer.from(JSON.stringify({ keys: [...junkKeys(150_000), jwk] }));
  hugeBytes = huge.length;
  jwksServer = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url === '/huge.json') {
      // Chunked, with no Content-Length: only reading the stream can tell the size.
      for (let at = 0; at < huge.length; at += 64 * 1024) res.write(huge.subarray(at, at + 64 * 1024));
      res.end();
      return;
    }
    res.end(sets[req.url ?? ''] ?? '{"keys":[]}');
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
}

async function token(issuer: string): Promise<string> {
  const signed = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(issuer).setAudience('flowgate').setSubject('svc').setIssuedAt().setExpirationTime('5m').sign(key);
  registerSecrets(signed);
  return signed;
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  key = pair.privateKey;
  jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
  const base = await startJwksServer();
  echo = await startEchoUpstream('sec12');
  const issuer = (name: string): string => `    - { name: ${name}, issuer: "https://${name}.test/", audiences: [flowgate], jwksUri: "${base}/${name}.json", algorithms: [ES256] }\n`;
  gateway = await startGateway({
    name: 'sec12',
    policy: ({ listener, filters }) => ({
      'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 5s }\nauth:\n  jwt:\n${issuer('ok')}${issuer('many')}${issuer('huge')}`,
      'consumers.yaml': ['ok', 'many', 'huge'].map((n) => `kind: Consumer\nname: svc-${n}\njwt: { issuer: ${n}, subject: svc }\n`).join('---\n'),
      'models.yaml': `kind: Model\nname: secure\nupstream: { addressTemplate: "127.0.0.1:${echo.port}" }\ntraffic: { stable: { version: "1" } }\naccess: { consumers: [svc-ok, svc-many, svc-huge] }\n`,
    }),
    registry: () => ({ models: [{ name: 'secure', versions: [{ version: '1' }] }] }),
  });
}, 90_000);

afterAll(async () => {
  await gateway?.stop();
  await echo?.close();
  await new Promise((resolve) => jwksServer?.close(resolve));
});

const call = async (jwt: string): Promise<{ status: number; body: { error?: string; message?: string } }> => {
  const r = await gateway.send('/models/secure', { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: '{}' });
  return { status: r.status, body: r.text.startsWith('{') ? (JSON.parse(r.text) as { error?: string; message?: string }) : {} };
};

test('a normal key set verifies tokens', async () => {
  const ok = await token('https://ok.test/');
  await waitFor('the ok issuer to be served', async () => ((await call(ok)).status === 200 ? true : undefined));
});

test(`a 20 MB key set (chunked, no Content-Length) is dropped past ${JWKS_LIMITS.maxBytes} bytes; its tokens are refused`, async () => {
  expect(hugeBytes).toBeGreaterThan(20_000_000);
  const r = await call(await token('https://huge.test/'));
  expect(r.status).toBe(401);
  expect(r.body.message).toMatch(/keys of issuer 'huge' are unavailable/);
  await waitFor('the filter service to say why', () => (gateway.flowgate.process.tail(500).includes(`larger than ${JWKS_LIMITS.maxBytes} bytes`) ? true : undefined));
});

test(`a key set with more than ${JWKS_LIMITS.maxKeys} keys is refused; its tokens are refused`, async () => {
  const r = await call(await token('https://many.test/'));
  expect(r.status).toBe(401);
  expect(r.body.message).toMatch(/keys of issuer 'many' are unavailable/);
  await waitFor('the filter service to say why', () => (gateway.flowgate.process.tail(500).includes(`has ${JWKS_LIMITS.maxKeys + 51} keys`) ? true : undefined));
});

test('the other issuers keep working', async () => {
  expect((await call(await token('https://ok.test/'))).status).toBe(200);
});

test('an inline key set in the policy is held to the same key count', () => {
  const gatewayWith = (keys: number): boolean =>
    GatewaySchema.safeParse({ kind: 'Gateway', auth: { jwt: [{ name: 'a', issuer: 'x', jwks: { keys: junkKeys(keys) } }] } }).success;
  expect(gatewayWith(JWKS_LIMITS.maxKeys)).toBe(true);
  expect(gatewayWith(JWKS_LIMITS.maxKeys + 1)).toBe(false);
});
