import type { GatewayIR } from '../ir/types.js';
import type { ConfigSourceMode } from '../resources/config-source.js';
import type { ResourceInput } from '../resources/types.js';
import { translateClusters } from './clusters.js';
import { translateEndpoints } from './endpoints.js';
import { filterPolicyOf, filterPolicyResource } from './filter-policy.js';
import { translateListeners } from './listeners.js';
import { translateRoutes } from './routes.js';

/**
 * Every resource of the IR for Envoys subscribed in `mode` (which decides the RDS/EDS config sources):
 * clusters, endpoints, listeners, routes and the FilterPolicy. Pure and deterministic.
 */
export function translateGateway(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  return [...translateClusters(ir, mode), ...translateEndpoints(ir), ...translateListeners(ir, mode), ...translateRoutes(ir), filterPolicyResource(filterPolicyOf(ir))];
}
