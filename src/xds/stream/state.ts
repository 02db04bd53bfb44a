import { createHash } from 'node:crypto';
import type { NodeInfo } from '../cache.js';
import { shortTypeName, type TypeUrl } from '../../resources/types.js';
import { setVersion, type Snapshot, type XdsResource } from '../snapshot.js';
import { isFullStateType, isRetainedOnRemoval, pumpAds, PUSH_ORDER, type PushOutcome } from './ordering.js';
import type { StreamStatus, TypeStatus } from './status.js';
import { wireBytes, type XdsWireMessage } from '../wire.js';

/**
 * XdsStream: the per-stream protocol state shared by state-of-the-world and delta streams: what the client
 * subscribed to, what it holds, the one response per type awaiting its ACK, the last NACK, and the pump
 * that decides what to send next (following the rules of ordering.ts). Everything outside the stream reads
 * it through status(), a read-only copy.
 *
 * Ordering on ADS (make before break): a snapshot change is applied type by type in PUSH_ORDER, each push
 * waiting for the previous one's ACK: clusters (old ones kept) with their endpoints, then listeners with
 * their routes, then the filter policy; only when all of those are acknowledged are the clusters and
 * endpoints that the new snapshot dropped removed. A NACK stops the update where it is: the types after it
 * keep their last acknowledged config (so routes never point at clusters Envoy refused), and the rejected
 * version is not sent again until the snapshot changes.
 */

export type Transport = 'sotw' | 'delta';

export type { PushOutcome } from './ordering.js';

/** Receives protocol events (metrics, logs, status pages). */
export interface StreamObserver {
  onPush(stream: XdsStream, typeUrl: TypeUrl, version: string, resources: number): void;
  onAck(stream: XdsStream, typeUrl: TypeUrl, version: string, latencyMs: number): void;
  onNack(stream: XdsStream, typeUrl: TypeUrl, version: string, detail: string, latencyMs: number): void;
}

/** A response sent and not yet acknowledged. */
export interface PendingPush {
  readonly nonce: string;
  /** SotW: the version_info sent; delta: a hash of the change (what a NACK blocks). */
  readonly version: string;
  /** Delta: the system version sent. */
  readonly systemVersion: string;
  readonly sentAt: number;
  /** SotW: the full set sent. Delta: the resources sent. */
  readonly resources: ReadonlyMap<string, XdsResource>;
  /** Delta: the client's versions of the changed names before this push (undefined: it had none). */
  readonly previous: ReadonlyMap<string, string | undefined>;
}

/** Everything one stream knows about one resource type. */
export class TypeState {
  subscribed = false;
  wildcard = false;
  /**
   * The names subscribed to ('*' aside). A state-of-the-world subscription's set is interned (internNames):
   * one set shared by every stream asking for the same names, so never changed in place; a delta stream edits
   * its own through editNames().
   */
  names: ReadonlySet<string> = NO_NAMES;
  private ownNames: Set<string> | null = null;
  /** Delta: name -> version the client holds (acknowledged, plus the optimistic pending push). */
  readonly held = new Map<string, string>();
  /** SotW: what the client holds (the set it last acknowledged), replaced whole on each ACK. */
  heldContent: ReadonlyMap<string, XdsResource> = NOTHING_HELD;
  /** Bumped on every subscription change, and on every change of heldContent: they key `memo`. */
  subscriptionRev = 0;
  heldRev = 0;
  memo: { snapshot: Snapshot; subscriptionRev: number; heldRev: number; retain: boolean; value: Desired } | null = null;
  /** SotW: the version_info the client last acknowledged (or reported on reconnect). */
  heldVersion = '';
  lastNonce = '';
  responded = false;
  pending: PendingPush | null = null;
  /** SotW EDS on ADS: the nonce of the cluster push whose modified clusters' endpoints were last re-sent. */
  rewarmedFor = '';
  lastAck: { version: string; at: number } | null = null;
  /** `version` is what blocks a re-send (SotW: version_info; delta: the change hash). */
  lastNack: { version: string; systemVersion: string; detail: string; at: number } | null = null;

  constructor(readonly typeUrl: TypeUrl) {}

  private keyRev = -1;
  private key = '';

  /**
   * The subscription as a short text (wildcard or not, and a digest of the sorted names): streams that ask for
   * the same names share what desired() computes for them. Recomputed only after a subscription change.
   */
  subscriptionKey(): string {
    if (this.keyRev !== this.subscriptionRev) {
      this.key = `${this.wildcard ? '*' : ''}${namesDigest(this.names)}`;
      this.keyRev = this.subscriptionRev;
    }
    return this.key;
  }

