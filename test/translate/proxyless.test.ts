import { describe, expect, test } from 'vitest';
import type { GatewayIR, ModelIR } from '../../src/ir/types.js';
import { danglingReferences } from '../../src/resources/consistency.js';
import { TypeUrl } from '../../src/resources/types.js';
import { isProxylessClient, snapshotVariantOf } from '../../src/resources/variants.js';
import { translateProxyless } from '../../src/translate/proxyless.js';
import { caseIR } from './cases.js';

/** The proxyless translation's rules beyond the golden case, and how a proxyless client is recognised. */

const golden = (): GatewayIR => caseIR('proxyless-grpc');

function withModel(ir: GatewayIR, name: string, change: (m: ModelIR) => ModelIR): GatewayIR {
  return { ...ir, models: ir.models.map((m) => (m.name === name ? change(m) : m)) };
}

describe('proxyless translation', () => {
  test('only proxyless models are translated, and the set is consistent', () => {
    const out = translateProxyless(golden());
    expect(out.filter((r) => r.typeUrl === TypeUrl.Listener).map((r) => r.name)).toEqual(['churn.models.internal:50051', 'fraud-detector']);
    expect(out.some((r) => r.name.includes('scorer'))).toBe(false);
    expect(danglingReferences(out)).toEqual([]);
  });

  test('a version at weight 0 keeps its cluster but is not in the split; several positive weights are a weighted split', () => {
    const routes = (ir: GatewayIR, target: string): string => JSON.stringify(translateProxyless(ir).find((r) => r.typeUrl === TypeUrl.RouteConfiguration && r.name === target)?.message);
    expect(routes(golden(), 'churn.models.internal:50051')).not.toContain('model_churn_v2');
    expect(translateProxyless(golden()).some((r) => r.typeUrl === TypeUrl.Cluster && r.name === 'model_churn_v2')).toBe(true);
    const shifted = withModel(golden(), 'churn', (m) => ({ ...m, live: m.live.map((l) => ({ ...l, weight: l.role === 'stable' ? 60 : 40 })) }));
    expect(routes(shifted, 'churn.models.internal:50051')).toContain('"weighted_clusters":{"clusters":[{"name":"model_churn_v1","weight":{"value":60}},{"name":"model_churn_v2","weight":{"value":40}}]}');
  });

  test('a model with no live version gets no listener, so its clients see the target as missing', () => {
    const none = withModel(golden(), 'churn', (m) => ({ ...m, live: [], pinnableAliases: {} }));
    expect(translateProxyless(none).some((r) => r.name.startsWith('churn') || r.name.startsWith('model_churn'))).toBe(false);
  });

  test('every endpoint has a locality with a weight (grpc-go never becomes READY without one)', () => {
    const localities = translateProxyless(golden())
      .filter((r) => r.typeUrl === TypeUrl.ClusterLoadAssignment)
      .flatMap((r) => (r.message as { endpoints: { locality?: unknown; load_balancing_weight?: { value: number } }[] }).endpoints);
    expect(localities.length).toBe(3);
    for (const l of localities) expect([l.locality, l.load_balancing_weight?.value]).toEqual([{ region: 'flowgate', zone: 'default' }, 1]);
  });
});

describe('proxyless client recognition', () => {
  test('by user agent, with metadata taking precedence', () => {
    const node = (userAgent: string, flowgate?: Record<string, unknown>) => ({ userAgent, metadata: flowgate ? { flowgate } : {} });
    expect(snapshotVariantOf(node('gRPC Go/1.79.1'))).toBe('proxyless');
    expect(snapshotVariantOf(node('gRPC Node Pure JS/1.14.1'))).toBe('proxyless');
    expect(snapshotVariantOf(node('gRPC Java/1.70.0'))).toBe('proxyless');
    expect(snapshotVariantOf(node('envoy/1.36.2'))).toBe('ads');
    expect(snapshotVariantOf(node('envoy/1.36.2', { config_source: 'delta-grpc' }))).toBe('delta-grpc');
    expect(snapshotVariantOf(node('unknown'))).toBe('ads');
    expect(isProxylessClient(node('my-client', { client: 'proxyless' }))).toBe(true);
    expect(isProxylessClient(node('gRPC Go/1.79.1', { client: 'envoy' }))).toBe(false);
    // A Flowgate Envoy bootstrap's config_source marks an Envoy, whatever it calls itself.
    expect(isProxylessClient(node('gRPC-ish', { config_source: 'ads' }))).toBe(false);
    expect(isProxylessClient(node('grpcurl/1.9'))).toBe(false);
  });
});
