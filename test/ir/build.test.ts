import { describe, expect, test } from 'vitest';
import { buildGatewayIR } from '../../src/ir/build.js';
import type { ModelIR } from '../../src/ir/types.js';
import { policy, registry, type VersionSpec } from './fixtures.js';

const MODEL = (traffic: string, upstream = 'addressTemplate: "127.0.0.1:80{version}"'): Record<string, string> => ({
  'models.yaml': `kind: Model\nname: fraud\nupstream: { ${upstream} }\ntraffic:\n${traffic}\n`,
});

const only = (models: readonly ModelIR[]): ModelIR => {
  expect(models).toHaveLength(1);
  return models[0] as ModelIR;
};

describe('buildGatewayIR', () => {
  test('stable and canary by alias split 90/10 with their clusters and addresses', () => {
    const p = policy(MODEL('  stable: { alias: champion }\n  canary: { alias: challenger, weight: 10 }'));
    const r = registry({ fraud: { versions: { '1': {}, '2': {} }, aliases: { champion: '1', challenger: '2' } } });
    const { ir, issues } = buildGatewayIR(p, r);
    expect(issues).toEqual([]);
    const m = only(ir.models);
    expect(m.live).toEqual([
      { version: '1', aliases: ['champion'], weight: 90, role: 'stable', cluster: 'model_fraud_v1', address: { host: '127.0.0.1', port: 801 } },
      { version: '2', aliases: ['challenger'], weight: 10, role: 'canary', cluster: 'model_fraud_v2', address: { host: '127.0.0.1', port: 802 } },
    ]);
    expect(m.pinnableAliases).toEqual({ champion: '1', challenger: '2' });
    expect(m.routes).toEqual([{ listener: 'public', host: '*', pathPrefix: '/models/fraud' }]);
    expect(ir.alerts).toEqual([]);
  });

  test('a canary that is not READY is never routed: the stable version takes 100% and an alert is raised', () => {
    const p = policy(MODEL('  stable: { alias: champion }\n  canary: { alias: challenger, weight: 30 }'));
    const r = registry({ fraud: { versions: { '1': {}, '2': { status: 'PENDING_REGISTRATION' } }, aliases: { champion: '1', challenger: '2' } } });
    const { ir } = buildGatewayIR(p, r);
    expect(only(ir.models).live.map((l) => [l.version, l.weight])).toEqual([['1', 100]]);
    expect(ir.alerts).toEqual([expect.objectContaining({ code: 'canary_unresolved', model: 'fraud' })]);
    expect(ir.alerts[0]?.message).toContain('PENDING_REGISTRATION');
  });

  test('stage selection takes the newest READY version in the stage', () => {
    const p = policy(MODEL('  stable: { stage: Production }'));
    const r = registry({ fraud: { versions: { '1': { stage: 'Production' }, '2': { stage: 'Production' }, '3': { stage: 'Production', status: 'FAILED_REGISTRATION' }, '4': { stage: 'Staging' } } } });
    expect(only(buildGatewayIR(p, r).ir.models).live.map((l) => l.version)).toEqual(['2']);
  });

  test('a stable version that stops resolving keeps the previous live versions and raises kept_last_live', () => {
    const p = policy(MODEL('  stable: { alias: champion }\n  canary: { alias: challenger, weight: 10 }'));
    const before = buildGatewayIR(p, registry({ fraud: { versions: { '1': {}, '2': {} }, aliases: { champion: '1', challenger: '2' } } })).ir;
    const broken = registry({ fraud: { versions: { '1': {}, '2': {} }, aliases: { challenger: '2' } } });
    const { ir } = buildGatewayIR(p, broken, before);
    const m = only(ir.models);
    expect(m.keptLastLive).toBe(true);
    expect(m.live).toEqual(only(before.models).live);
    expect(ir.alerts.map((a) => a.code)).toEqual(['kept_last_live']);
  });

  test('a model that never had a live version has none (its routes answer 503) and raises no_live_version', () => {
    const p = policy(MODEL('  stable: { alias: champion }'));
    const { ir } = buildGatewayIR(p, registry({ fraud: { versions: { '1': {} } } }));
    expect(only(ir.models).live).toEqual([]);
    expect(ir.alerts).toEqual([expect.objectContaining({ code: 'no_live_version' })]);
  });

  test('a version tag names the address; a version without the tag is not live', () => {
    const p = policy(MODEL('  stable: { version: "3" }\n  canary: { version: "4", weight: 50 }', 'versionTag: serving.address'));
    const r = registry({ fraud: { versions: { '3': { tags: { 'serving.address': 'fraud-v3.models.svc:8080' } }, '4': {} } } });
    const { ir } = buildGatewayIR(p, r);
    expect(only(ir.models).live).toEqual([expect.objectContaining({ version: '3', weight: 100, address: { host: 'fraud-v3.models.svc', port: 8080 } })]);
    expect(ir.alerts[0]?.message).toContain("no 'serving.address' tag");
  });

  test('the upstream guard decides per host and port: one host is refused on the admin port and allowed on another', () => {
    // The guard matches each distinct host once and then compares ports: a version on the same host as a
    // refused one is still live, and an IPv4-mapped spelling of loopback is refused on the admin port too.
    const p = policy(MODEL('  stable: { version: "1" }\n  canary: { version: "2", weight: 10 }\n  mirror: { version: "3", percent: 5 }', 'versionTag: serving.address'));
    const tags = (address: string): VersionSpec => ({ tags: { 'serving.address': address } });
    const r = registry({ fraud: { versions: { '1': tags('127.0.0.1:8001'), '2': tags('127.0.0.1:9901'), '3': tags('[::ffff:127.0.0.1]:9901') } } });
    const { ir } = buildGatewayIR(p, r);
    const m = only(ir.models);
    expect(m.live).toEqual([expect.objectContaining({ version: '1', weight: 100, address: { host: '127.0.0.1', port: 8001 } })]);
    expect(m.mirror).toBeUndefined();
    const refused = ir.alerts.filter((a) => a.code === 'address_refused').map((a) => a.message);
    expect(refused).toEqual([expect.stringContaining('version 2: upstream 127.0.0.1:9901 refused: Envoy\'s admin port'), expect.stringContaining('version 3: upstream [::ffff:127.0.0.1]:9901 refused: Envoy\'s admin port')]);
  });

  test('a registered model MLflow does not have is a policy issue at the line that names it', () => {
    const p = policy({ 'm.yaml': 'kind: Model\nname: fraud\nregisteredModel: fraud-v2\nupstream: { addressTemplate: "h:1" }\ntraffic:\n  stable: { alias: a }\n' });
    const { issues } = buildGatewayIR(p, registry({ other: { versions: { '1': {} } } }));
    expect(issues).toEqual([expect.objectContaining({ file: 'm.yaml', line: 3, path: 'registeredModel' })]);
    expect(issues[0]?.message).toContain("'fraud-v2' does not exist");
  });

  test('Gateway defaults fill settings the model does not set; the model wins where it does', () => {
    const p = policy({
      'gw.yaml': 'kind: Gateway\ndefaults:\n  timeout: 12s\n  loadBalancer: round_robin\n  healthCheck: { interval: 2s }\n',
      ...MODEL('  stable: { alias: champion }'),
    });
    const withTimeout = policy({ 'gw.yaml': 'kind: Gateway\ndefaults: { timeout: 12s }\n', 'm.yaml': 'kind: Model\nname: fraud\ntimeout: 3s\nupstream: { addressTemplate: "h:1" }\ntraffic: { stable: { alias: champion } }\n' });
    const r = registry({ fraud: { versions: { '1': {} }, aliases: { champion: '1' } } });
    const s = only(buildGatewayIR(p, r).ir.models).settings;
    expect(s).toMatchObject({ timeoutMs: 12_000, loadBalancer: 'round_robin', healthCheck: { path: '/ping', intervalMs: 2000 } });
    expect(only(buildGatewayIR(withTimeout, r).ir.models).settings.timeoutMs).toBe(3000);
  });
});

