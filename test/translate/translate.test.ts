import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { formatIssues } from '../../src/policy/format.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { runPipeline } from '../../src/pipeline/index.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { assertConsistent, InconsistentSnapshotError } from '../../src/resources/consistency.js';
import { XDS_CLUSTER } from '../../src/resources/config-source.js';
import { TypeUrl } from '../../src/resources/types.js';
import { translateGateway } from '../../src/translate/index.js';
import { translateClusters } from '../../src/translate/clusters.js';
import { covers, translateRoutes } from '../../src/translate/routes.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { caseIR } from './cases.js';

/** Properties of the translators that the goldens show but a reader should not have to check by eye. */

const IR = caseIR('mixed');
const FILTERED = caseIR('filters');
const IR_TESTDATA = join(import.meta.dirname, '..', 'ir', 'testdata');

describe('filter-service translation', () => {
  test('a model without access, limits, quotas or masking calls the filter service only for pinned requests', () => {
    const config = translateRoutes(FILTERED)[0]?.message as { virtual_hosts: { routes: { name: string; typed_per_filter_config?: unknown }[] }[] };
    const routes = config.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name.startsWith('plain:'));
    const pins = routes.filter((r) => r.name.startsWith('plain:pin-'));
    expect(pins.map((r) => r.name)).toEqual(['plain:pin-version', 'plain:pin-alias', 'plain:pin-version', 'plain:pin-alias']);
    for (const r of routes) expect(Object.keys(r.typed_per_filter_config ?? {})).toEqual(pins.includes(r) ? ['flowgate.authz'] : []);
    const guarded = config.virtual_hosts.flatMap((v) => v.routes).filter((r) => r.name === 'guarded:split');
    expect(guarded.length).toBeGreaterThan(0);
    for (const r of guarded) expect(Object.keys(r.typed_per_filter_config ?? {})).toEqual(['flowgate.authz']);
  });
});

describe('translator properties', () => {
  const routes = translateRoutes(IR).find((r) => r.name === 'public')?.message as { virtual_hosts: { domains: string[]; routes: { name: string }[] }[] };

  test('the weights of every split add up to 100 and each cluster sets x-flowgate-model-version', () => {
    const split = JSON.stringify(routes);
    expect(split).toContain('"x-flowgate-model-version"');
    const live = IR.models.filter((m) => m.live.length > 0);
    expect(live.length).toBeGreaterThan(0);
    for (const m of live) expect(m.live.reduce((s, l) => s + l.weight, 0)).toBe(100);
  });

  test("a more specific host gets its own virtual host that still serves the wildcard host's models", () => {
    expect(routes.virtual_hosts.map((v) => v.domains)).toEqual([['api.example.com'], ['*']]);
    for (const vh of routes.virtual_hosts) expect(vh.routes.map((r) => r.name)).toContain('fraud-detector:split');
    expect(routes.virtual_hosts.every((v) => v.routes.at(-1)?.name === 'no-route')).toBe(true);
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
});

describe('determinism', () => {
  /** The served snapshot version of a policy directory and a registry file. */
  async function version(policyDir: string, registryFile: string): Promise<string> {
    const load = await loadPolicyDir(policyDir);
    if (!load.ok) throw new Error(formatIssues(load.issues, policyDir));
    const out = runPipeline({ policy: load.policy, registry: await loadRegistryFile(registryFile) }, { modes: ['ads'] });
    return Snapshot.from(out.groups[0]?.resources ?? []).version;
  }

  test('two directories with the same meaning and a different layout serve the same version; a change of meaning does not', async () => {
    const source = join(IR_TESTDATA, 'mixed', 'policy');
    const registry = join(IR_TESTDATA, 'mixed', 'registry.yaml');
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-layout-'));
    try {
      // Every document in a file of its own, in a subdirectory, with its keys in reverse order and no comments.
      const docs = readdirSync(source).flatMap((f) => YAML.parseAllDocuments(readFileSync(join(source, f), 'utf8')).map((d) => d.toJS() as Record<string, unknown>));
      expect(docs.length).toBeGreaterThan(2);
      const write = (root: string, changeWeight: boolean): void => {
        mkdirSync(join(root, 'nested'), { recursive: true });
        docs.forEach((doc, i) => {
          let text = YAML.stringify(Object.fromEntries(Object.entries(doc).reverse()));
          if (changeWeight) text = text.replace('weight: 10', 'weight: 11');
          writeFileSync(join(root, 'nested', `doc-${docs.length - i}.yaml`), text);
        });
      };
      write(join(dir, 'same'), false);
      write(join(dir, 'changed'), true);
      const expected = await version(source, registry);
      expect(await version(join(dir, 'same'), registry)).toBe(expected);
      // One canary weight changed: a different version, so the check above can fail.
      expect(readFileSync(join(dir, 'changed', 'nested', `doc-${docs.length - docs.findIndex((d) => d.name === 'fraud-detector')}.yaml`), 'utf8')).toContain('weight: 11');
      expect(await version(join(dir, 'changed'), registry)).not.toBe(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('consistency check', () => {
  const resources = translateGateway(IR, 'ads');

  test('the translation of every case is consistent', () => {
    expect(() => assertConsistent(resources, { staticClusters: [XDS_CLUSTER] })).not.toThrow();
  });

  test('a missing route configuration, cluster or endpoint set is named, and nothing passes', () => {
    const drop = (type: TypeUrl, name: string) => resources.filter((r) => !(r.typeUrl === type && r.name === name));
    const cases: [ReturnType<typeof drop>, string][] = [
      [drop(TypeUrl.RouteConfiguration, 'public'), 'Listener public -> RouteConfiguration public'],
      [drop(TypeUrl.Cluster, 'model_fraud-detector_v2'), 'RouteConfiguration public -> Cluster model_fraud-detector_v2'],
      [drop(TypeUrl.ClusterLoadAssignment, 'model_fraud-detector_v1'), 'Cluster model_fraud-detector_v1 -> ClusterLoadAssignment model_fraud-detector_v1'],
    ];
    for (const [set, reference] of cases) {
      expect(set.length).toBe(resources.length - 1);
      let error: unknown;
      try {
        assertConsistent(set, { staticClusters: [XDS_CLUSTER] });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(InconsistentSnapshotError);
      expect((error as Error).message).toContain(reference);
    }
  });
});
