import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authorizer } from '../../../filters/authz/engine.js';
import type { AuthzDecision } from '../../../filters/authz/engine.js';
import { consumer, expectAllow, expectDeny, jwtIssuers, model, sha256Hex } from './fixtures.js';

const CORP = 'https://idp.example.com/';
const PARTNER = 'https://partner.example.com/';
const PS_ONLY = 'https://ps.example.com/';
const DOWN = 'https://down.example.com/';

interface SigningKey {
  readonly alg: string;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

async function signingKey(alg: 'RS256' | 'ES256' | 'PS256', kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const now = (): number => Math.floor(Date.now() / 1000);

/** A signed token; claims default to a valid corp token for svc-a, and `null` drops a claim. */
async function token(key: SigningKey | { alg: 'HS256'; kid: string; secret: Uint8Array }, claims: Record<string, unknown> = {}): Promise<string> {
  const payload = { iss: CORP, aud: 'flowgate', sub: 'svc-a', iat: now(), exp: now() + 300, ...claims };
  const kept = Object.fromEntries(Object.entries(payload).filter(([, v]) => v !== null)) as JWTPayload;
  const jwt = new SignJWT(kept).setProtectedHeader({ alg: key.alg, kid: key.kid });
  return jwt.sign('secret' in key ? key.secret : key.privateKey);
}

/** A JWKS endpoint on loopback whose keys a test can swap, counting the fetches. */
class JwksServer {
  keys: JWK[] = [];
  status = 200;
  fetches = 0;
  private readonly server: Server = createServer((_req, res) => {
    this.fetches += 1;
    res.writeHead(this.status, { 'content-type': 'application/json' });
    res.end(this.status === 200 ? JSON.stringify({ keys: this.keys }) : '{"error":"unavailable"}');
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks.json`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve, reject) => this.server.close((err) => (err ? reject(err) : resolve())));
  }
}

describe('Authorizer with JWTs', () => {
  let rs: SigningKey;
  let es: SigningKey;
  let ps: SigningKey;
  let impostor: SigningKey;
  let partnerKey: SigningKey;
  const partnerJwks = new JwksServer();
  const downJwks = new JwksServer();
  let authz: Authorizer;

  beforeAll(async () => {
    [rs, es, ps, partnerKey] = await Promise.all([signingKey('RS256', 'rs-1'), signingKey('ES256', 'es-1'), signingKey('PS256', 'ps-1'), signingKey('RS256', 'p-1')]);
    // Same kid as the real key: only the signature can tell them apart.
    impostor = await signingKey('RS256', 'rs-1');
    partnerJwks.keys = [partnerKey.jwk];
    downJwks.status = 503;
    const [partnerUri, downUri] = await Promise.all([partnerJwks.start(), downJwks.start()]);
    authz = new Authorizer(
      {
        jwtIssuers: jwtIssuers({
          jwt: [
            { name: 'corp', issuer: CORP, audiences: ['flowgate'], jwks: { keys: [rs.jwk, es.jwk, ps.jwk] }, algorithms: ['RS256', 'ES256'], clockSkew: '30s', rolesClaim: 'roles' },
            { name: 'partner', issuer: PARTNER, jwksUri: partnerUri, consumerClaim: 'client_id' },
            { name: 'ps-only', issuer: PS_ONLY, jwks: { keys: [ps.jwk] }, algorithms: ['PS256'] },
            { name: 'down', issuer: DOWN, jwksUri: downUri },
          ],
        }),
        models: [model('scoring', { access: { roles: ['scorer'] } }), model('open')],
        consumers: [
          consumer('svc-a', { roles: ['reader'], jwt: { issuer: 'corp', subject: 'svc-a' } }),
          consumer('partner-x', { roles: ['scorer'], jwt: { issuer: 'partner', subject: 'px-123' } }),
          consumer('ps-svc', { roles: ['scorer'], jwt: { issuer: 'ps-only', subject: 'svc-a' } }),
          consumer('down-svc', { roles: ['scorer'], jwt: { issuer: 'down', subject: 'svc-a' } }),
          consumer('keyed', { roles: ['scorer'], apiKeys: [{ id: 'k1', sha256: sha256Hex('fg_keyed_secret') }] }),
        ],
      },
      { remoteKeySets: { cooldownDuration: 0 } },
    );
  });

  afterAll(async () => {
    await Promise.all([partnerJwks.stop(), downJwks.stop()]);
  });

  const call = (jwt: string, modelName = 'scoring'): Promise<AuthzDecision> => authz.authorize({ model: modelName, headers: { authorization: `Bearer ${jwt}` } });

  it('allows a valid RS256 token, with the consumer roles plus those of the roles claim', async () => {
    const d = expectAllow(await call(await token(rs, { roles: ['scorer', 'reader', 7] })));
    expect(d.consumer).toBe('svc-a');
    expect(d.roles).toEqual(['reader', 'scorer']);
    expect(d.headersToSet).toEqual({ 'x-flowgate-consumer': 'svc-a' });
    expect(d.headersToRemove).toEqual(expect.arrayContaining(['authorization', 'x-api-key']));
  });

  it('grants access only through the roles it has: the consumer alone lacks scorer', async () => {
    const d = expectDeny(await call(await token(rs)), 403, 'forbidden');
    expect(d.consumer).toBe('svc-a');
  });

  it('allows a valid ES256 token', async () => {
    expect(expectAllow(await call(await token(es, { roles: ['scorer'] }))).consumer).toBe('svc-a');
  });

  it('answers 401 expired_token, with error="invalid_token", once exp is past beyond the clock skew', async () => {
    const d = expectDeny(await call(await token(rs, { roles: ['scorer'], exp: now() - 120 })), 401, 'expired_token');
    expect(d.headers['www-authenticate']).toBe('Bearer realm="flowgate", error="invalid_token"');
  });

  it('allows a token that expired within the clock skew, and refuses it with no skew', async () => {
    const recent = await token(rs, { roles: ['scorer'], exp: now() - 10 });
    expectAllow(await call(recent));
    const strict = new Authorizer({
      jwtIssuers: jwtIssuers({ jwt: [{ name: 'corp', issuer: CORP, audiences: ['flowgate'], jwks: { keys: [rs.jwk] }, clockSkew: '0s', rolesClaim: 'roles' }] }),
      models: [model('scoring', { access: { roles: ['scorer'] } })],
      consumers: [consumer('svc-a', { jwt: { issuer: 'corp', subject: 'svc-a' } })],
    });
    expectDeny(await strict.authorize({ model: 'scoring', headers: { authorization: `Bearer ${recent}` } }), 401, 'expired_token');
  });

  it('refuses a token signed by another key under the same kid', async () => {
    expect(expectDeny(await call(await token(impostor, { roles: ['scorer'] })), 401, 'invalid_credentials').message).toContain('signature');
  });

  it('refuses a token whose payload was altered after signing', async () => {
    const [header, , signature] = (await token(rs)).split('.');
    const forged = Buffer.from(JSON.stringify({ iss: CORP, aud: 'flowgate', sub: 'svc-a', roles: ['scorer'], exp: now() + 300 })).toString('base64url');
    expect(expectDeny(await call(`${header}.${forged}.${signature}`), 401, 'invalid_credentials').message).toContain('signature');
  });

  it('refuses algorithms outside the issuer allow-list (HS256, PS256), and accepts PS256 where allowed', async () => {
    const hs = await token({ alg: 'HS256', kid: 'rs-1', secret: new TextEncoder().encode('a-shared-secret-of-32-bytes-long') }, { roles: ['scorer'] });
    expect(expectDeny(await call(hs), 401, 'invalid_credentials').message).toContain('algorithm is not allowed');
    // corp publishes the PS256 key but allows only RS256 and ES256.
    expect(expectDeny(await call(await token(ps, { roles: ['scorer'] })), 401, 'invalid_credentials').message).toContain('algorithm is not allowed');
    expect(expectAllow(await call(await token(ps, { iss: PS_ONLY, aud: null }))).consumer).toBe('ps-svc');
  });

  it('refuses a wrong or missing audience', async () => {
    expect(expectDeny(await call(await token(rs, { roles: ['scorer'], aud: 'someone-else' })), 401, 'invalid_credentials').message).toContain('"aud" claim');
    expect(expectDeny(await call(await token(rs, { roles: ['scorer'], aud: null })), 401, 'invalid_credentials').message).toContain('"aud" claim');
    expectAllow(await call(await token(rs, { roles: ['scorer'], aud: ['someone-else', 'flowgate'] })));
  });

  it('refuses an unknown or missing issuer', async () => {
    for (const iss of ['https://evil.example.com/', null]) {
      expect(expectDeny(await call(await token(rs, { roles: ['scorer'], iss })), 401, 'invalid_credentials').message).toContain('issuer is not one');
    }
  });

  it('refuses a valid token whose subject names no consumer, even on an open model', async () => {
    expect(expectDeny(await call(await token(rs, { roles: ['scorer'], sub: 'stranger' })), 401, 'invalid_credentials').message).toContain('names no consumer');
    expectDeny(await call(await token(rs, { sub: 'stranger' }), 'open'), 401, 'invalid_credentials');
    expect(expectAllow(await call(await token(rs), 'open')).consumer).toBe('svc-a');
  });

  it('verifies against a remote JWKS over HTTP, fetching it once for many tokens', async () => {
    const before = partnerJwks.fetches;
    const first = expectAllow(await call(await token(partnerKey, { iss: PARTNER, aud: null, sub: 'ignored', client_id: 'px-123' })));
    expect(first.consumer).toBe('partner-x');
    expectAllow(await call(await token(partnerKey, { iss: PARTNER, aud: null, client_id: 'px-123' })));
    expect(partnerJwks.fetches - before).toBe(1);
    // The consumer claim of this issuer is client_id: sub alone does not identify anyone.
    expectDeny(await call(await token(partnerKey, { iss: PARTNER, aud: null, sub: 'px-123' })), 401, 'invalid_credentials');
  });

  it('picks up a rotated remote key when a token names a kid it does not know', async () => {
    const rotated = await signingKey('RS256', 'p-2');
    partnerJwks.keys = [partnerKey.jwk, rotated.jwk];
    expectAllow(await call(await token(rotated, { iss: PARTNER, aud: null, client_id: 'px-123' })));
  });

  it('refuses tokens of an issuer whose remote JWKS is unavailable', async () => {
    const d = expectDeny(await call(await token(rs, { iss: DOWN, aud: null })), 401, 'invalid_credentials');
    expect(d.message).toContain("issuer 'down'");
    expect(downJwks.fetches).toBeGreaterThan(0);
  });

  it('treats three dotted segments that are no JWT as an API key', async () => {
    expectDeny(await call('abc.def.ghi'), 401, 'invalid_credentials');
    const key = 'fg.keyed.secret';
    const keyed = new Authorizer({
      jwtIssuers: jwtIssuers(),
      models: [model('scoring', { access: { roles: ['scorer'] } })],
      consumers: [consumer('dotted', { roles: ['scorer'], apiKeys: [{ id: 'd', sha256: sha256Hex(key) }] })],
    });
    expect(expectAllow(await keyed.authorize({ model: 'scoring', headers: { authorization: `Bearer ${key}` } })).consumer).toBe('dotted');
  });

  it('never puts a presented token or key (or its digest) in a decision', async () => {
    const key = 'fg_keyed_secret';
    const secrets = [
      await token(rs, { roles: ['scorer'] }),
      await token(rs, { exp: now() - 1000 }),
      await token(impostor),
      await token(rs, { aud: 'x' }),
      await token(rs, { iss: 'https://evil.example.com/' }),
      await token(rs, { sub: 'stranger' }),
      await token(rs, { iss: DOWN, aud: null }),
      await token(ps),
      `${(await token(rs)).slice(0, -4)}AAAA`,
    ];
    const decisions: [string, AuthzDecision][] = [];
    for (const jwt of secrets) {
      decisions.push([jwt, await call(jwt)]);
      decisions.push([jwt, await authz.authorize({ model: 'scoring', headers: { authorization: `Bearer ${jwt}`, 'x-api-key': key } })]);
    }
    for (const presented of [key, 'fg_wrong_key', 'Basic Zm9vOmJhcg==']) {
      decisions.push([presented, await authz.authorize({ model: 'scoring', headers: { 'x-api-key': presented } })]);
      decisions.push([presented, await authz.authorize({ model: 'scoring', headers: { authorization: `Bearer ${presented}` } })]);
    }
    expect(decisions.filter(([, d]) => !d.allow).length).toBeGreaterThan(15);
    for (const [presented, d] of decisions) {
      const shown = JSON.stringify(d);
      const signature = presented.split('.').at(-1) ?? presented;
      for (const secret of [presented, signature, sha256Hex(presented)]) expect(shown).not.toContain(secret);
    }
  });
});