describe('llm.cache', () => {
  const files = (cache: string): Record<string, string> => ({
    'gateway.yaml': 'kind: Gateway\nlisteners: [{ name: public, address: 0.0.0.0, port: 10000 }]\nopenai: { listener: public }\n',
    'models.yaml': `kind: Model
name: primary
upstream: { addressTemplate: "127.0.0.1:81{version}" }
traffic: { stable: { version: 1 } }
llm: { fallback: [backup]${cache} }
---
kind: Model
name: backup
upstream: { addressTemplate: "127.0.0.1:82{version}" }
traffic: { stable: { version: 1 } }
llm: {}
`,
  });
  const r = registry({ primary: { versions: { '1': {} } }, backup: { versions: { '1': {} } } });
  const byName = (extra: string): Map<string, ModelIR> => new Map(buildGatewayIR(policy(files(extra)), r).ir.models.map((m) => [m.name, m]));

  test('defaults are decided in the IR; a cached model and the models it falls back to run the adapter', () => {
    const cached = byName(', cache: {}');
    expect(cached.get('primary')?.llm?.cache).toEqual({ ttlMs: 300_000, maxEntries: 1000, scope: 'consumer', store: 'memory', cacheNonDeterministic: false, chargeHits: false });
    expect(cached.get('primary')?.llm?.adapter).toBe(true);
    expect(cached.get('backup')?.llm?.adapter).toBe(true);
    expect(cached.get('backup')?.llm?.cache).toBeUndefined();
    const plain = byName('');
    expect(plain.get('primary')?.llm?.adapter).toBe(false);
    expect(plain.get('backup')?.llm?.adapter).toBe(false);
  });

  test('an unknown field or a bad scope is refused with its path', () => {
    expect(() => policy(files(', cache: { scope: everyone }'))).toThrow(/scope/);
    expect(() => policy(files(', cache: { ttl: 300 }'))).toThrow(/ttl/);
    expect(() => policy(files(', cache: { semantic: true }'))).toThrow(/semantic/);
  });
});

