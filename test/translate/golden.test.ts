import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { toEnvoyJson } from '../../src/proto/json.js';
import type { ConfigSourceMode } from '../../src/resources/config-source.js';
import { XDS_CLUSTER } from '../../src/resources/config-source.js';
import { danglingReferences } from '../../src/resources/consistency.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';
import { translateGateway } from '../../src/translate/index.js';
import { hasProxylessTargets, translateProxyless } from '../../src/translate/proxyless.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { expectGolden, expectNoStaleGoldens } from '../harness/golden.js';
import { CASES, TESTDATA, caseIR, caseModes } from './cases.js';

/**
 * Translator goldens: testdata/CASE/ir.yaml in, one file per resource type out (clusters, endpoints,
 * listeners, routes, filter-policy; `MODE.TYPE.yaml` for the other xDS modes a case lists in modes.yaml).
 * Every resource is encoded through a Snapshot, which rejects any field Envoy's protos lack, and decoded back
 * as Envoy YAML. `UPDATE_GOLDEN=1 npx vitest run test/ir test/translate` rewrites them and removes outputs no
 * case produces; the diff shows what a change does to every Envoy.
 */

const FILES: Readonly<Record<TypeUrl, string>> = {
  [TypeUrl.Cluster]: 'clusters',
  [TypeUrl.ClusterLoadAssignment]: 'endpoints',
  [TypeUrl.Listener]: 'listeners',
  [TypeUrl.RouteConfiguration]: 'routes',
  [TypeUrl.FilterPolicy]: 'filter-policy',
};

/** The resources of one type as Envoy YAML (the filter policy's JSON shown as YAML too). */
function render(snapshot: Snapshot, typeUrl: TypeUrl): string {
  const docs = [...snapshot.resources(typeUrl).values()].map((r) => {
    const json = toEnvoyJson(typeUrl, r.body);
    return typeUrl === TypeUrl.FilterPolicy ? { ...json, policy_json: JSON.parse(String(json.policy_json)) as unknown } : json;
  });
  return YAML.stringify(docs, { lineWidth: 0 });
}

function renderCase(name: string, mode: ConfigSourceMode): { inputs: ResourceInput[]; files: Map<string, string> } {
  const inputs = translateGateway(caseIR(name), mode);
  const snapshot = Snapshot.from(inputs);
  const files = new Map<string, string>();
  for (const typeUrl of Object.keys(FILES) as TypeUrl[]) {
    // Other modes differ only where config sources appear: the clusters (EDS) and the listeners (RDS).
    if (mode !== 'ads' && typeUrl !== TypeUrl.Cluster && typeUrl !== TypeUrl.Listener) continue;
    files.set(`${mode === 'ads' ? '' : `${mode}.`}${FILES[typeUrl]}.yaml`, render(snapshot, typeUrl));
  }
  return { inputs, files };
}

describe('translator goldens (testdata/CASE/ir.yaml -> one file per resource type)', () => {
  test('there are at least 12 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(12);
  });

  test.each(CASES)('%s', (name) => {
    const produced = new Set<string>(['ir.yaml', 'modes.yaml']);
    // A case with proxyless targets also shows what proxyless gRPC clients get: proxyless.TYPE.yaml.
    if (hasProxylessTargets(caseIR(name))) {
      const inputs = translateProxyless(caseIR(name));
      expect(danglingReferences(inputs)).toEqual([]);
      const snapshot = Snapshot.from(inputs);
      for (const typeUrl of [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration]) {
        const file = `proxyless.${FILES[typeUrl]}.yaml`;
        expectGolden(join(TESTDATA, name, file), render(snapshot, typeUrl));
        produced.add(file);
      }
    }
    for (const mode of caseModes(name)) {
      const { inputs, files } = renderCase(name, mode);
      expect(danglingReferences(inputs, { staticClusters: [XDS_CLUSTER] })).toEqual([]);
      for (const [file, text] of files) {
        expectGolden(join(TESTDATA, name, file), text);
        produced.add(file);
      }
    }
    expectNoStaleGoldens(join(TESTDATA, name), /\.yaml$/, produced);
  });
});
