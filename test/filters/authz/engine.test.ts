import { describe, expect, it } from 'vitest';
import { Authorizer } from '../../../filters/authz/engine.js';
import type { AuthzRequest } from '../../../filters/authz/engine.js';
import { metricsRegistry } from '../../../src/observability/metrics.js';
import { consumer, expectAllow, expectDeny, jwtIssuers, model, sha256Hex } from './fixtures.js';

const ACME_KEY = 'fg_acme_4f9c2e1d8b7a';
const GLOBEX_KEY = 'fg_globex_0a1b2c3d4e5f';
const BETA_KEY = 'fg_beta_77aa88bb99cc';

function authorizer(): Authorizer {
  return new Authorizer({
    jwtIssuers: jwtIssuers(),
    models: [
      model('open'),
      model('scoring', { access: { roles: ['scorer'], consumers: ['globex'] } }),
      model('fraud', {
        access: {
          roles: ['scorer'],
          versions: { challenger: { roles: ['beta-tester'] }, v7: { consumers: ['beta'] } },
        },
      }),
      model('unpinnable', { pinning: false, access: { roles: ['scorer'], versions: { challenger: { roles: ['beta-tester'] } } } }),
      model('any-consumer', { access: {} }),
    ],
    consumers: [
      consumer('acme', { roles: ['scorer'], apiKeys: [{ id: 'acme-1', sha256: sha256Hex(ACME_KEY) }] }),
      consumer('globex', { apiKeys: [{ id: 'gx-1', sha256: sha256Hex(GLOBEX_KEY) }] }),
      consumer('beta', { roles: ['scorer', 'beta-tester'], apiKeys: [{ id: 'beta-1', sha256: sha256Hex(BETA_KEY) }] }),
    ],
  });
}

function req(modelName: string, headers: Record<string, string> = {}, pins: Partial<AuthzRequest> = {}): AuthzRequest {
  return { model: modelName, headers, ...pins };
}

async function decisionCount(result: string, reason: string): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric('flowgate_filter_authz_decisions_total')?.get();
  return metric?.values.find((v) => v.labels.result === result && v.labels.reason === reason)?.value ?? 0;
}

describe('Authorizer with API keys', () => {
  const authz = authorizer();

  it('answers 401 missing_credentials with a bare Bearer challenge when no key is sent', async () => {
    const d = expectDeny(await authz.authorize(req('scoring')), 401, 'missing_credentials');
    expect(d.headers['www-authenticate']).toBe('Bearer realm="flowgate"');
    expect(d.headers['content-type']).toBe('application/json');
    expect(d.consumer).toBeUndefined();
  });

  it('answers 401 invalid_credentials for an unknown key, with error="invalid_token" when sent as a bearer', async () => {
    const bearer = expectDeny(await authz.authorize(req('scoring', { authorization: 'Bearer fg_wrong_key' })), 401, 'invalid_credentials');
    expect(bearer.headers['www-authenticate']).toBe('Bearer realm="flowgate", error="invalid_token"');
    const header = expectDeny(await authz.authorize(req('scoring', { 'x-api-key': 'fg_wrong_key' })), 401, 'invalid_credentials');
    expect(header.headers['www-authenticate']).toBe('Bearer realm="flowgate"');
  });

  it('answers 403 forbidden to a valid consumer that neither is listed nor holds a listed role', async () => {
    const d = expectDeny(await authz.authorize(req('fraud', { 'x-api-key': GLOBEX_KEY })), 403, 'forbidden');
    expect(d.consumer).toBe('globex');
    expect(d.headers['www-authenticate']).toBeUndefined();
    expect(d.message).toContain("consumer 'globex'");
  });

  it('allows a consumer by role and by name, naming it upstream and stripping every credential', async () => {
    const byRole = expectAllow(await authz.authorize(req('scoring', { 'x-api-key': ACME_KEY, 'x-flowgate-consumer': 'root' })));
    expect(byRole.consumer).toBe('acme');
    expect(byRole.roles).toEqual(['scorer']);
    expect(byRole.headersToSet).toEqual({ 'x-flowgate-consumer': 'acme' });
    expect(byRole.headersToRemove).toEqual(expect.arrayContaining(['authorization', 'x-api-key']));
    // The set value replaces the client's; removing it too could drop the set one, depending on Envoy's order.
    expect(byRole.headersToRemove).not.toContain('x-flowgate-consumer');
    const byName = expectAllow(await authz.authorize(req('scoring', { 'x-api-key': GLOBEX_KEY })));
    expect(byName.consumer).toBe('globex');
  });

  it('accepts the key as x-api-key, as a bearer, and as both when they agree', async () => {
    const forms: Record<string, string>[] = [{ 'x-api-key': ACME_KEY }, { authorization: `Bearer ${ACME_KEY}` }, { authorization: `bearer ${ACME_KEY}`, 'x-api-key': ACME_KEY }];
    for (const headers of forms) {
      expect(expectAllow(await authz.authorize(req('scoring', headers))).consumer).toBe('acme');
    }
  });

  it('refuses two credentials that disagree, even when each is valid', async () => {
    const d = await authz.authorize(req('scoring', { authorization: `Bearer ${ACME_KEY}`, 'x-api-key': GLOBEX_KEY }));
    expectDeny(d, 401, 'invalid_credentials');
  });

  it('refuses an authorization header that is not a bearer credential', async () => {
    expectDeny(await authz.authorize(req('scoring', { authorization: `Basic ${Buffer.from(`acme:${ACME_KEY}`).toString('base64')}` })), 401, 'invalid_credentials');
    expectDeny(await authz.authorize(req('scoring', { authorization: 'Bearer' })), 401, 'invalid_credentials');
  });

  it('treats empty credential headers as absent', async () => {
    expectDeny(await authz.authorize(req('scoring', { authorization: '', 'x-api-key': ' ' })), 401, 'missing_credentials');
  });

  it('lets anyone call a model without access, strips credentials and any client-sent consumer header', async () => {
    const d = expectAllow(await authz.authorize(req('open', { 'x-flowgate-consumer': 'acme' })));
    expect(d.consumer).toBeUndefined();
    expect(d.roles).toEqual([]);
    expect(d.headersToSet).toEqual({});
    expect(d.headersToRemove.sort()).toEqual(['authorization', 'x-api-key', 'x-flowgate-consumer']);
  });

  it('identifies the consumer on an open model when a valid key is sent, and refuses an invalid one', async () => {
    expect(expectAllow(await authz.authorize(req('open', { 'x-api-key': GLOBEX_KEY }))).headersToSet).toEqual({ 'x-flowgate-consumer': 'globex' });
    expectDeny(await authz.authorize(req('open', { 'x-api-key': 'fg_revoked' })), 401, 'invalid_credentials');
  });

  it('admits any authenticated consumer when access lists neither roles nor consumers', async () => {
    expect(expectAllow(await authz.authorize(req('any-consumer', { 'x-api-key': GLOBEX_KEY }))).consumer).toBe('globex');
    expectDeny(await authz.authorize(req('any-consumer')), 401, 'missing_credentials');
  });

  it('denies a model the policy does not name with 403 unknown_model', async () => {
    expectDeny(await authz.authorize(req('nope', { 'x-api-key': ACME_KEY })), 403, 'unknown_model');
  });

  it('counts decisions by result and reason', async () => {
    const allows = await decisionCount('allow', 'api_key');
    const missing = await decisionCount('deny', 'missing_credentials');
    await authz.authorize(req('scoring', { 'x-api-key': ACME_KEY }));
    await authz.authorize(req('scoring'));
    expect(await decisionCount('allow', 'api_key')).toBe(allows + 1);
    expect(await decisionCount('deny', 'missing_credentials')).toBe(missing + 1);
  });
});

