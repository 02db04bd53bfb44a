import type { GatewayIR } from '../ir/types.js';
import type { ConfigSourceMode } from '../resources/config-source.js';
import type { ResourceInput } from '../resources/types.js';
import { translateClusters } from './clusters.js';
import { endpointResources } from './endpoints.js';
import { filterPolicyOf, filterPolicyResource } from './filter-policy.js';
import { translateListeners } from './listeners.js';
import { routeResources } from './routes.js';
import { joined, withSegments } from '../resources/segments.js';

/** The FilterPolicy resource of an IR as a one-element list, once per IR (every mode has the same). */
const filterPolicyLists = new WeakMap<GatewayIR, readonly ResourceInput[]>();

function filterPolicyList(ir: GatewayIR): readonly ResourceInput[] {
  let list = filterPolicyLists.get(ir);
  if (!list) {
    list = [filterPolicyResource(filterPolicyOf(ir))];
    filterPolicyLists.set(ir, list);
  }
  return list;
}

/**
 * Every resource of the IR for Envoys subscribed in `mode` (which decides the RDS/EDS config sources):
 * clusters, endpoints, listeners, routes and the FilterPolicy. Pure and deterministic. The list is recorded
 * as its per-type lists (src/resources/segments.ts), the same list objects for every mode where the type
 * does not depend on the mode: the snapshot and the consistency check compare them with the last ones per
 * type, once per pair of lists, instead of walking 40,000 resources per mode.
 */
export function translateGateway(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  const byType = [translateClusters(ir, mode), endpointResources(ir), translateListeners(ir, mode), routeResources(ir), filterPolicyList(ir)];
  return withSegments(joined(byType), byType);
}
