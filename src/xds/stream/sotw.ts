import { isKnownType, TypeUrl } from '../../resources/types.js';
import type { XdsResource } from '../snapshot.js';
import { isFullStateType } from './ordering.js';
import { heldId, sameNames, XdsStream, type PendingPush, type PushOutcome, type TypeState } from './state.js';
import { encodeSotwResponse, type DiscoveryRequest } from '../wire.js';

/**
 * State-of-the-world xDS (DiscoveryRequest / DiscoveryResponse), on ADS or a per-type service. A Listener or
 * Cluster response carries the whole set the client asked for, a route or endpoint response what changed
 * since the set the client holds; version_info is the content hash of the whole set either way.
 */
export class SotwStream extends XdsStream {
  /** Handles one request: ACK/NACK of the pending response, subscription changes, then sends what is due. */
  handleRequest(req: DiscoveryRequest): { typeUrl: TypeUrl } | { ignored: string } {
    const typeUrl = req.type_url || this.identity.serviceType || '';
    if (!isKnownType(typeUrl)) return { ignored: `unknown type ${typeUrl || '(empty)'}` };
    if (!this.identity.ads && typeUrl !== this.identity.serviceType) {
      return { ignored: `type ${typeUrl} on the ${this.identity.serviceType ?? '?'} service` };
    }
    const st = this.state(typeUrl);
    // Before this stream has answered the type, any nonce is left over from an earlier stream.
    const nonce = st.responded ? req.response_nonce : '';
    // A nonce other than the latest one sent answers a response this stream has superseded: the
    // protocol says to ignore it; the client re-sends its subscription with the latest nonce.
    if (nonce !== '' && nonce !== st.lastNonce) return { typeUrl };

    if (nonce !== '' && st.pending?.nonce === nonce) this.settle(st, nonce, req.error_detail?.message ? req.error_detail : null);
    this.subscribe(st, req.resource_names);
    if (nonce === '' && req.version_info !== '' && !st.responded) this.adoptReportedVersion(st, req.version_info);
    this.pump();
    return { typeUrl };
  }

  private subscribe(st: TypeState, names: string[]): void {
    st.subscribed = true;
    const wasWildcard = st.wildcard;
    const explicitWildcard = names.includes('*');
    st.wildcard = explicitWildcard || (names.length === 0 && isFullStateType(st.typeUrl));
    // Compared as sets, in one pass: a request is bounded in names, but its cost should still be linear in them.
    // The request's set is garbage at once when the names did not change (every ACK repeats them); a changed
    // one is interned, shared with every stream that asks for the same names.
    const asked = new Set<string>();
    for (const n of names) if (n !== '*') asked.add(n);
    const namesChanged = !sameNames(st.names, asked);
    if (namesChanged) st.setNames(asked);
    if (namesChanged || st.wildcard !== wasWildcard) st.subscriptionRev++;
    // Names the client dropped are gone from its side (a wildcard drops none). Walked without a copy of the
    // names: every ACK of every stream comes here, and a held set has thousands.
    if (!st.wildcard && dropsHeld(st)) {
      st.heldContent = new Map([...st.heldContent].filter(([name]) => st.wants(name)));
      st.heldRev++;
    }
  }

  /**
   * A reconnecting client reports the version it holds. If that is exactly what it would be sent now, it is
   * taken as held and nothing is re-sent: a control-plane restart causes no config churn.
   */
  private adoptReportedVersion(st: TypeState, version: string): void {
    const want = this.desired(st, false);
    st.heldVersion = version;
    if (want.version !== version) return;
    st.responded = true;
    st.heldContent = want.resources;
    st.heldRev++;
    st.lastAck = { version, at: Date.now() };
  }

  protected tryPush(st: TypeState, retain: boolean): PushOutcome {
    const want = this.desired(st, retain);
    const version = want.version;
    const rewarm = this.rewarming(st, want.resources);
    if (version === st.heldVersion && st.responded && !rewarm) return 'settled';
    if (want.resources.size === 0 && st.heldVersion === '' && !this.mustAnswerEmpty(st)) return 'settled';
    if (st.lastNack?.version === version) return 'blocked';
    const nonce = this.nextNonce();
    // The set is shared (the snapshot's own map for a wildcard client): never copied per stream.
    const resources = want.resources;
    const typeUrl = st.typeUrl;
    let changed = st.responded && this.identity.ads ? changedSince(typeUrl, st.heldContent, resources) : undefined;
    if (rewarm) {
      // Unchanged endpoints of modified clusters ride along (alone when nothing else changed); a whole set has them.
      if (version === st.heldVersion) changed = rewarm.resources;
      else if (changed) changed = [...new Set([...changed, ...rewarm.resources])];
      st.rewarmedFor = rewarm.forNonce;
    }
    // The body of a partial response is shared by the streams that hold the same set object.
    const from = changed ? `held-${heldId(st.heldContent)}${rewarm ? `+${rewarm.resources.map((r) => r.name).join(',')}` : ''}` : '';
    this.send(() =>
      changed
        ? encodeSotwResponse(typeUrl, version, changed, nonce, this.identity.controlPlaneId, from)
        : encodeSotwResponse(typeUrl, version, resources.values(), nonce, this.identity.controlPlaneId),
    );
    st.lastNonce = nonce;
    st.responded = true;
    st.pending = { nonce, version, systemVersion: version, sentAt: Date.now(), resources: want.resources, previous: new Map() };
    this.observer.onPush(this, st.typeUrl, version, resources.size);
    return 'sent';
  }

