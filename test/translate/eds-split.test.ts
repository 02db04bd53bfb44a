import { describe, expect, test } from 'vitest';
import type { GatewayIR, ModelIR } from '../../src/ir/types.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';
import { servedBySplit } from '../../src/translate/eds-split.js';
import { translateGateway } from '../../src/translate/index.js';
import { caseIR } from './cases.js';

/** Gateway.traffic.split: endpoints: what the goldens of case eds-split show, as properties. */

const IR = caseIR('eds-split');

const byType = (resources: readonly ResourceInput[], typeUrl: TypeUrl): Map<string, object> => new Map(resources.filter((r) => r.typeUrl === typeUrl).map((r) => [r.name, r.message]));

/** The IR with model `name` changed by `change` (a new object, as the IR builder makes for a changed model). */
function withModel(ir: GatewayIR, name: string, change: (m: ModelIR) => ModelIR): GatewayIR {
  return { ...ir, models: ir.models.map((m) => (m.name === name ? change(m) : m)) };
}

const model = (name: string): ModelIR => {
  const m = IR.models.find((x) => x.name === name);
  if (!m) throw new Error(`no model ${name}`);
  return m;
};

describe('the split carried by one EDS cluster per model', () => {
  const resources = translateGateway(IR, 'ads');
  const clusters = byType(resources, TypeUrl.Cluster);
  const endpoints = byType(resources, TypeUrl.ClusterLoadAssignment);
  const routes = JSON.stringify([...byType(resources, TypeUrl.RouteConfiguration).values()]);

  test('split models get one cluster and no cluster per live version; a mirror and DNS-named versions keep theirs', () => {
    expect(servedBySplit(IR, model('fraud'))).toBe(true);
    expect(servedBySplit(IR, model('search'))).toBe(false);
    expect([...clusters.keys()].filter((n) => n.startsWith('model_') || n.startsWith('split_')).sort()).toEqual(['model_fraud_v3', 'model_search_v4', 'model_search_v5', 'split_chat', 'split_fraud']);
    expect([...endpoints.keys()].sort()).toEqual(['model_fraud_v3', 'split_chat', 'split_fraud']);
    expect(routes).toContain('"cluster":"split_fraud"');
    expect(routes).toContain('"name":"model_search_v4","weight":{"value":50}');
    expect(routes).not.toMatch(/model_(fraud|chat)_v[12]\b/);
  });

  test('a weight change leaves the routes and the clusters as they were and changes one ClusterLoadAssignment', () => {
    const moved = withModel(IR, 'fraud', (m) => ({ ...m, live: m.live.map((l) => ({ ...l, weight: l.role === 'canary' ? 40 : 60 })) }));
    const after = translateGateway(moved, 'ads');
    expect(byType(after, TypeUrl.RouteConfiguration)).toEqual(byType(resources, TypeUrl.RouteConfiguration));
    expect(byType(after, TypeUrl.Cluster)).toEqual(clusters);
    const changed = [...byType(after, TypeUrl.ClusterLoadAssignment)].filter(([name, m]) => JSON.stringify(m) !== JSON.stringify(endpoints.get(name)));
    expect(changed.map(([name]) => name)).toEqual(['split_fraud']);
    expect(JSON.stringify(changed[0]?.[1])).toMatch(/"load_balancing_weight":\{"value":60\}.*"load_balancing_weight":\{"value":40\}/);
  });

  test('a live version at weight 0 is reachable by a pin only: in the endpoints, out of the default subset', () => {
    const zero = withModel(IR, 'fraud', (m) => ({ ...m, live: m.live.map((l) => ({ ...l, weight: l.role === 'canary' ? 0 : 100 })) }));
    const cla = JSON.stringify(byType(translateGateway(zero, 'ads'), TypeUrl.ClusterLoadAssignment).get('split_fraud'));
    expect(cla).toContain('"version":{"stringValue":"2"}');
    expect(cla.match(/"weighted"/g)?.length).toBe(1);
    expect(cla).toContain('"load_balancing_weight":{"value":1}');
  });

  test('sticky models hash the caller header with Maglev; the others balance by weighted round robin', () => {
    expect(clusters.get('split_chat')).toMatchObject({ lb_policy: 'MAGLEV', lb_subset_config: { fallback_policy: 'DEFAULT_SUBSET', subset_selectors: [{ keys: ['version'] }] } });
    expect(clusters.get('split_fraud')).toMatchObject({ lb_policy: 'ROUND_ROBIN' });
    expect(routes).toContain('"hash_policy":[{"header":{"header_name":"x-user-id"}}]');
  });

  test('the listener copies the route-version header into envoy.lb only while a split model is served', () => {
    const listeners = JSON.stringify([...byType(resources, TypeUrl.Listener).values()]);
    expect(listeners).toContain('flowgate.split-version');
    const { trafficSplit: _, ...routesMode } = IR;
    const off = translateGateway(routesMode, 'ads');
    expect(JSON.stringify(off.filter((r) => r.typeUrl === TypeUrl.Listener))).not.toContain('flowgate.split-version');
    expect(byType(off, TypeUrl.Cluster).has('split_fraud')).toBe(false);
    expect(byType(off, TypeUrl.Cluster).has('model_fraud_v1')).toBe(true);
  });

  test('LLM models, versions with their own body processing and rollouts with retries keep weighted clusters', () => {
    const fraud = model('fraud');
    const [first, ...rest] = fraud.live;
    if (!first) throw new Error('fraud has no live version');
    const processing = { protocol: 'mlflow' as const, validateInput: true, convert: false, signature: { status: 'none' as const } };
    expect(servedBySplit(IR, { ...fraud, live: [{ ...first, processing }, ...rest] })).toBe(false);
    expect(servedBySplit(IR, { ...fraud, llm: {} as NonNullable<ModelIR['llm']> })).toBe(false);
    expect(servedBySplit(IR, { ...fraud, live: [] })).toBe(false);
    // A rollout is judged per version: a retry that may move to another version would blur it.
    const rollout = {} as NonNullable<ModelIR['rollout']>;
    const retries = { attempts: 2, on: ['5xx'], perTryTimeoutMs: undefined };
    expect(servedBySplit(IR, { ...fraud, rollout, settings: { ...fraud.settings, retries } })).toBe(false);
    expect(servedBySplit(IR, { ...fraud, rollout, settings: { ...fraud.settings, retries: undefined } })).toBe(true);
    expect(servedBySplit(IR, fraud)).toBe(true);
  });
});
