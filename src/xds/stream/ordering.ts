import { TypeUrl } from '../../resources/types.js';

/**
 * The xDS protocol's ordering rules, in one place: the make-before-break order in which an ADS stream
 * applies a change, which types carry their whole state in every state-of-the-world response, which types
 * keep dropped resources until the types that may point at them have moved on, and which type an Envoy waits
 * for while it warms another. The stream pump (state.ts) applies them; ordering.test.ts pins them down.
 */

/**
 * Make-before-break order on ADS: clusters, then their endpoints, then the listeners and routes that use
 * them; Flowgate's own filter policy last. Removals of clusters and endpoints wait until everything else
 * has been acknowledged.
 */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.FilterPolicy,
];

/**
 * Types whose state-of-the-world responses must carry every resource (a missing one means "deleted"), and
 * which a client may subscribe to as a wildcard. RDS and EDS are only ever requested by name.
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.FilterPolicy;
}

/**
 * Types whose resources are kept on an ADS stream after a snapshot drops them, until the listeners and
 * routes that might still point at them have been replaced.
 */
export function isRetainedOnRemoval(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.ClusterLoadAssignment;
}

/**
 * The type an Envoy waits for before it acknowledges a push: a new cluster warms until its endpoints
 * arrive (and Envoy holds the CDS ACK until then), a new listener until its route configuration does. So
 * while CDS or LDS awaits its ACK, EDS or RDS must still be answered; everything else waits.
 */
export function warmingCompanion(typeUrl: TypeUrl): TypeUrl | null {
  if (typeUrl === TypeUrl.Cluster) return TypeUrl.ClusterLoadAssignment;
  if (typeUrl === TypeUrl.Listener) return TypeUrl.RouteConfiguration;
  return null;
}

/** What the ADS pump knows of one subscribed type, in push order. */
export interface TypeProgress {
  readonly typeUrl: TypeUrl;
  /** A response is awaiting its ACK. */
  readonly pending: boolean;
  /** The stream has answered this type at least once. */
  readonly responded: boolean;
}

/** The outcome of trying to push one type: sent a response, nothing needed, or that exact change was refused. */
export type PushOutcome = 'sent' | 'settled' | 'blocked';

/**
 * One pass of the ADS pump over the subscribed types (in PUSH_ORDER). `tryPush(type, retain)` sends what the
 * type lacks (keeping dropped clusters and endpoints when `retain`) and says what happened. The rules:
 * - while a type awaits its ACK only its warming companion may be sent; nothing after it;
 * - after a refused (NACKed) change, types that already hold config keep it; a type never answered still is;
 * - only when every type is settled are the clusters and endpoints the snapshot dropped removed (both in one pass).
 */
export function pumpAds(types: readonly TypeProgress[], tryPush: (typeUrl: TypeUrl, retain: boolean) => PushOutcome): void {
  let waitingOn: TypeUrl | null = null;
  let blocked = false;
  for (const st of types) {
    if (waitingOn !== null && warmingCompanion(waitingOn) !== st.typeUrl) return;
    if (st.pending) {
      if (waitingOn !== null) return;
      waitingOn = st.typeUrl;
      continue;
    }
    if (blocked && st.responded) continue;
    const outcome = tryPush(st.typeUrl, true);
    if (outcome === 'sent') {
      if (waitingOn !== null) return;
      waitingOn = st.typeUrl;
    } else if (outcome === 'blocked') {
      blocked = true;
    }
  }
  if (blocked || waitingOn !== null) return;
  // Clusters and their endpoints are removed in one round (clusters first on the stream): nothing points at
  // them any more, and a state-of-the-world EDS response without a name removes nothing from Envoy (only
  // CDS does), so the EDS push need not wait for the CDS ACK. One round trip per stream fewer per change.
  for (const st of types) {
    if (isRetainedOnRemoval(st.typeUrl)) tryPush(st.typeUrl, false);
  }
}
