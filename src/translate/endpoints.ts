import type { GatewayIR } from '../ir/types.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { clusterTargets, lbEndpoints, memoised, usesEds, type ClusterTarget, type VersionMemo } from './clusters.js';
import { listChanges, mapChanged, recordChanges } from '../resources/window.js';
import { splitLoadAssignments } from './eds-split.js';

const endpointMemo: VersionMemo = new WeakMap();

/** The endpoints of an IR, made once per IR object (they do not depend on the xDS mode). */
const endpointsMemo = new WeakMap<GatewayIR, readonly ResourceInput[]>();

/** The ClusterLoadAssignment of every EDS cluster (model versions served at an IP address), named after it. */
export function translateEndpoints(ir: GatewayIR): ResourceInput[] {
  return [...endpointResources(ir)];
}

/** translateEndpoints, as the one list every mode of an IR shares (never to be changed). */
export function endpointResources(ir: GatewayIR): readonly ResourceInput[] {
  const known = endpointsMemo.get(ir);
  if (known) return known;
  const targets = clusterTargets(ir);
  const make = (t: ClusterTarget): ResourceInput | undefined =>
    usesEds(t.address)
      ? memoised(endpointMemo, t, '', () => ({ typeUrl: TypeUrl.ClusterLoadAssignment, name: t.cluster, message: { cluster_name: t.cluster, endpoints: [{ lb_endpoints: lbEndpoints(t) }] } }))
      : undefined;
  // A target that is the same object as last time (its model did not change) has the same endpoints.
  const changes = { removed: [] as (ResourceInput | undefined)[], added: [] as (ResourceInput | undefined)[] };
  const byTarget = last ? mapChanged(last.targets, last.byTarget, targets, make, changes) : targets.map(make);
  const split = splitLoadAssignments(ir);
  const out = [...byTarget.filter((r): r is ResourceInput => r !== undefined), ...split];
  // What changed from the last list is known here: handed to the snapshot and the consistency check (sharedChanges).
  const splitChanges = last ? listChanges(last.split, split, Infinity) : undefined;
  if (last && splitChanges) {
    const present = (r: ResourceInput | undefined): r is ResourceInput => r !== undefined;
    recordChanges(last.out, out, { removed: [...changes.removed.filter(present), ...splitChanges.removed], added: [...changes.added.filter(present), ...splitChanges.added] });
  }
  last = { targets, byTarget, split, out };
  endpointsMemo.set(ir, out);
  return out;
}

let last:
  | { readonly targets: readonly ClusterTarget[]; readonly byTarget: readonly (ResourceInput | undefined)[]; readonly split: readonly ResourceInput[]; readonly out: readonly ResourceInput[] }
  | undefined;