describe('Authorizer version rules', () => {
  const authz = authorizer();
  const aliases: Record<string, string> = { challenger: '7', champion: '6' };
  const lookups: Partial<AuthzRequest> = {
    aliasesOfVersion: (v) => Object.keys(aliases).filter((a) => aliases[a] === v),
    versionOfAlias: (a) => aliases[a],
  };

  it('requires the alias rule as well as the model rule when an alias is pinned', async () => {
    expectAllow(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY })));
    expectAllow(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { pinnedAlias: 'champion' })));
    const d = expectDeny(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { pinnedAlias: 'challenger' })), 403, 'forbidden');
    expect(d.message).toContain("alias 'challenger'");
    expect(d.consumer).toBe('acme');
  });

  it('admits a pinned alias to a consumer holding the rule role', async () => {
    expect(expectAllow(await authz.authorize(req('fraud', { 'x-api-key': BETA_KEY }, { pinnedAlias: 'challenger' }))).consumer).toBe('beta');
  });

  it('still needs the model rule when the version rule admits', async () => {
    // globex would pass no rule here; beta passes both. A version rule is stricter, never a way in.
    expectDeny(await authz.authorize(req('fraud', { 'x-api-key': GLOBEX_KEY }, { pinnedVersion: '7' })), 403, 'forbidden');
  });

  it('applies version rules to version pins', async () => {
    expectDeny(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { pinnedVersion: '7' })), 403, 'forbidden');
    expectAllow(await authz.authorize(req('fraud', { 'x-api-key': BETA_KEY }, { pinnedVersion: '7' })));
    expectAllow(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { pinnedVersion: '6' })));
  });

  it('closes the alias/version bypass when the alias map is given', async () => {
    // The challenger rule reaches version 7 pinned by number, and the v7 rule reaches it pinned by alias.
    const byVersion = { ...lookups, pinnedVersion: '7' };
    expectDeny(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, byVersion)), 403, 'forbidden');
    const aliasRuleOnly = new Authorizer({
      jwtIssuers: jwtIssuers(),
      models: [model('m', { access: { roles: ['scorer'], versions: { challenger: { roles: ['beta-tester'] } } } })],
      consumers: [consumer('acme', { roles: ['scorer'], apiKeys: [{ id: 'a', sha256: sha256Hex(ACME_KEY) }] })],
    });
    expectAllow(await aliasRuleOnly.authorize(req('m', { 'x-api-key': ACME_KEY }, { pinnedVersion: '7' })));
    expectDeny(await aliasRuleOnly.authorize(req('m', { 'x-api-key': ACME_KEY }, byVersion)), 403, 'forbidden');
    expectAllow(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { ...lookups, pinnedAlias: 'champion' })));
    const champion7 = { aliasesOfVersion: () => ['champion'], versionOfAlias: () => '7' };
    expectDeny(await authz.authorize(req('fraud', { 'x-api-key': ACME_KEY }, { ...champion7, pinnedAlias: 'champion' })), 403, 'forbidden');
  });

  it('ignores pins, and their rules, on a model that does not allow pinning', async () => {
    expectAllow(await authz.authorize(req('unpinnable', { 'x-api-key': ACME_KEY }, { pinnedAlias: 'challenger' })));
  });
});
