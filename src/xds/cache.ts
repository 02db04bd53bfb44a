import type { Snapshot } from './snapshot.js';

/**
 * SnapshotCache: decides what each node should have. It holds one snapshot per node group and tells the
 * streams of a group when its snapshot changes; it never touches a stream. A node's group is its
 * `node.cluster` unless a different rule is given. Groups without a snapshot of their own get the
 * fallback group's, so a fleet with no grouping needs just one snapshot.
 */

/** What the cache and the server know of a connected node (from the xDS request's `node`). */
export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly userAgent: string;
  readonly locality?: { readonly region?: string; readonly zone?: string; readonly sub_zone?: string };
}

export type SnapshotListener = (snapshot: Snapshot) => void;

export interface SnapshotCacheOptions {
  /** Maps a node to its group; default: the node's cluster. */
  readonly groupOf?: (node: NodeInfo) => string;
  /** The group whose snapshot serves groups that have none; default "*". */
  readonly fallbackGroup?: string;
}

export class SnapshotCache {
  readonly fallbackGroup: string;
  private readonly groupRule: (node: NodeInfo) => string;
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watchers = new Map<string, Set<SnapshotListener>>();

  constructor(options: SnapshotCacheOptions = {}) {
    this.groupRule = options.groupOf ?? ((node) => node.cluster);
    this.fallbackGroup = options.fallbackGroup ?? '*';
  }

  /** The group a node belongs to. */
  groupOf(node: NodeInfo): string {
    return this.groupRule(node);
  }

  /** Sets a group's snapshot and tells every stream that now resolves to a different snapshot. */
  setSnapshot(group: string, snapshot: Snapshot): void {
    const affected = group === this.fallbackGroup ? this.groupsUsingFallback() : [group];
    const before = new Map(affected.map((g) => [g, this.getSnapshot(g)]));
    this.snapshots.set(group, snapshot);
    for (const g of affected) {
      if (before.get(g)?.version === snapshot.version) continue;
      for (const listener of [...(this.watchers.get(g) ?? [])]) listener(snapshot);
    }
  }

  /** Removes a group's own snapshot; its streams fall back to the fallback group's snapshot if there is one. */
  clearSnapshot(group: string): void {
    if (!this.snapshots.delete(group)) return;
    const now = this.getSnapshot(group);
    if (!now) return;
    for (const listener of [...(this.watchers.get(group) ?? [])]) listener(now);
  }

  /** The snapshot a group's nodes get: its own, else the fallback group's. */
  getSnapshot(group: string): Snapshot | undefined {
    return this.snapshots.get(group) ?? this.snapshots.get(this.fallbackGroup);
  }

  /** Calls `listener` with each new snapshot for the group until the returned function is called. */
  watch(group: string, listener: SnapshotListener): () => void {
    let set = this.watchers.get(group);
    if (!set) {
      set = new Set();
      this.watchers.set(group, set);
    }
    set.add(listener);
    return () => {
      const current = this.watchers.get(group);
      current?.delete(listener);
      if (current?.size === 0) this.watchers.delete(group);
    };
  }

  /** Every group that has a snapshot of its own, with it. */
  entries(): [string, Snapshot][] {
    return [...this.snapshots.entries()];
  }

  private groupsUsingFallback(): string[] {
    const groups = [...this.watchers.keys()].filter((g) => g === this.fallbackGroup || !this.snapshots.has(g));
    if (!groups.includes(this.fallbackGroup)) groups.push(this.fallbackGroup);
    return groups;
  }
}