  /** This stream's own, editable set of names (a copy of a shared one on first use): delta subscriptions. */
  editNames(): Set<string> {
    if (!this.ownNames) {
      this.ownNames = new Set(this.names);
      this.names = this.ownNames;
    }
    return this.ownNames;
  }

  /** Replaces the names with `names`, interned. */
  setNames(names: Set<string>): void {
    this.names = internNames(names);
    this.ownNames = null;
  }

  /** Whether the client asked for this resource name (or for every resource of the type). */
  wants(name: string): boolean {
    return this.wildcard || this.names.has(name);
  }

  /** How many resources the client holds. */
  heldCount(): number {
    return Math.max(this.held.size, this.heldContent.size);
  }
}

const NO_NAMES: ReadonlySet<string> = new Set();

/**
 * Subscribed name sets by digest, held weakly: Envoy subscribes EDS and RDS by name and repeats the names in
 * every request, so 5,000 Envoys asking for the same 2,000 cluster names kept 5,000 sets of 2,000 strings
 * each (~140 KB per stream); interned, they hold one. An entry goes when no stream holds its set.
 */
const internedNames = new Map<string, WeakRef<ReadonlySet<string>>>();
const namesDigests = new WeakMap<ReadonlySet<string>, string>();
const internedGone = new FinalizationRegistry<string>((digest) => {
  if (internedNames.get(digest)?.deref() === undefined) internedNames.delete(digest);
});

/** A digest of a set of names, independent of their order (kept for interned sets). */
function namesDigest(names: ReadonlySet<string>): string {
  let digest = namesDigests.get(names);
  if (digest === undefined) {
    const h = createHash('sha1');
    for (const name of [...names].sort()) h.update(name).update('\u0000');
    digest = h.digest('base64');
  }
  return digest;
}

/** The shared set equal to `names` (`names` itself when no stream holds an equal one). */
export function internNames(names: Set<string>): ReadonlySet<string> {
  if (names.size === 0) return NO_NAMES;
  const digest = namesDigest(names);
  const known = internedNames.get(digest)?.deref();
  if (known && sameNames(known, names)) return known;
  internedNames.set(digest, new WeakRef(names));
  namesDigests.set(names, digest);
  internedGone.register(names, digest);
  return names;
}

/** True when the two sets hold the same names. */
export function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}

/** The initial held set of every type state: shared, so that first pushes share their Desired too. */
const NOTHING_HELD: ReadonlyMap<string, XdsResource> = new Map();

/** A number per held-set object (held sets are shared: a SotW client holds the set it was sent). */
const heldIds = new WeakMap<object, number>();
let nextHeldId = 0;
export function heldId(held: object): number {
  let id = heldIds.get(held);
  if (id === undefined) {
    id = ++nextHeldId;
    heldIds.set(held, id);
  }
  return id;
}

/**
 * Desired sets shared by the streams, keyed by type, subscription, retain and held set: at 5,000 streams
 * subscribed to the same EDS names, one map and one set version per change instead of 5,000. A table belongs
 * to one type's resources (the snapshot's map of them), not to the snapshot: a snapshot keeps the map of a type
 * the change did not touch (Snapshot.from), so after a route edit the endpoints every stream wants are not
 * gathered and summed again before the first push.
 */
const sharedDesired = new WeakMap<ReadonlyMap<string, XdsResource>, Map<string, Desired>>();
/**
 * Held sets that other streams can hold too: the sets of the shared table and the initial empty one. A held set
 * a stream made for itself (names it dropped filtered out) keys nothing shared, or the table would keep one
 * entry per stream for the snapshot's lifetime.
 */
const shareableHeld = new WeakSet<object>([NOTHING_HELD]);

/** The resources a client should hold now, and the version of that set (computed on first use). */
export interface Desired {
  readonly resources: ReadonlyMap<string, XdsResource>;
  readonly version: string;
}

export interface StreamIdentity {
  readonly id: number;
  readonly transport: Transport;
  /** True on ADS; false on a per-type service stream. */
  readonly ads: boolean;
  /** The one type a per-type stream serves. */
  readonly serviceType?: TypeUrl;
  readonly peer: string;
  readonly controlPlaneId: string;
}

export abstract class XdsStream {
  readonly openedAt = Date.now();
  node: NodeInfo | null = null;
  group = '';
  protected snapshot: Snapshot | undefined;
  protected readonly states = new Map<TypeUrl, TypeState>();
  private nonceCounter = 0;
  private closed = false;

