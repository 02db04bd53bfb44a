import type { GatewayIR } from '../ir/types.js';
import type { ConfigSourceMode } from '../resources/config-source.js';
import type { ResourceInput } from '../xds/snapshot.js';
import { translateClusters } from './clusters.js';
import { translateListeners } from './listeners.js';
import { translateRoutes } from './routes.js';

/** Every Envoy resource of the IR for Envoys subscribed in `mode` (which decides the RDS/EDS config sources). */
export function translateGateway(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  return [...translateClusters(ir, mode), ...translateListeners(ir, mode), ...translateRoutes(ir)];
}
