import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildGatewayIR } from '../../src/ir/build.js';
import { toEnvoyJson } from '../../src/proto/json.js';
import { translateClusters } from '../../src/translate/clusters.js';
import { translateGateway } from '../../src/translate/index.js';
import { translateListeners } from '../../src/translate/listeners.js';
import { covers, translateRoutes } from '../../src/translate/routes.js';
import type { ConfigSourceMode } from '../../src/xds/config-source.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { expectGolden } from '../policy/golden.js';
import { policy, registry } from './fixtures.js';

/**
 * Golden files for every translator: each case's resources are encoded (which rejects any field Envoy's protos
 * do not have), decoded back and printed as Envoy JSON. `UPDATE_GOLDEN=1 npx vitest run test/translate`
 * rewrites them; the diff shows what a change does to the config every Envoy gets.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');

/** Encodes through a Snapshot (as serving does) and prints each resource as Envoy JSON. */
function render(inputs: ResourceInput[]): string {
  const snapshot = Snapshot.from(inputs);
  const out = inputs.map((i) => {
    const r = snapshot.get(i.typeUrl, i.name);
    if (!r) throw new Error(`missing ${i.name}`);
    return toEnvoyJson(i.typeUrl, r.body);
  });
  return JSON.stringify(out, null, 2);
}

const GATEWAY = `kind: Gateway
listeners:
  - { name: public, address: 0.0.0.0, port: 10000 }
  - { name: internal, address: 127.0.0.1, port: 10001 }
defaults:
  timeout: 20s
  connectTimeout: 1s
  retries: { attempts: 2, perTryTimeout: 5s }
`;

const CANARY = `kind: Model
name: fraud-detector
routes:
  - listener: public
    pathPrefix: /models/fraud-detector
    hosts: ["*", api.example.com]
upstream: { addressTemplate: "127.0.0.1:90{version}" }
traffic:
  stable: { alias: champion }
  canary: { alias: challenger, weight: 10 }
healthCheck: { path: /ping, interval: 5s }
outlierDetection: { consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
circuitBreakers: { maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 3 }
loadBalancer: round_robin
`;

const OIP = `kind: Model
name: llm
registeredModel: chat-llm
protocol: oip
routes:
  - { listener: internal, pathPrefix: /v1/llm, hosts: ["*.example.com"] }
upstream: { versionTag: serving.address }
traffic:
  stable: { stage: Production }
  mirror: { stage: Staging, percent: 5 }
pinning: false
timeout: 0s
`;

const NOLIVE = `kind: Model
name: scorer
upstream: { addressTemplate: "scorer-v{version}.models.svc:8080" }
traffic:
  stable: { alias: champion }
`;

const REGISTRY = registry({
  'fraud-detector': { versions: { '1': {}, '2': {}, '3': { status: 'PENDING_REGISTRATION' } }, aliases: { champion: '1', challenger: '2' } },
  'chat-llm': {
    versions: {
      '4': { stage: 'Production', tags: { 'serving.address': 'llm-v4.models.svc:8000' } },
      '5': { stage: 'Staging', tags: { 'serving.address': '10.0.0.5:8000' } },
    },
  },
  scorer: { versions: { '1': {} } },
});

const IR = buildGatewayIR(policy({ 'gateway.yaml': GATEWAY, 'fraud.yaml': CANARY, 'llm.yaml': OIP, 'scorer.yaml': NOLIVE }), REGISTRY).ir;

describe('translators (golden files)', () => {
  test('clusters and endpoints: EDS for IP upstreams, STRICT_DNS for names, settings and metadata', () => {
    expectGolden(join(TESTDATA, 'clusters.json'), render(translateClusters(IR, 'ads')));
  });
  test('listeners: one HCM per policy listener, routes over RDS', () => {
    expectGolden(join(TESTDATA, 'listeners.json'), render(translateListeners(IR, 'ads')));
  });
  test('routes: pins, not-live pins, weighted split with the served-version header, 503 without a live version, 404 elsewhere', () => {
    expectGolden(join(TESTDATA, 'routes.json'), render(translateRoutes(IR)));
  });
  test.each(['grpc', 'delta-grpc'] as ConfigSourceMode[])('%s mode: RDS and EDS come from the per-type API', (mode) => {
    expectGolden(join(TESTDATA, `gateway-${mode}.json`), render([...translateClusters(IR, mode), ...translateListeners(IR, mode)]));
  });
});

