import type { TypeUrl } from '../../resources/types.js';
import type { NodeInfo } from '../cache.js';
import type { XdsResource } from '../snapshot.js';
import type { Transport } from './state.js';

/**
 * The read-only view of one xDS stream that status pages (/debug/nodes) and CSDS read. It is a copy made on
 * request: nothing outside the stream holds or changes the stream's protocol state.
 */

/** What one stream knows of one resource type. */
export interface TypeStatus {
  readonly typeUrl: TypeUrl;
  readonly wildcard: boolean;
  /** The names subscribed to (sorted). */
  readonly names: readonly string[];
  /** How many resources the client holds (acknowledged, plus a pending delta push's optimistic changes). */
  readonly held: number;
  /** What the client acknowledged, by name. */
  readonly acked: ReadonlyMap<string, { readonly version: string; readonly resource: XdsResource | undefined }>;
  /** State of the world: the version_info of the acknowledged set ('' for delta). */
  readonly ackedVersion: string;
  /** What the stream's current snapshot has for the type, by name. */
  readonly wants: ReadonlyMap<string, XdsResource>;
  /** The response awaiting its ACK: what it sends and what it removes. */
  readonly pending: {
    readonly version: string;
    readonly nonce: string;
    readonly sentAt: number;
    readonly sent: ReadonlyMap<string, XdsResource>;
    readonly removing: ReadonlySet<string>;
  } | null;
  readonly lastAck: { readonly version: string; readonly at: number } | null;
  readonly lastNack: { readonly version: string; readonly detail: string; readonly at: number } | null;
}

/** What one stream knows: who is on it, on which service, and per type its protocol state. */
export interface StreamStatus {
  readonly id: number;
  readonly transport: Transport;
  /** ads, or the per-type service (cds, eds, lds, rds). */
  readonly service: string;
  readonly peer: string;
  readonly openedAt: number;
  readonly node: NodeInfo | null;
  /** The node's group (by the cache's rule). */
  readonly group: string;
  readonly types: readonly TypeStatus[];
}
