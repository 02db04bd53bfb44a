import type { Snapshot } from './snapshot.js';

/**
 * SnapshotCache: decides what each node should have; it never touches a stream. A node belongs to a group
 * (by a rule: its `node.cluster` unless told otherwise) and needs one variant of the configuration (e.g. the
 * xDS mode its bootstrap uses, which decides the config sources resources name). The cache holds one
 * snapshot per (group, variant) and tells the watchers of a (group, variant) when the snapshot they resolve
 * to changes. A group without a snapshot of its own gets the fallback group's snapshot of the same variant,
 * so a fleet with no grouping needs one snapshot per variant.
 */

/** What the cache and the server know of a connected node (from the xDS request's `node`). */
export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly userAgent: string;
  readonly locality?: { readonly region?: string; readonly zone?: string; readonly sub_zone?: string };
}

/** Where a node's snapshot comes from. */
export interface SnapshotKey {
  readonly group: string;
  readonly variant: string;
}

export type SnapshotListener = (snapshot: Snapshot) => void;

export interface SnapshotCacheOptions {
  /** Maps a node to its group; default: nodeGroup (metadata `flowgate.group`, else `node.cluster`). */
  readonly groupOf?: (node: NodeInfo) => string;
  /** Maps a node to the variant it needs; default: one variant, ''. */
  readonly variantOf?: (node: NodeInfo) => string;
  /** The group whose snapshots serve groups that have none; default "*". */
  readonly fallbackGroup?: string;
}

/** The default group rule: node metadata `flowgate.group` when set, else the node's cluster, else "*". */
export function nodeGroup(node: NodeInfo): string {
  const declared = (node.metadata.flowgate as Record<string, unknown> | undefined)?.group;
  if (typeof declared === 'string' && declared !== '') return declared;
  return node.cluster !== '' ? node.cluster : '*';
}

const keyText = (group: string, variant: string): string => `${group}\u0000${variant}`;

/** Watchers told per turn of the event loop. */
const NOTIFY_BATCH = 200;

export class SnapshotCache {
  readonly fallbackGroup: string;
  private readonly groupRule: (node: NodeInfo) => string;
  private readonly variantRule: (node: NodeInfo) => string;
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watchers = new Map<string, { readonly key: SnapshotKey; readonly listeners: Set<SnapshotListener> }>();
  private missing: ((key: SnapshotKey) => void) | undefined;

  constructor(options: SnapshotCacheOptions = {}) {
    this.groupRule = options.groupOf ?? nodeGroup;
    this.variantRule = options.variantOf ?? (() => '');
    this.fallbackGroup = options.fallbackGroup ?? '*';
  }

  /** The (group, variant) a node's snapshot comes from. */
  keyOf(node: NodeInfo): SnapshotKey {
    return { group: this.groupRule(node), variant: this.variantRule(node) };
  }

  /** Sets a (group, variant)'s snapshot and tells every watcher that now resolves to a different snapshot. */
  setSnapshot(group: string, snapshot: Snapshot, variant = ''): void {
    const affected = group === this.fallbackGroup ? this.keysUsingFallback(variant) : [{ group, variant }];
    const before = new Map(affected.map((k) => [keyText(k.group, k.variant), this.getSnapshot(k.group, k.variant)]));
    this.snapshots.set(keyText(group, variant), snapshot);
    const due: { readonly text: string; readonly key: SnapshotKey; readonly listener: SnapshotListener }[] = [];
    for (const k of affected) {
      const text = keyText(k.group, k.variant);
      if (before.get(text)?.version === snapshot.version) continue;
      for (const listener of this.watchers.get(text)?.listeners ?? []) due.push({ text, key: k, listener });
    }
    this.notify(due, 0);
  }

  /**
   * Tells watchers in batches: the first batch at once (the first push leaves in the same tick), the rest one
   * batch per turn of the event loop, so a change for thousands of streams never holds the loop (and the
   * embedded filter service, and other streams' ACKs) for the whole fan-out. Each watcher gets the snapshot
   * current when its turn comes; a watcher gone by then is skipped.
   */
  private notify(due: readonly { readonly text: string; readonly key: SnapshotKey; readonly listener: SnapshotListener }[], from: number): void {
    const end = Math.min(due.length, from + NOTIFY_BATCH);
    for (let i = from; i < end; i++) {
      const d = due[i] as (typeof due)[number];
      if (from > 0 && !this.watchers.get(d.text)?.listeners.has(d.listener)) continue;
      const snapshot = this.getSnapshot(d.key.group, d.key.variant);
      if (snapshot) d.listener(snapshot);
    }
    if (end < due.length) setImmediate(() => this.notify(due, end));
  }

  /** Removes a (group, variant)'s own snapshot; its watchers fall back to the fallback group's, if there is one. */
  clearSnapshot(group: string, variant = ''): void {
    if (!this.snapshots.delete(keyText(group, variant))) return;
    const now = this.getSnapshot(group, variant);
    if (!now) return;
    for (const listener of [...(this.watchers.get(keyText(group, variant))?.listeners ?? [])]) listener(now);
  }

  /** The snapshot a (group, variant) gets: its own, else the fallback group's of that variant. */
  getSnapshot(group: string, variant = ''): Snapshot | undefined {
    return this.snapshots.get(keyText(group, variant)) ?? this.snapshots.get(keyText(this.fallbackGroup, variant));
  }

  /**
   * `hook` is called when a watch starts on a (group, variant) that resolves to no snapshot: the control plane
   * then builds a variant it builds only on demand. It must not publish synchronously (schedule the build).
   */
  whenMissing(hook: (key: SnapshotKey) => void): void {
    this.missing = hook;
  }

  /** Calls `listener` with each new snapshot for the key until the returned function is called. */
  watch(key: SnapshotKey, listener: SnapshotListener): () => void {
    const text = keyText(key.group, key.variant);
    let entry = this.watchers.get(text);
    if (!entry) {
      entry = { key: { group: key.group, variant: key.variant }, listeners: new Set() };
      this.watchers.set(text, entry);
    }
    entry.listeners.add(listener);
    if (!this.getSnapshot(key.group, key.variant)) this.missing?.(key);
    return () => {
      const current = this.watchers.get(text);
      current?.listeners.delete(listener);
      if (current?.listeners.size === 0) this.watchers.delete(text);
    };
  }

  /** Every (group, variant) that has a snapshot of its own, with it. */
  entries(): [SnapshotKey, Snapshot][] {
    return [...this.snapshots.entries()].map(([text, snapshot]) => {
      const [group = '', variant = ''] = text.split('\u0000');
      return [{ group, variant }, snapshot];
    });
  }

  private keysUsingFallback(variant: string): SnapshotKey[] {
    const keys = [...this.watchers.values()]
      .map((w) => w.key)
      .filter((k) => k.variant === variant && (k.group === this.fallbackGroup || !this.snapshots.has(keyText(k.group, variant))));
    if (!keys.some((k) => k.group === this.fallbackGroup)) keys.push({ group: this.fallbackGroup, variant });
    return keys;
  }
}
