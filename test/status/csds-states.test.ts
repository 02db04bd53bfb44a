import { describe, expect, test } from 'vitest';
import { resourceConfigs } from '../../src/status/csds.js';
import { matchesNode, UnsupportedMatcherError } from '../../src/status/node-matcher.js';
import { decodeMessage } from '../../src/proto/codec.js';
import type { _envoy_service_status_v3_ClientConfig_GenericXdsConfig as GenericXdsConfig } from '../../src/generated/envoy/service/status/v3/ClientConfig.js';
import type { NodeMatcher__Output } from '../../src/generated/envoy/type/matcher/v3/NodeMatcher.js';
import { DeltaStream } from '../../src/xds/stream/delta.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { SotwStream } from '../../src/xds/stream/sotw.js';
import type { StreamObserver } from '../../src/xds/stream/state.js';
import type { TypeStatus } from '../../src/xds/stream/status.js';
import { edsCluster, endpoints } from '../xds/resources.js';

/** The CSDS status of each resource through a stream's life, without a network (real Envoys: csds.test.ts). */

const observer: StreamObserver = { onPush: () => undefined, onAck: () => undefined, onNack: () => undefined };
const identity = (transport: 'sotw' | 'delta') => ({ id: 1, transport, ads: true, peer: 'test', controlPlaneId: 'test' });

function nonceOf(bytes: Uint8Array, delta: boolean): string {
  return decodeMessage<{ nonce: string }>(`envoy.service.discovery.v3.${delta ? 'Delta' : ''}DiscoveryResponse`, bytes).nonce;
}

const s1 = () => Snapshot.from([edsCluster('c0', 'ads'), edsCluster('c1', 'ads')]);
const s2 = () => Snapshot.from([edsCluster('c0', 'ads'), { ...edsCluster('c1', 'ads'), message: { name: 'c1', type: 'STATIC' } }]);

function statuses(st: TypeStatus | undefined): Record<string, GenericXdsConfig | undefined> {
  if (!st) throw new Error('no type state');
  const out: Record<string, GenericXdsConfig | undefined> = {};
  for (const g of resourceConfigs(st, true)) out[g.name ?? ''] = g;
  return out;
}

describe.each(['sotw', 'delta'] as const)('CSDS resource states (%s)', (transport) => {
  const delta = transport === 'delta';
  function stream() {
    const sent: string[] = [];
    const s = delta
      ? new DeltaStream(identity('delta'), observer, (b) => sent.push(nonceOf(b, true)))
      : new SotwStream(identity('sotw'), observer, (b) => sent.push(nonceOf(b, false)));
    s.node = { id: 'n', cluster: 'c', metadata: {}, userAgent: 'test' };
    const request = (nonce = '', error?: string): void => {
      const common = { type_url: TypeUrl.Cluster, response_nonce: nonce, node: null, error_detail: error ? { code: 3, message: error } : null };
      if (s instanceof DeltaStream) s.handleRequest({ ...common, resource_names_subscribe: [], resource_names_unsubscribe: [], initial_resource_versions: {} });
      else s.handleRequest({ ...common, resource_names: [], version_info: '' });
    };
    const cds = () => s.status().types.find((t) => t.typeUrl === TypeUrl.Cluster);
    return { s, sent, request, cds };
  }

  test('sent and unacknowledged: STALE; acknowledged: SYNCED; a rejected change: ERROR with the detail', () => {
    const { s, sent, request, cds } = stream();
    const first = s1();
    s.setSnapshot(first);
    request();
    let st = statuses(cds());
    expect([st.c0?.config_status, st.c0?.client_status, st.c1?.config_status]).toEqual(['STALE', 'REQUESTED', 'STALE']);

    request(sent.at(-1));
    st = statuses(cds());
    expect([st.c0?.config_status, st.c0?.client_status, st.c1?.config_status, st.c1?.client_status]).toEqual(['SYNCED', 'ACKED', 'SYNCED', 'ACKED']);
    expect(st.c1?.version_info).toBe(delta ? first.get(TypeUrl.Cluster, 'c1')?.version : first.typeVersion(TypeUrl.Cluster));
    expect(st.c1?.xds_config).toMatchObject({ type_url: TypeUrl.Cluster });

    const second = s2();
    s.setSnapshot(second);
    st = statuses(cds());
    expect([st.c0?.config_status, st.c1?.config_status, st.c1?.client_status]).toEqual(['SYNCED', 'STALE', 'ACKED']);

    request(sent.at(-1), 'c1: bad cluster');
    st = statuses(cds());
    expect([st.c0?.config_status, st.c1?.config_status, st.c1?.client_status]).toEqual(['SYNCED', 'ERROR', 'NACKED']);
    expect(st.c1?.error_state?.details).toBe('c1: bad cluster');
    expect(st.c1?.version_info).toBe(delta ? first.get(TypeUrl.Cluster, 'c1')?.version : first.typeVersion(TypeUrl.Cluster));
  });

  test('a name the snapshot lacks: NOT_SENT/DOES_NOT_EXIST', () => {
    const s = delta ? new DeltaStream(identity('delta'), observer, () => undefined) : new SotwStream(identity('sotw'), observer, () => undefined);
    s.node = { id: 'n', cluster: 'c', metadata: {}, userAgent: 'test' };
    const snap = Snapshot.from([endpoints('c0', [1])]);
    s.setSnapshot(snap);
    const common = { type_url: TypeUrl.ClusterLoadAssignment, response_nonce: '', node: null, error_detail: null };
    if (s instanceof DeltaStream) s.handleRequest({ ...common, resource_names_subscribe: ['missing'], resource_names_unsubscribe: [], initial_resource_versions: {} });
    else s.handleRequest({ ...common, resource_names: ['missing'], version_info: '' });
    const st = statuses(s.status().types[0]);
    expect([st.missing?.config_status, st.missing?.client_status]).toEqual(['NOT_SENT', 'DOES_NOT_EXIST']);
  });
});

describe('node matchers', () => {
  const m = (node_id: object | null, node_metadatas: unknown[] = []) => ({ node_id: node_id ? { ignore_case: false, ...node_id } : null, node_metadatas }) as unknown as NodeMatcher__Output;
  test('exact, prefix, suffix, contains, ignore_case; no node_id matches all; regex and metadata are refused', () => {
    expect(matchesNode(m({ exact: 'edge-1', match_pattern: 'exact' }), 'edge-1')).toBe(true);
    expect(matchesNode(m({ exact: 'edge-1', match_pattern: 'exact' }), 'edge-10')).toBe(false);
    expect(matchesNode(m({ prefix: 'edge-', match_pattern: 'prefix' }), 'edge-10')).toBe(true);
    expect(matchesNode(m({ suffix: '-1', match_pattern: 'suffix' }), 'edge-2')).toBe(false);
    expect(matchesNode(m({ contains: 'DG', match_pattern: 'contains', ignore_case: true }), 'edge-2')).toBe(true);
    expect(matchesNode(m(null), 'anything')).toBe(true);
    expect(() => matchesNode(m({ safe_regex: { regex: '.*' }, match_pattern: 'safe_regex' }), 'x')).toThrow(UnsupportedMatcherError);
    expect(() => matchesNode(m(null, [{}]), 'x')).toThrow(/node_metadatas/);
  });
});
