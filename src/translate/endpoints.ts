import type { GatewayIR } from '../ir/types.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { clusterTargets, lbEndpoints, memoised, usesEds, type VersionMemo } from './clusters.js';
import { splitLoadAssignments } from './eds-split.js';

const endpointMemo: VersionMemo = new WeakMap();

/** The ClusterLoadAssignment of every EDS cluster (model versions served at an IP address), named after it. */
export function translateEndpoints(ir: GatewayIR): ResourceInput[] {
  const versions = clusterTargets(ir)
    .filter((t) => usesEds(t.address))
    .map((t) =>
      memoised(endpointMemo, t, '', () => ({ typeUrl: TypeUrl.ClusterLoadAssignment, name: t.cluster, message: { cluster_name: t.cluster, endpoints: [{ lb_endpoints: lbEndpoints(t) }] } })),
    );
  return [...versions, ...splitLoadAssignments(ir)];
}