  /**
   * Envoy replaces a modified cluster by a warming copy that waits for a ClusterLoadAssignment response naming
   * it, even an unchanged one (Envoy's xDS notes; with its EDS cache it waits initial_fetch_timeout, 15 s by
   * default, then uses the cached one). On ADS the cluster push is known here: while it awaits its ACK, the
   * endpoints of the clusters it modified are due once, whether or not they changed.
   */
  private rewarming(eds: TypeState, want: ReadonlyMap<string, XdsResource>): { resources: XdsResource[]; forNonce: string } | undefined {
    if (eds.typeUrl !== TypeUrl.ClusterLoadAssignment || !this.identity.ads || !eds.responded) return undefined;
    const cds = this.states.get(TypeUrl.Cluster);
    const push = cds?.pending;
    if (!cds || !push || eds.rewarmedFor === push.nonce) return undefined;
    const resources: XdsResource[] = [];
    for (const name of modifiedClusters(cds.heldContent, push.resources)) {
      const assignment = want.get(name);
      if (assignment) resources.push(assignment);
    }
    return resources.length > 0 ? { resources, forNonce: push.nonce } : undefined;
  }

  protected onAccepted(st: TypeState, pending: PendingPush): void {
    st.heldVersion = pending.version;
    st.heldContent = pending.resources;
    st.heldRev++;
  }

  protected onRefused(): void {
    // The client keeps what it held before; nothing to undo here.
  }

  /** The set of its last ACK. */
  protected acked(st: TypeState): ReadonlyMap<string, { version: string; resource: XdsResource | undefined }> {
    return new Map([...st.heldContent].map(([name, r]) => [name, { version: r.version, resource: r }]));
  }

  /** A full-state response removes every acknowledged name it does not carry. */
  protected removedBy(pending: PendingPush, acked: ReadonlyMap<string, unknown>): string[] {
    return [...acked.keys()].filter((name) => !pending.resources.has(name));
  }
}

/** True when the client holds a name it no longer asks for. */
function dropsHeld(st: TypeState): boolean {
  for (const name of st.heldContent.keys()) if (!st.wants(name)) return true;
  return false;
}

/**
 * Route configurations and endpoint assignments are incremental in the state-of-the-world protocol: a
 * response that leaves a subscribed name out says nothing about it (only Listener and Cluster responses are
 * the whole set), so a client that holds `held` is sent only what differs from it: one model's assignment on
 * an alias move, not every subscribed one. Envoy, grpc-js-xds and grpc-go keep what a response leaves out.
 * Undefined when the whole set is due anyway: another type, nothing held, nothing changed but removals (the
 * client drops those with their clusters), or everything changed. Shared by every stream that holds the same
 * set and is due the same one (the sets are shared objects), so a push to thousands of streams diffs once.
 */
export function changedSince(typeUrl: string, held: ReadonlyMap<string, XdsResource>, want: ReadonlyMap<string, XdsResource>): XdsResource[] | undefined {
  if ((typeUrl !== TypeUrl.ClusterLoadAssignment && typeUrl !== TypeUrl.RouteConfiguration) || held.size === 0) return undefined;
  let byWant = diffs.get(held);
  if (!byWant) {
    byWant = new WeakMap();
    diffs.set(held, byWant);
  }
  const known = byWant.get(want);
  if (known !== undefined) return known ?? undefined;
  const changed: XdsResource[] = [];
  for (const [name, r] of want) if (held.get(name)?.version !== r.version) changed.push(r);
  const result = changed.length === 0 || changed.length === want.size ? null : changed;
  byWant.set(want, result);
  return result ?? undefined;
}

const diffs = new WeakMap<ReadonlyMap<string, XdsResource>, WeakMap<ReadonlyMap<string, XdsResource>, XdsResource[] | null>>();

/**
 * The clusters `sent` has at another version than `held` (new ones left out: their endpoints are a new
 * subscription). Both sets are shared by the streams that hold and are sent them, so a cluster push to
 * thousands of streams walks the cluster list once.
 */
function modifiedClusters(held: ReadonlyMap<string, XdsResource>, sent: ReadonlyMap<string, XdsResource>): readonly string[] {
  let bySent = modified.get(held);
  if (!bySent) {
    bySent = new WeakMap();
    modified.set(held, bySent);
  }
  let names = bySent.get(sent);
  if (!names) {
    names = [];
    for (const [name, cluster] of sent) {
      const before = held.get(name);
      if (before !== undefined && before.version !== cluster.version) names.push(name);
    }
    bySent.set(sent, names);
  }
  return names;
}

const modified = new WeakMap<ReadonlyMap<string, XdsResource>, WeakMap<ReadonlyMap<string, XdsResource>, string[]>>();
