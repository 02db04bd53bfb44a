import type { ClientResourceStatus } from '../generated/envoy/admin/v3/ClientResourceStatus.js';
import type { ClientConfig, _envoy_service_status_v3_ClientConfig_GenericXdsConfig as GenericXdsConfig } from '../generated/envoy/service/status/v3/ClientConfig.js';
import type { ClientStatusRequest__Output } from '../generated/envoy/service/status/v3/ClientStatusRequest.js';
import type { ConfigStatus } from '../generated/envoy/service/status/v3/ConfigStatus.js';
import type { Node } from '../generated/envoy/config/core/v3/Node.js';
import type { Timestamp } from '../generated/google/protobuf/Timestamp.js';
import { struct } from '../proto/codec.js';
import type { NodeInfo } from '../xds/cache.js';
import type { XdsServer } from '../xds/server.js';
import type { XdsResource } from '../xds/snapshot.js';
import type { StreamStatus, TypeStatus } from '../xds/stream/status.js';
import { checkMatcher, matchesNode } from './node-matcher.js';

/**
 * Client status (CSDS) from the xDS server's own bookkeeping: for every connected node, per resource it
 * subscribes to, holds or should hold, the version it acknowledged, whether that is what the control plane
 * wants it to have, and Envoy's error detail when it rejected the update.
 *
 *   SYNCED/ACKED       the client acknowledged exactly the resource its group's snapshot has
 *   STALE              a response changing it was sent and is not acknowledged yet (or its removal is in flight)
 *   ERROR/NACKED       the client rejected the update that changed it (error_state: Envoy's detail)
 *   NOT_SENT           the snapshot has a version the client has not been sent yet (ordering, or never asked)
 *   NOT_SENT/DOES_NOT_EXIST  the client asked for a name the snapshot does not have
 */

/** What a CSDS request selects: node matchers (any may match; none: every node) and whether to omit configs. */
export type ClientStatusQuery = Pick<ClientStatusRequest__Output, 'node_matchers' | 'exclude_resource_contents'>;

/**
 * The ClientConfig of every connected node the query matches, one per node id, sorted by node id. Throws
 * UnsupportedMatcherError for a matcher it cannot evaluate.
 */
export function clientConfigs(xds: XdsServer, query: ClientStatusQuery): ClientConfig[] {
  query.node_matchers.forEach(checkMatcher);
  const byNode = new Map<string, StreamStatus[]>();
  for (const stream of xds.streamStatuses()) {
    if (!stream.node) continue;
    const list = byNode.get(stream.node.id) ?? [];
    list.push(stream);
    byNode.set(stream.node.id, list);
  }
  const out: ClientConfig[] = [];
  for (const [id, streams] of [...byNode].sort(([a], [b]) => a.localeCompare(b))) {
    if (query.node_matchers.length > 0 && !query.node_matchers.some((m) => matchesNode(m, id))) continue;
    // A node can briefly have an old and a new stream (reconnect): per type, the newest stream wins.
    const newestFirst = [...streams].sort((a, b) => b.id - a.id);
    const byType = new Map<string, GenericXdsConfig[]>();
    for (const stream of newestFirst) {
      for (const st of stream.types) {
        if (byType.has(st.typeUrl)) continue;
        byType.set(st.typeUrl, resourceConfigs(st, !query.exclude_resource_contents));
      }
    }
    const newest = newestFirst[0];
    if (!newest?.node) continue;
    out.push({ node: toNode(newest.node), generic_xds_configs: [...byType.values()].flat() });
  }
  return out;
}

/** The per-resource status of one type on one stream. */
export function resourceConfigs(st: TypeStatus, withContents: boolean): GenericXdsConfig[] {
  const current = st.wants;
  const acked = st.acked;
  const names = new Set<string>([...(st.wildcard ? current.keys() : []), ...st.names, ...acked.keys()]);
  const pending = st.pending;
  const nackedLast = st.lastNack !== null && (st.lastAck === null || st.lastNack.at >= st.lastAck.at);
  const out: GenericXdsConfig[] = [];
  for (const name of [...names].sort()) {
    const want = current.get(name);
    const ack = acked.get(name);
    const sent = pending?.sent.get(name);
    const versionInfo = ack ? st.ackedVersion || ack.version : '';
    const base = {
      type_url: st.typeUrl,
      name,
      version_info: versionInfo,
      ...(ack && withContents && ack.resource ? { xds_config: anyOf(ack.resource) } : {}),
      ...(ack && st.lastAck ? { last_updated: timestamp(st.lastAck.at) } : {}),
    };
    const status = (config_status: ConfigStatus, client_status: ClientResourceStatus): GenericXdsConfig => ({ ...base, config_status, client_status });
    if (ack && want && ack.version === want.version) {
      out.push(status('SYNCED', 'ACKED'));
    } else if (sent && sent.version !== ack?.version) {
      out.push(status('STALE', ack ? 'ACKED' : 'REQUESTED'));
    } else if (want && nackedLast && st.lastNack) {
      out.push({
        ...status('ERROR', 'NACKED'),
        error_state: {
          details: st.lastNack.detail,
          version_info: st.lastNack.version,
          last_update_attempt: timestamp(st.lastNack.at),
          ...(withContents ? { failed_configuration: anyOf(want) } : {}),
        },
      });
    } else if (want) {
      out.push(status('NOT_SENT', ack ? 'ACKED' : 'REQUESTED'));
    } else if (ack) {
      // The snapshot dropped it and the client still holds it: its removal is in flight or still to come.
      const removalSent = pending?.removing.has(name) === true;
      out.push(status(removalSent ? 'STALE' : 'NOT_SENT', 'ACKED'));
    } else {
      out.push(status('NOT_SENT', 'DOES_NOT_EXIST'));
    }
  }
  return out;
}

function anyOf(r: XdsResource): { type_url: string; value: Uint8Array } {
  return { type_url: r.typeUrl, value: r.body };
}

function timestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

function toNode(node: NodeInfo): Node {
  const slash = node.userAgent.indexOf('/');
  return {
    id: node.id,
    cluster: node.cluster,
    metadata: struct(node.metadata),
    user_agent_name: slash < 0 ? node.userAgent : node.userAgent.slice(0, slash),
    user_agent_version: slash < 0 ? '' : node.userAgent.slice(slash + 1),
    ...(node.locality ? { locality: { ...node.locality } } : {}),
  };
}
