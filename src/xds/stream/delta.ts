import { isKnownType, TypeUrl } from '../../resources/types.js';
import { isFullStateType, isRetainedOnRemoval } from './ordering.js';
import { contentHash, type XdsResource } from '../snapshot.js';
import { XdsStream, type PendingPush, type PushOutcome, type TypeState } from './state.js';
import { encodeDeltaResponse, type DeltaDiscoveryRequest } from '../wire.js';

/**
 * Incremental (delta) xDS: the client subscribes and unsubscribes by name, reports what it holds on
 * reconnect (initial_resource_versions), and each response carries only changed and removed resources.
 * What the client holds is tracked optimistically while a response is pending and restored on a NACK.
 */
export class DeltaStream extends XdsStream {
  /** Handles one request: ACK/NACK, subscription changes, then sends what is due. */
  handleRequest(req: DeltaDiscoveryRequest): { typeUrl: TypeUrl } | { ignored: string } {
    const typeUrl = req.type_url || this.identity.serviceType || '';
    if (!isKnownType(typeUrl)) return { ignored: `unknown type ${typeUrl || '(empty)'}` };
    if (!this.identity.ads && typeUrl !== this.identity.serviceType) {
      return { ignored: `type ${typeUrl} on the ${this.identity.serviceType ?? '?'} service` };
    }
    const st = this.state(typeUrl);
    if (req.response_nonce !== '') {
      this.settle(st, req.response_nonce, req.error_detail?.message ? req.error_detail : null);
    }
    if (!st.subscribed) {
      st.subscribed = true;
      // The legacy wildcard: a first request naming nothing, for a type that has wildcard semantics.
      if (req.resource_names_subscribe.length === 0 && isFullStateType(typeUrl)) st.wildcard = true;
      st.subscriptionRev++;
      for (const [name, version] of Object.entries(req.initial_resource_versions)) st.held.set(name, version);
      if (Object.keys(req.initial_resource_versions).length > 0) st.responded = true;
    }
    for (const name of req.resource_names_subscribe) {
      if (name === '*') st.wildcard = true;
      else st.editNames().add(name);
    }
    for (const name of req.resource_names_unsubscribe) {
      if (name === '*') st.wildcard = false;
      else st.editNames().delete(name);
    }
    if (req.resource_names_subscribe.length > 0 || req.resource_names_unsubscribe.length > 0) st.subscriptionRev++;
    // Names the client dropped are gone from its side: forget them without telling it.
    for (const name of [...st.held.keys()]) if (!st.wants(name)) st.held.delete(name);
    this.pump();
    return { typeUrl };
  }

  protected tryPush(st: TypeState, retain: boolean): PushOutcome {
    const want = this.desired(st, false).resources;
    const toSend: XdsResource[] = [];
    for (const r of want.values()) if (st.held.get(r.name) !== r.version) toSend.push(r);
    const rewarm = this.rewarming(st, want);
    if (rewarm) {
      // The endpoints of the clusters the pending cluster push modified, unchanged or not (see rewarming).
      const sending = new Set(toSend);
      for (const r of rewarm.resources) if (!sending.has(r)) toSend.push(r);
      st.rewarmedFor = rewarm.forNonce;
    }
    const keep = retain && isRetainedOnRemoval(st.typeUrl);
    const toRemove = [...st.held.keys()].filter((name) => !want.has(name) && !keep);
    if (toSend.length === 0 && toRemove.length === 0 && !this.mustAnswerEmpty(st)) {
      // A reconnecting client that already holds everything: record that as its acknowledged state.
      if (st.lastAck === null && st.held.size > 0 && !st.pending) st.lastAck = { version: this.snapshot?.typeVersion(st.typeUrl) ?? '', at: Date.now() };
      return 'settled';
    }
    const change = contentHash(
      toSend.map((r) => `${r.name}\u0000${r.version}`).sort().join('\n'),
      '\u0001',
      [...toRemove].sort().join('\n'),
    );
    if (st.lastNack?.version === change) return 'blocked';

    const previous = new Map<string, string | undefined>();
    for (const r of toSend) {
      previous.set(r.name, st.held.get(r.name));
      st.held.set(r.name, r.version);
    }
    for (const name of toRemove) {
      previous.set(name, st.held.get(name));
      st.held.delete(name);
    }
    const nonce = this.nextNonce();
    const systemVersion = this.snapshot?.typeVersion(st.typeUrl) ?? '';
    this.send(() => encodeDeltaResponse(st.typeUrl, systemVersion, toSend, toRemove, nonce, this.identity.controlPlaneId));
    st.lastNonce = nonce;
    st.responded = true;
    st.pending = {
      nonce,
      version: change,
      systemVersion,
      sentAt: Date.now(),
      resources: new Map(toSend.map((r) => [r.name, r])),
      previous,
    };
    this.observer.onPush(this, st.typeUrl, systemVersion, toSend.length);
    return 'sent';
  }

  /**
   * Envoy replaces a modified cluster by a warming copy that waits for its ClusterLoadAssignment, even an
   * unchanged one (with its EDS cache it waits initial_fetch_timeout, 15 s by default, then uses the cached
   * one). On ADS, while a cluster push awaits its ACK, the endpoints of the clusters it modified are due once.
   */
  private rewarming(eds: TypeState, want: ReadonlyMap<string, XdsResource>): { resources: XdsResource[]; forNonce: string } | undefined {
    if (eds.typeUrl !== TypeUrl.ClusterLoadAssignment || !this.identity.ads) return undefined;
    const push = this.states.get(TypeUrl.Cluster)?.pending;
    if (!push || eds.rewarmedFor === push.nonce) return undefined;
    const resources: XdsResource[] = [];
    for (const [name, before] of push.previous) {
      // A name the push sent that the client held before: a modified cluster (undefined: a new one).
      if (before === undefined || !push.resources.has(name)) continue;
      const assignment = want.get(name);
      if (assignment && eds.held.has(name)) resources.push(assignment);
    }
    return resources.length > 0 ? { resources, forNonce: push.nonce } : undefined;
  }

  protected onAccepted(): void {
    // `held` already reflects the push.
  }

  /** What it holds, minus the optimistic changes of the pending push (restored to the version held before it). */
  protected acked(st: TypeState): ReadonlyMap<string, { version: string; resource: XdsResource | undefined }> {
    const versions = new Map(st.held);
    for (const [name, before] of st.pending?.previous ?? []) {
      if (before === undefined) versions.delete(name);
      else versions.set(name, before);
    }
    const current = this.snapshot?.resources(st.typeUrl);
    const out = new Map<string, { version: string; resource: XdsResource | undefined }>();
    for (const [name, version] of versions) {
      const r = current?.get(name);
      out.set(name, { version, resource: r?.version === version ? r : undefined });
    }
    return out;
  }

  /** The names the pending push changed that it did not send: its removals. */
  protected removedBy(pending: PendingPush): string[] {
    return [...pending.previous.keys()].filter((name) => !pending.resources.has(name));
  }

  protected onRefused(st: TypeState, pending: PendingPush): void {
    for (const [name, version] of pending.previous) {
      if (version === undefined) st.held.delete(name);
      else st.held.set(name, version);
    }
  }
}
