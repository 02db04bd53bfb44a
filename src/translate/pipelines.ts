import { Header } from '../contract/filter-wire.js';
import type { GatewayIR, PipelineIR } from '../ir/types.js';
import { duration } from '../proto/codec.js';
import type { ResourceInput } from '../resources/types.js';
import { grpcServiceCluster } from './grpc-cluster.js';
import { routeFilterConfig } from './http-filters/index.js';
import { upstreamTls } from './tls.js';

/**
 * A Pipeline's routes and the cluster of the pipeline service they go to. The route authorizes and limits
 * the caller as the pipeline (ext_authz and the rate limit by its name), keeps the caller's credential for
 * the service (it presents it again on every step, back through Envoy), and tells the service which
 * listener and local address the call came in on, so the steps go back to this same Envoy and listener.
 */

/** The HTTP/2 cluster of the pipeline service, beside the filter service. */
export const PIPELINES_CLUSTER = 'flowgate_pipelines';

const OVERWRITE = 'OVERWRITE_IF_EXISTS_OR_ADD';

/** The service's path for a pipeline: /pipelines/{name}. */
export function pipelineServicePath(name: string): string {
  return `/pipelines/${encodeURIComponent(name)}`;
}

/** The two routes (the exact prefix, and below it) of a pipeline on one listener. */
export function pipelineRoutes(p: PipelineIR, listener: string, prefix: string): object[] {
  const base = pipelineServicePath(p.name);
  const { perFilter, rateLimits } = routeFilterConfig(p, { pinRequested: false, api: 'flowgate' });
  const route = (match: object, rewrite: string, suffix: string): object => ({
    name: `${p.name}:pipeline${suffix}`,
    match,
    route: {
      cluster: PIPELINES_CLUSTER,
      prefix_rewrite: rewrite,
      timeout: duration(p.timeoutMs),
      ...(rateLimits && { rate_limits: rateLimits }),
    },
    request_headers_to_add: [
      // The local address the caller reached: where the steps come back to.
      { header: { key: Header.pipelineCallback, value: '%DOWNSTREAM_LOCAL_ADDRESS%' }, append_action: OVERWRITE },
      { header: { key: Header.pipelineListener, value: listener }, append_action: OVERWRITE },
    ],
    // The credential stays: the pipeline service presents it on each step. The routing headers do not.
    request_headers_to_remove: [Header.routeVersion, Header.stickyHash],
    ...(perFilter && { typed_per_filter_config: perFilter }),
  });
  return [route({ path: prefix || '/' }, base, ''), route({ prefix: `${prefix}/` }, `${base}/`, '-below')];
}

/** The pipeline service's cluster, when the IR has pipelines. */
export function pipelineCluster(ir: GatewayIR): ResourceInput[] {
  const ps = ir.pipelineService;
  if (!ps || (ir.pipelines ?? []).length === 0) return [];
  return [grpcServiceCluster(PIPELINES_CLUSTER, ps.address, ps.port, {}, ps.tls && upstreamTls(ps.tls, ps.address))];
}
