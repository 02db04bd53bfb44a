import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { jwtIssuerRules } from '../../src/ir/filter-rules.js';
import { FILTER_POLICY_SCHEMA, FilterPolicySchema } from '../../src/contract/filter-policy.js';
import { GatewaySchema } from '../../src/policy/schema/index.js';
import { startGateway, type TestGateway } from '../harness/gateway.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';

/**
 * Item 10: a JWT without `exp` was valid forever. Now an issuer requires `exp` unless the policy says
 * `requireExpiry: false` (resolved in the IR, carried in the FilterPolicy). Proven through real Envoy and the
 * embedded filter service: a token with no `exp` is 401; with `exp` it is served; an issuer that opts out
 * accepts it.
 */

let gateway: TestGateway;
let echo: EchoUpstream;
let key: CryptoKey;
let jwk: JWK;

async function token(issuer: string, claims: { exp?: boolean } = {}): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(issuer).setAudience('flowgate').setSubject('svc-a').setIssuedAt();
  if (claims.exp !== false) jwt.setExpirationTime('5m');
  const signed = await jwt.sign(key);
  registerSecrets(signed);
  return signed;
}

const issuer = (name: string, iss: string, extra = ''): string =>
  `    - { name: ${name}, issuer: "${iss}", audiences: [flowgate], jwks: { keys: [${JSON.stringify(jwk)}] }, algorithms: [ES256]${extra} }\n`;
const gatewayYaml = (listener: number, filters: number, issuers: string): string =>
  `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s }\nauth:\n  jwt:\n${issuers}`;

beforeAll(async () => {
  ({ publicKey: jwk, privateKey: key } = await generateKeyPair('ES256').then(async (k) => ({ publicKey: { ...(await exportJWK(k.publicKey)), kid: 'k1', alg: 'ES256' }, privateKey: k.privateKey })));
  echo = await startEchoUpstream('sec10');
  gateway = await startGateway({
    name: 'sec10',
    policy: ({ listener, filters }) => ({
      'gateway.yaml': gatewayYaml(listener, filters, issuer('corp', 'https://corp.test/')),
      'consumers.yaml': 'kind: Consumer\nname: svc-a\njwt: { issuer: corp, subject: svc-a }\n',
      'models.yaml': `kind: Model\nname: secure\nupstream: { addressTemplate: "127.0.0.1:${echo.port}" }\ntraffic: { stable: { version: "1" } }\naccess: { consumers: [svc-a] }\n`,
    }),
    registry: () => ({ models: [{ name: 'secure', versions: [{ version: '1' }] }] }),
  });
}, 90_000);

afterAll(async () => {
  await gateway?.stop();
  await echo?.close();
});

const call = async (jwt: string): Promise<{ status: number; body: string }> => {
  const r = await gateway.send('/models/secure', { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: '{}' });
  return { status: r.status, body: r.text };
};

describe('through real Envoy', () => {
  test('a token without exp is refused (401); the same token with exp is served', async () => {
    const withExp = await token('https://corp.test/');
    await waitFor('the secure route to serve a valid token', async () => ((await call(withExp)).status === 200 ? true : undefined));
    const served = echo.received.length;
    const forever = await call(await token('https://corp.test/', { exp: false }));
    expect(forever.status).toBe(401);
    const body = JSON.parse(forever.body) as { error: string; message: string };
    expect(body.error).toBe('invalid_credentials');
    expect(body.message).toMatch(/no "exp" claim/);
    expect(echo.received.length).toBe(served);
  });

  test('an issuer with requireExpiry: false accepts a token without exp', async () => {
    const { listener, filters } = gateway.ports;
    const issuers = issuer('corp', 'https://corp.test/') + issuer('legacy', 'https://legacy.test/', ', requireExpiry: false');
    await gateway.editPolicy('gateway.yaml', gatewayYaml(listener, filters, issuers));
    await gateway.editPolicy('consumers.yaml', 'kind: Consumer\nname: svc-a\njwt: { issuer: legacy, subject: svc-a }\n');
    const legacy = await token('https://legacy.test/', { exp: false });
    await waitFor('the legacy issuer to be served', async () => ((await call(legacy)).status === 200 ? true : undefined));
    // corp still requires exp (and no longer maps svc-a, so any corp token is refused).
    expect((await call(await token('https://corp.test/', { exp: false }))).status).toBe(401);
  });
});

describe('the default is decided once, in the IR, and carried in the contract', () => {
  test('absent requireExpiry resolves to true; false stays false', () => {
    const rules = jwtIssuerRules(
      GatewaySchema.parse({
        kind: 'Gateway',
        auth: { jwt: [{ name: 'a', issuer: 'x', jwks: { keys: [{ kty: 'EC' }] } }, { name: 'b', issuer: 'y', jwks: { keys: [{ kty: 'EC' }] }, requireExpiry: false }] },
      }),
    );
    expect(rules.map((r) => [r.name, r.requireExpiry])).toEqual([['a', true], ['b', false]]);
  });

  test('a FilterPolicy from a control plane that predates the field reads as requiring exp', () => {
    const old = { schema: FILTER_POLICY_SCHEMA, audit: { sink: 'stdout' }, models: [], consumers: [], jwtIssuers: [{ name: 'a', issuer: 'x', audiences: [], jwks: { keys: [{ kty: 'EC' }] }, algorithms: ['ES256'], clockSkewMs: 0, consumerClaim: 'sub' }] };
    expect(FilterPolicySchema.parse(old).jwtIssuers[0]?.requireExpiry).toBe(true);
  });
});