const FILTERED = buildGatewayIR(
  policy({
    'gateway.yaml': 'kind: Gateway\nlisteners: [{ name: public, port: 10000 }]\nfilterService: { address: filters.flowgate.svc, port: 18081, timeout: 300ms }\n',
    'consumers.yaml': 'kind: Consumer\nname: acme\napiKeys: [{ id: k, sha256: ' + 'ab'.repeat(32) + ' }]\nrateLimits: [{ requests: 5, per: minute, model: guarded }]\n',
    'models.yaml': [
      'kind: Model\nname: guarded\nupstream: { addressTemplate: "127.0.0.1:9001" }\ntraffic: { stable: { version: "1" } }\naccess: { consumers: [acme] }\n',
      'kind: Model\nname: llm\nupstream: { addressTemplate: "127.0.0.1:9002" }\ntraffic: { stable: { version: "1" } }\ntokenQuotas: [{ tokens: 1000, per: hour }]\nmasking: { request: { patterns: [email] } }\nfailOpen: true\n',
      'kind: Model\nname: plain\nupstream: { addressTemplate: "127.0.0.1:9003" }\ntraffic: { stable: { version: "1" } }\n',
    ].join('---\n'),
  }),
  registry({ guarded: { versions: { '1': {} } }, llm: { versions: { '1': {} } }, plain: { versions: { '1': {} } } }),
).ir;

describe('filter-service translation (golden files)', () => {
  test('listener filters: fail-closed and fail-open variants, disabled unless a route enables them', () => {
    expectGolden(join(TESTDATA, 'filters-listeners.json'), render(translateListeners(FILTERED, 'ads')));
  });
  test('routes: per-route ext_authz and ext_proc settings and rate-limit actions only where the model needs them', () => {
    expectGolden(join(TESTDATA, 'filters-routes.json'), render(translateRoutes(FILTERED)));
  });
  test('the HTTP/2 filter-service cluster', () => {
    expectGolden(join(TESTDATA, 'filters-clusters.json'), render(translateClusters(FILTERED, 'ads').filter((c) => c.name === 'flowgate_filters')));
  });
  test('a model without access, limits, quotas or masking gets no filter settings', () => {
    const plain = JSON.stringify(translateRoutes(FILTERED)).includes('plain:split') ? (translateRoutes(FILTERED)[0]?.message as { virtual_hosts: { routes: { name: string; typed_per_filter_config?: unknown }[] }[] }) : undefined;
    const routes = plain?.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name.startsWith('plain:')) ?? [];
    expect(routes.length).toBeGreaterThan(0);
    for (const r of routes) expect(r.typed_per_filter_config).toBeUndefined();
  });
});

describe('translator properties', () => {
  const routes = translateRoutes(IR).find((r) => r.name === 'public')?.message as { virtual_hosts: { domains: string[]; routes: { name: string }[] }[] };

  test('the weights of every split add up to 100 and each cluster sets x-flowgate-model-version', () => {
    const split = JSON.stringify(routes);
    expect(split).toContain('"x-flowgate-model-version"');
    for (const m of IR.models) if (m.live.length > 0) expect(m.live.reduce((s, l) => s + l.weight, 0)).toBe(100);
  });

  test('a more specific host gets its own virtual host that still serves the wildcard host\'s models', () => {
    expect(routes.virtual_hosts.map((v) => v.domains)).toEqual([['api.example.com'], ['*']]);
    for (const vh of routes.virtual_hosts) expect(vh.routes.map((r) => r.name)).toContain('fraud-detector:split');
    expect(vh404(routes.virtual_hosts)).toBe(true);
  });

  test('a version that is not READY gets no cluster', () => {
    const names = translateClusters(IR, 'ads').map((c) => c.name);
    expect(names).toContain('model_fraud-detector_v2');
    expect(names).not.toContain('model_fraud-detector_v3');
  });

  test('host pattern coverage', () => {
    expect(covers('*', 'a.example.com')).toBe(true);
    expect(covers('*.example.com', 'a.example.com')).toBe(true);
    expect(covers('*.example.com', '*.b.example.com')).toBe(true);
    expect(covers('*.example.com', 'example.com')).toBe(false);
    expect(covers('a.example.com', '*')).toBe(false);
  });

  test('translation is deterministic: equal inputs give equal snapshot versions', () => {
    expect(Snapshot.from(translateGateway(IR, 'ads')).version).toBe(Snapshot.from(translateGateway(IR, 'ads')).version);
  });
});

function vh404(vhs: { routes: { name: string }[] }[]): boolean {
  return vhs.every((v) => v.routes.at(-1)?.name === 'no-route');
}
