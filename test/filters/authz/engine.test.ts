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
      model(
        'fraud',
        {
          access: {
            roles: ['scorer'],
            versions: { challenger: { roles: ['beta-tester'] }, v7: { consumers: ['beta'] } },
          },
        },
        { '6': ['champion'], '7': ['challenger'] },
      ),
      model('unpinnable', { pinning: false, access: { roles: ['scorer'], versions: { challenger: { roles: ['beta-tester'] } } } }, { '6': ['champion'], '7': ['challenger'] }),
      model('pinnable', {}, { '1': ['champion'], '2': ['challenger'] }),
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
    expect(d.headersToRemove.sort()).toEqual(['authorization', 'x-api-key', 'x-flowgate-consumer', 'x-flowgate-route-version']);
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
  const acme = { 'x-api-key': ACME_KEY };
  const beta = { 'x-api-key': BETA_KEY };
  const routed = (d: Awaited<ReturnType<Authorizer['authorize']>>): string | undefined => expectAllow(d).headersToSet['x-flowgate-route-version'];

  it('requires the alias rule as well as the model rule when an alias is pinned', async () => {
    expect(routed(await authz.authorize(req('fraud', { ...acme, 'x-model-alias': 'champion' })))).toBe('6');
    const d = expectDeny(await authz.authorize(req('fraud', { ...acme, 'x-model-alias': 'challenger' })), 403, 'forbidden');
    expect(d.message).toContain("alias 'challenger'");
    expect(d.consumer).toBe('acme');
  });

  it('admits a pinned alias to a consumer holding the rule role, and routes it there', async () => {
    const d = await authz.authorize(req('fraud', { ...beta, 'x-model-alias': 'challenger' }));
    expect(expectAllow(d).consumer).toBe('beta');
    expect(routed(d)).toBe('7');
  });

  it('still needs the model rule when the version rule admits', async () => {
    // globex would pass no rule here; beta passes both. A version rule is stricter, never a way in.
    expectDeny(await authz.authorize(req('fraud', { 'x-api-key': GLOBEX_KEY, 'x-model-version': '7' })), 403, 'forbidden');
  });

  it('applies version rules to version pins, and alias rules to the version an alias names', async () => {
    expectDeny(await authz.authorize(req('fraud', { ...acme, 'x-model-version': '7' })), 403, 'forbidden');
    expect(routed(await authz.authorize(req('fraud', { ...beta, 'x-model-version': '7' })))).toBe('7');
    expect(routed(await authz.authorize(req('fraud', { ...acme, 'x-model-version': '6' })))).toBe('6');
  });

  it('routes unpinned traffic only to the live versions the caller may use', async () => {
    // acme may not use the challenger (7): its unpinned requests go to the champion, by Envoy's internal header.
    expect(routed(await authz.authorize(req('fraud', acme)))).toBe('6');
    // beta may use both: the model's own split decides, and any route header the client sent is removed.
    const b = expectAllow(await authz.authorize(req('fraud', beta)));
    expect(b.headersToSet['x-flowgate-route-version']).toBeUndefined();
    expect(b.headersToRemove).toContain('x-flowgate-route-version');
  });

  it('refuses pins that do not name exactly one live version: repeated, comma-joined, junk, alias plus version', async () => {
    const ambiguous: Record<string, string>[] = [
      { 'x-model-version': '6,7' },
      { 'x-model-version': '7, 6' },
      { 'x-model-version': '6,junk' },
      { 'x-model-version': '6', 'x-model-alias': 'challenger' },
      { 'x-model-alias': 'champion,challenger' },
      { 'x-model-version': ',' },
    ];
    for (const pins of ambiguous) expectDeny(await authz.authorize(req('pinnable', pins)), 400, 'ambiguous_pin');
    // Repeats and both headers that name one version are one pin.
    for (const pins of [{ 'x-model-version': '2,2' }, { 'x-model-version': '2', 'x-model-alias': 'challenger' }] as Record<string, string>[]) {
      expect(routed(await authz.authorize(req('pinnable', pins)))).toBe('2');
    }
    // A protected model answers 401 before it says anything about pins.
    expectDeny(await authz.authorize(req('fraud', { 'x-model-version': '6,7' })), 401, 'missing_credentials');
    expectDeny(await authz.authorize(req('fraud', { ...acme, 'x-model-version': '7,7' })), 403, 'forbidden');
  });

  it('answers a pin of no live version with 404, listing only the versions the caller may use, after authentication', async () => {
    const d = expectDeny(await authz.authorize(req('fraud', { ...acme, 'x-model-version': '9' })), 404, 'version_not_live');
    expect(JSON.parse(d.body)).toMatchObject({ live_versions: ['6'], live_aliases: ['champion'] });
    expectDeny(await authz.authorize(req('fraud', { 'x-model-version': '9' })), 401, 'missing_credentials');
    expectDeny(await authz.authorize(req('pinnable', { 'x-model-alias': 'nope' })), 404, 'version_not_live');
  });

  it('ignores pins, and their rules, on a model that does not allow pinning', async () => {
    expect(routed(await authz.authorize(req('unpinnable', { ...acme, 'x-model-alias': 'challenger' })))).toBe('6');
    expect(routed(await authz.authorize(req('unpinnable', { ...beta, 'x-model-alias': 'challenger' })))).toBeUndefined();
  });
});