describe('LLM usage: pricing and GenAI metrics', () => {
  const files = (openai: string, llm: string): Record<string, string> => ({
    'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 0.0.0.0, port: 10000 }]\nopenai: { listener: public${openai} }\n`,
    'models.yaml': `kind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:81{version}" }\ntraffic: { stable: { version: 1 } }\nllm: ${llm}\n`,
  });
  const r = registry({ m: { versions: { '1': {} } } });
  const model = (openai: string, llm: string): ModelIR | undefined => buildGatewayIR(policy(files(openai, llm)), r).ir.models[0];

  test('GenAI metrics are on by default and make the routes read answers; off, a plain model reads nothing', () => {
    const on = model('', '{}');
    expect(on?.llm?.genAi).toEqual({ providerName: 'openai_compatible' });
    expect(on?.filters?.extProc).toEqual({ requestBody: true, responseBody: 'streamed' });
    const off = model(', genAiMetrics: false', '{}');
    expect(off?.llm?.genAi).toBeUndefined();
    expect(off?.filters?.extProc).toBeUndefined();
  });

  test('a price table reads answers even with GenAI metrics off; version prices are resolved in version order', () => {
    const priced = model(', genAiMetrics: false', '{ pricing: { inputPer1M: 3, outputPer1M: 15, currency: USD, versions: { "10": { inputPer1M: 1, outputPer1M: 2 }, "2": { inputPer1M: 0, outputPer1M: 0 } } } }');
    expect(priced?.filters?.extProc).toEqual({ requestBody: true, responseBody: 'streamed' });
    expect(priced?.llm?.pricing).toEqual({
      currency: 'USD',
      inputPer1M: 3,
      outputPer1M: 15,
      versions: [
        { version: '2', inputPer1M: 0, outputPer1M: 0 },
        { version: '10', inputPer1M: 1, outputPer1M: 2 },
      ],
    });
  });
});

describe('Gateway.rateLimits.via', () => {
  const models = `kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:80{version}" }
traffic: { stable: { version: "1" } }
rateLimits: [{ requests: 5, per: minute }]
---
kind: Model
name: guarded
upstream: { addressTemplate: "127.0.0.1:80{version}" }
traffic: { stable: { version: "1" } }
access: { consumers: [acme] }
`;
  const consumers = 'kind: Consumer\nname: acme\napiKeys: [{ id: k, sha256: abababababababababababababababababababababababababababababababab }]\n';
  const filtersOf = (gateway: string, consumer = consumers): Record<string, unknown> => {
    const p = policy({ 'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, port: 10000 }]\n${gateway}`, 'models.yaml': models, 'consumers.yaml': consumer });
    const { ir, issues } = buildGatewayIR(p, registry({ limited: { versions: { '1': {} } }, guarded: { versions: { '1': {} } } }));
    expect(issues).toEqual([]);
    return Object.fromEntries(ir.models.map((m) => [m.name, m.filters?.rateLimitFilter]));
  };

  test('envoy moves the limits of the models that have some to the rate-limit filter; check and absent leave them in Check', () => {
    expect(filtersOf('rateLimits: { via: envoy }\n')).toEqual({ limited: true, guarded: undefined });
    expect(filtersOf('rateLimits: { via: check }\n')).toEqual({ limited: undefined, guarded: undefined });
    expect(filtersOf('')).toEqual({ limited: undefined, guarded: undefined });
  });

  test('a Consumer limit counts as a limit of the models it applies to', () => {
    const limitedConsumer = `${consumers}rateLimits: [{ requests: 10, per: hour, model: guarded }]\n`;
    expect(filtersOf('rateLimits: { via: envoy }\n', limitedConsumer)).toEqual({ limited: true, guarded: true });
  });
});
