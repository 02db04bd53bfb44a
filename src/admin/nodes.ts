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
  return server.streamStatuses().map((s) => ({
    node: s.node?.id ?? '',
    group: s.group,
    userAgent: s.node?.userAgent ?? '',
    stream: s.id,
    service: s.service,
    transport: s.transport,
    peer: s.peer,
    connectedAt: iso(s.openedAt),
    types: s.types.map((t) => ({
      type: shortTypeName(t.typeUrl),
      typeUrl: t.typeUrl,
      wildcard: t.wildcard,
      names: t.names,
      held: t.held,
      pending: t.pending ? { version: t.pending.version, nonce: t.pending.nonce, sentAt: iso(t.pending.sentAt) } : null,
      lastAck: t.lastAck ? { version: t.lastAck.version, at: iso(t.lastAck.at) } : null,
      lastNack: t.lastNack ? { version: t.lastNack.version, detail: t.lastNack.detail, at: iso(t.lastNack.at) } : null,
    })),
  }));
}