  /**
   * `write` sends bytes now. `deferred`, when given, takes the function making a response instead and calls it
   * when the transport has room (the server bounds the bytes in flight over all streams, so a push to
   * thousands of streams never holds a copy per stream); the stream's protocol state is the same either way.
   */
  constructor(
    readonly identity: StreamIdentity,
    protected readonly observer: StreamObserver,
    private readonly write: (bytes: Uint8Array) => void,
    private readonly deferred?: (make: () => XdsWireMessage) => void,
  ) {}

  /** Applies a new snapshot for this stream's group. */
  setSnapshot(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.pump();
  }

  /** Stops all sending; the stream is gone. */
  close(): void {
    this.closed = true;
  }

  /** True when every subscribed type acknowledged `snapshot`'s version of it and nothing is pending. */
  isSynced(snapshot: Snapshot): boolean {
    for (const st of this.states.values()) {
      if (!st.subscribed) continue;
      if (st.pending !== null || st.lastAck?.version !== snapshot.typeVersion(st.typeUrl)) return false;
    }
    return this.states.size > 0;
  }

  /** How many resource names the stream is subscribed to, over every type. */
  subscribedNames(): number {
    let names = 0;
    for (const st of this.states.values()) names += st.names.size;
    return names;
  }

  /** A read-only copy of the stream's protocol state, for status pages and CSDS. */
  status(): StreamStatus {
    const types = PUSH_ORDER.map((t) => this.states.get(t)).filter((s): s is TypeState => s !== undefined);
    return {
      id: this.identity.id,
      transport: this.identity.transport,
      service: this.identity.ads ? 'ads' : shortTypeName(this.identity.serviceType ?? ''),
      peer: this.identity.peer,
      openedAt: this.openedAt,
      node: this.node,
      group: this.group,
      types: types.map((st) => this.typeStatus(st)),
    };
  }

  private typeStatus(st: TypeState): TypeStatus {
    const pending = st.pending;
    const acked = this.acked(st);
    return {
      typeUrl: st.typeUrl,
      wildcard: st.wildcard,
      names: [...st.names].sort(),
      held: st.heldCount(),
      acked,
      ackedVersion: st.heldVersion,
      wants: this.snapshot?.resources(st.typeUrl) ?? new Map(),
      pending: pending && {
        version: pending.systemVersion,
        nonce: pending.nonce,
        sentAt: pending.sentAt,
        sent: pending.resources,
        removing: new Set(this.removedBy(pending, acked)),
      },
      lastAck: st.lastAck,
      lastNack: st.lastNack && { version: st.lastNack.systemVersion, detail: st.lastNack.detail, at: st.lastNack.at },
    };
  }

  /** What the client has acknowledged of a type, by name (version, and the resource when it is still known). */
  protected abstract acked(st: TypeState): ReadonlyMap<string, { readonly version: string; readonly resource: XdsResource | undefined }>;

  /** The names a pending push removes from the client. */
  protected abstract removedBy(pending: PendingPush, acked: ReadonlyMap<string, unknown>): Iterable<string>;

  protected state(typeUrl: TypeUrl): TypeState {
    let st = this.states.get(typeUrl);
    if (!st) {
      st = new TypeState(typeUrl);
      this.states.set(typeUrl, st);
    }
    return st;
  }

  protected nextNonce(): string {
    return (++this.nonceCounter).toString(36);
  }

  /** Sends the response `make` encodes (made now, or when the server's push queue gets to it). */
  protected send(make: () => XdsWireMessage): void {
    if (this.closed) return;
    if (this.deferred) this.deferred(make);
    else this.write(wireBytes(make()));
  }

  /** True once the stream is gone. */
  isClosed(): boolean {
    return this.closed;
  }

  /**
   * The resources of a type this client should hold now; with `retain`, dropped clusters/endpoints stay.
   * Memoised per (snapshot, subscription, held set): the pump asks again on every ACK of every stream.
   */
  protected desired(st: TypeState, retain: boolean): Desired {
    const snapshot = this.snapshot;
    const memo = st.memo;
    if (memo && memo.snapshot === snapshot && memo.subscriptionRev === st.subscriptionRev && memo.heldRev === st.heldRev && memo.retain === retain) {
      return memo.value;
    }
    const value = snapshot ? this.sharedDesired(snapshot, st, retain) : this.computeDesired(undefined, st, retain);
    if (snapshot) st.memo = { snapshot, subscriptionRev: st.subscriptionRev, heldRev: st.heldRev, retain, value };
    return value;
  }

