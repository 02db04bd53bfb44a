import { shortTypeName } from '../resources/types.js';
import type { XdsServer } from '../xds/server.js';

/**
 * The /debug/nodes view: every connected node, its group, what it subscribed to, and per type the last
 * version sent, acknowledged and rejected (with Envoy's own error detail).
 */

export interface NodeTypeStatus {
  readonly type: string;
  readonly typeUrl: string;
  readonly wildcard: boolean;
  readonly names: readonly string[];
  readonly held: number;
  readonly pending: { readonly version: string; readonly nonce: string; readonly sentAt: string } | null;
  readonly lastAck: { readonly version: string; readonly at: string } | null;
  readonly lastNack: { readonly version: string; readonly detail: string; readonly at: string } | null;
}

export interface NodeStatus {
  readonly node: string;
  readonly group: string;
  readonly userAgent: string;
  readonly stream: number;
  readonly service: string;
  readonly transport: string;
  readonly peer: string;
  readonly connectedAt: string;
  readonly types: readonly NodeTypeStatus[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** A snapshot of every open stream's protocol state. */
export function nodeStatuses(server: XdsServer): NodeStatus[] {
  return server.openStreams().map((stream) => ({
    node: stream.node?.id ?? '',
    group: stream.group,
    userAgent: stream.node?.userAgent ?? '',
    stream: stream.identity.id,
    service: stream.identity.ads ? 'ads' : shortTypeName(stream.identity.serviceType ?? ''),
    transport: stream.identity.transport,
    peer: stream.identity.peer,
    connectedAt: iso(stream.openedAt),
    types: stream.typeStates().map((st) => ({
      type: shortTypeName(st.typeUrl),
      typeUrl: st.typeUrl,
      wildcard: st.wildcard,
      names: [...st.names].sort(),
      held: st.heldCount(),
      pending: st.pending ? { version: st.pending.systemVersion, nonce: st.pending.nonce, sentAt: iso(st.pending.sentAt) } : null,
      lastAck: st.lastAck ? { version: st.lastAck.version, at: iso(st.lastAck.at) } : null,
      lastNack: st.lastNack ? { version: st.lastNack.systemVersion, detail: st.lastNack.detail, at: iso(st.lastNack.at) } : null,
    })),
  }));
}
