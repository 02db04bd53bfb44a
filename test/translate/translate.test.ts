import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { buildGatewayIR } from '../../src/ir/build.js';
import { toEnvoyJson } from '../../src/proto/json.js';
import { translateClusters } from '../../src/translate/clusters.js';
import { translateGateway } from '../../src/translate/index.js';
import { translateListeners } from '../../src/translate/listeners.js';
import { covers, translateRoutes } from '../../src/translate/routes.js';
import type { ConfigSourceMode } from '../../src/resources/config-source.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { expectGolden } from '../policy/golden.js';
import type { GatewayIR } from '../../src/ir/types.js';
import { formatIssues } from '../../src/policy/format.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { TypeUrl } from '../../src/resources/types.js';

/**
 * Golden files for every translator: each case's resources are encoded (which rejects any field Envoy's protos
 * do not have), decoded back and printed as Envoy YAML. `UPDATE_GOLDEN=1 npx vitest run test/translate`
 * rewrites them; the diff shows what a change does to the config every Envoy gets.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');

/** Encodes through a Snapshot (as serving does) and prints each resource as Envoy JSON. */
function render(inputs: ResourceInput[]): Record<string, unknown>[] {
  const snapshot = Snapshot.from(inputs);
  return inputs.map((i) => {
    const r = snapshot.get(i.typeUrl, i.name);
    if (!r) throw new Error(`missing ${i.name}`);
    return toEnvoyJson(i.typeUrl, r.body);
  });
}

/** One golden case: testdata/NAME/policy/ and registry.yaml in, expected*.yaml out. */
async function loadCase(name: string): Promise<GatewayIR> {
  const dir = join(TESTDATA, name);
  const load = await loadPolicyDir(join(dir, 'policy'));
  if (!load.ok) throw new Error(formatIssues(load.issues, join(dir, 'policy')));
  const { ir, issues } = buildGatewayIR(load.policy, await loadRegistryFile(join(dir, 'registry.yaml')));
  if (issues.length > 0) throw new Error(formatIssues(issues, join(dir, 'policy')));
  return ir;
}

function goldenYaml(ir: GatewayIR, mode: ConfigSourceMode): string {
  const doc = {
    clusters: render(translateClusters(ir, mode).filter((r) => r.typeUrl === TypeUrl.Cluster)),
    endpoints: render(translateClusters(ir, mode).filter((r) => r.typeUrl === TypeUrl.ClusterLoadAssignment)),
    listeners: render(translateListeners(ir, mode)),
    routes: render(translateRoutes(ir)),
  };
  return YAML.stringify(doc, { lineWidth: 0 });
}

const CASES = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

describe('translators (golden files: testdata/CASE/{policy/,registry.yaml} -> expected.yaml)', () => {
  test('there are golden cases', () => {
    expect(CASES).toEqual(['filters', 'mixed', 'tracing-sticky']);
  });
  test.each(CASES)('%s: clusters, endpoints, listeners and routes for ADS Envoys', async (name) => {
    expectGolden(join(TESTDATA, name, 'expected.yaml'), goldenYaml(await loadCase(name), 'ads'));
  });
  test.each(['grpc', 'delta-grpc'] as ConfigSourceMode[])('mixed, %s Envoys: RDS and EDS come from the per-type API', async (mode) => {
    expectGolden(join(TESTDATA, 'mixed', `expected-${mode}.yaml`), goldenYaml(await loadCase('mixed'), mode));
  });
});

const IR = await loadCase('mixed');
const FILTERED = await loadCase('filters');

describe('filter-service translation', () => {
  test('a model without access, limits, quotas or masking gets no filter settings', () => {
    const config = translateRoutes(FILTERED)[0]?.message as { virtual_hosts: { routes: { name: string; typed_per_filter_config?: unknown }[] }[] };
    const routes = config.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name.startsWith('plain:'));
    expect(routes.length).toBeGreaterThan(0);
    for (const r of routes) expect(r.typed_per_filter_config).toBeUndefined();
    const guarded = config.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name === 'guarded:split');
    for (const r of guarded) expect(Object.keys(r.typed_per_filter_config ?? {})).toEqual(['flowgate.authz']);
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