  /** desired() for this snapshot from the streams' shared table (what it holds matters only when retaining). */
  private sharedDesired(snapshot: Snapshot, st: TypeState, retain: boolean): Desired {
    const retaining = retain && isRetainedOnRemoval(st.typeUrl);
    if (retaining && !shareableHeld.has(st.heldContent)) return this.computeDesired(snapshot, st, retain);
    const key = `${st.typeUrl}\u0000${st.subscriptionKey()}\u0000${retaining ? heldId(st.heldContent) : 0}`;
    // The type in the key too: a snapshot without resources of a type has the one shared empty map.
    const all = snapshot.resources(st.typeUrl);
    let table = sharedDesired.get(all);
    if (!table) {
      table = new Map();
      sharedDesired.set(all, table);
    }
    let value = table.get(key);
    if (!value) {
      value = this.computeDesired(snapshot, st, retain);
      shareableHeld.add(value.resources);
      table.set(key, value);
    }
    return value;
  }

  private computeDesired(snapshot: Snapshot | undefined, st: TypeState, retain: boolean): Desired {
    const all = snapshot?.resources(st.typeUrl);
    const retained: XdsResource[] = [];
    if (retain && isRetainedOnRemoval(st.typeUrl)) {
      for (const [name, r] of st.heldContent) if (!all?.has(name) && st.wants(name)) retained.push(r);
    }
    const extras = retained.length;
    let out: ReadonlyMap<string, XdsResource>;
    if (st.wildcard && extras === 0 && all) {
      out = all; // shared with the snapshot and every other wildcard stream: no copy
    } else {
      const built = new Map<string, XdsResource>();
      if (all) {
        if (st.wildcard) for (const r of all.values()) built.set(r.name, r);
        for (const name of st.names) {
          const r = all.get(name);
          if (r) built.set(name, r);
        }
      }
      for (const r of retained) if (!built.has(r.name)) built.set(r.name, r);
      out = built;
    }
    // A wildcard with nothing retained is exactly the snapshot's type, whose version is precomputed.
    const whole = st.wildcard && extras === 0 && snapshot !== undefined;
    let version: string | undefined;
    const value: Desired = {
      resources: out,
      get version() {
        version ??= whole && snapshot ? snapshot.typeVersion(st.typeUrl) : setVersion(out.values());
        return version;
      },
    };
    return value;
  }

  /** Sends the next response this stream needs, if any (see the ordering rules above). */
  protected pump(): void {
    if (this.closed || !this.snapshot) return;
    if (!this.identity.ads) {
      const st = this.identity.serviceType && this.states.get(this.identity.serviceType);
      if (st?.subscribed && !st.pending) this.tryPush(st, false);
      return;
    }
    const order = PUSH_ORDER.map((t) => this.states.get(t)).filter((s): s is TypeState => !!s?.subscribed);
    const byType = new Map(order.map((st) => [st.typeUrl, st]));
    pumpAds(
      order.map((st) => ({ typeUrl: st.typeUrl, pending: st.pending !== null, responded: st.responded })),
      (typeUrl, retain) => this.tryPush(byType.get(typeUrl) as TypeState, retain),
    );
  }

  /** Sends what `st` lacks, unless nothing is needed or that exact change was refused. */
  protected abstract tryPush(st: TypeState, retain: boolean): PushOutcome;

  /** Settles the pending push of a type on an ACK or NACK carrying its nonce. */
  protected settle(st: TypeState, nonce: string, errorDetail: { message: string } | null): void {
    const pending = st.pending;
    if (!pending || pending.nonce !== nonce) return;
    st.pending = null;
    const latency = Date.now() - pending.sentAt;
    if (errorDetail) {
      st.lastNack = { version: pending.version, systemVersion: pending.systemVersion, detail: errorDetail.message, at: Date.now() };
      this.onRefused(st, pending);
      this.observer.onNack(this, st.typeUrl, pending.systemVersion, errorDetail.message, latency);
    } else {
      st.lastAck = { version: pending.systemVersion, at: Date.now() };
      this.onAccepted(st, pending);
      this.observer.onAck(this, st.typeUrl, pending.systemVersion, latency);
    }
  }

  protected abstract onAccepted(st: TypeState, pending: PendingPush): void;
  protected abstract onRefused(st: TypeState, pending: PendingPush): void;

  /** A readable description for logs. */
  describe(): string {
    return `${this.node?.id ?? '?'} (${this.identity.ads ? 'ads' : shortTypeName(this.identity.serviceType ?? '')}/${this.identity.transport} #${this.identity.id})`;
  }

  /** True when a full-state type must answer even an empty set (so the client can finish initialising). */
  protected mustAnswerEmpty(st: TypeState): boolean {
    return !st.responded && (st.wildcard || isFullStateType(st.typeUrl));
  }
}
