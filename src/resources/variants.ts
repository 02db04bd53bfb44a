import { configSourceModeOf, type ConfigSourceMode } from './config-source.js';

/**
 * The snapshot variants a node can need: Envoys get resources whose config sources match their xDS mode;
 * proxyless gRPC clients get the proxyless resources (API listeners; src/translate/proxyless.ts).
 *
 * How a proxyless client is told from an Envoy, first rule that applies:
 * 1. node metadata `flowgate.client`: `proxyless` or `envoy` (a bootstrap may say it outright);
 * 2. node metadata `flowgate.config_source`, which only Flowgate's Envoy bootstraps write: an Envoy;
 * 3. the node's user agent name: gRPC's xDS clients report `gRPC Go`, `gRPC Java`, `gRPC Node Pure JS`,
 *    `gRPC C-core`..., Envoy reports `envoy`: a name starting with "gRPC" is a proxyless client;
 * 4. anything else is an Envoy (in ADS mode unless its metadata says otherwise).
 */

export const PROXYLESS_VARIANT = 'proxyless';

export type SnapshotVariant = ConfigSourceMode | typeof PROXYLESS_VARIANT;

/** What the variant rule reads of a node. */
export interface NodeIdentity {
  readonly metadata: Readonly<Record<string, unknown>>;
  /** user_agent_name, possibly followed by `/version`. */
  readonly userAgent: string;
}

/** Whether a node is a proxyless gRPC client (rules above). */
export function isProxylessClient(node: NodeIdentity): boolean {
  const flowgate = (node.metadata.flowgate ?? {}) as Record<string, unknown>;
  if (flowgate.client === 'proxyless') return true;
  if (flowgate.client === 'envoy' || flowgate.config_source !== undefined) return false;
  return /^grpc[\s-]/i.test(node.userAgent);
}

/** The snapshot variant a node needs. */
export function snapshotVariantOf(node: NodeIdentity): SnapshotVariant {
  return isProxylessClient(node) ? PROXYLESS_VARIANT : configSourceModeOf(node.metadata);
}
