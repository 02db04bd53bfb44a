import { createHash, hash } from 'node:crypto';
import { anyHead, anyOfParts, byteLength, encodeMessageParts, partsDigestInput, type Part } from '../proto/codec.js';
import type { ResourceInput, TypeUrl } from '../resources/types.js';
import { segments } from '../resources/segments.js';
import { sharedChanges } from '../resources/window.js';
export type { ResourceInput } from '../resources/types.js';
import { PUSH_ORDER } from './stream/ordering.js';

/**
 * Snapshot: an immutable set of xDS resources for one node group, each encoded exactly once. Resource
 * versions are content hashes, so the same configuration always has the same versions: across restarts and
 * across control-plane replicas, and Envoys see no churn.
 */

/** One encoded resource, shared by every stream that sends it. */
export interface XdsResource {
  readonly typeUrl: TypeUrl;
  readonly name: string;
  /** Content hash of the encoded message. */
  readonly version: string;
  /** The encoded message. */
  readonly body: Uint8Array;
  /** The encoded google.protobuf.Any wrapping `body`, ready to splice into responses. */
  readonly any: Uint8Array;
  /**
   * The bytes of `any` as the pieces they are made of, in order, without joining them (for a writer that
   * copies them into a buffer of its own anyway). Absent: read `any`.
   */
  anyChunks?(): readonly Uint8Array[];
}


/** A short content hash (16 hex digits) of bytes. */
export function contentHash(...parts: (Uint8Array | string)[]): string {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest('hex').slice(0, 16);
}

/** The (name, version) digest of resources made elsewhere (an EncodedResource keeps its own), computed once per resource. */
const keyDigests = new WeakMap<XdsResource, Uint32Array>();

/** A resource's (name, version) digest as four 32-bit lanes. */
function keyDigest(r: XdsResource): Uint32Array {
  if (r instanceof EncodedResource) return (r.keyDigest ??= newKeyDigest(r));
  let d = keyDigests.get(r);
  if (!d) {
    d = newKeyDigest(r);
    keyDigests.set(r, d);
  }
  return d;
}

function newKeyDigest(r: XdsResource): Uint32Array {
  // Hex and parsed: a Buffer result costs more than the hash itself (80,000 of these per cold build).
  const hex = hash('sha256', `${r.name}\u0000${r.version}`, 'hex');
  return new Uint32Array([parseInt(hex.slice(0, 8), 16), parseInt(hex.slice(8, 16), 16), parseInt(hex.slice(16, 24), 16), parseInt(hex.slice(24, 32), 16)]);
}

/** The lane-wise sum and count of a set's (name, version) digests: a set version updated per change. */
interface SetSum {
  readonly sum: Uint32Array;
  readonly count: number;
}

function sumOf(resources: Iterable<XdsResource>): SetSum {
  const sum = new Uint32Array(4);
  let count = 0;
  for (const r of resources) {
    addDigest(sum, r, 1);
    count++;
  }
  return { sum, count };
}

/** Adds (sign 1) or subtracts (sign -1) a resource's digest, lane-wise mod 2^32. */
function addDigest(sum: Uint32Array, r: XdsResource, sign: 1 | -1): void {
  const d = keyDigest(r);
  for (let i = 0; i < 4; i++) sum[i] = ((sum[i] as number) + sign * (d[i] as number)) >>> 0;
}

const versionOfSum = ({ sum, count }: SetSum): string => contentHash(`${count}:${[...sum].map((x) => x.toString(16).padStart(8, '0')).join('')}`);

/**
 * The version of a set of resources, independent of order: a hash of the count and of the lane-wise sums
 * (mod 2^32) of each (name, version) digest. A sum, not a sorted list, so a set of 40,000 resources costs a
 * walk over cached digests rather than a sort of 40,000 strings on every snapshot, and a snapshot built from
 * the one before updates it by the resources that changed.
 */
export function setVersion(resources: Iterable<XdsResource>): string {
  return versionOfSum(sumOf(resources));
}

const EMPTY: ReadonlyMap<string, XdsResource> = new Map();
const EMPTY_VERSION = setVersion([]);
const NO_INPUTS: readonly ResourceInput[] = [];

/** The resource each message object was encoded into (messages are never mutated once given to a snapshot). */
const encodedResources = new WeakMap<object, XdsResource>();

/** One type of a snapshot: its resources by name, the inputs they came from (in order) and their digest sum. */
interface TypeSet {
  readonly named: ReadonlyMap<string, XdsResource>;
  readonly inputs: readonly ResourceInput[];
  readonly sum: SetSum;
  readonly version: string;
}

/** The resource of an input: the one made before for the same message object, else encoded now. */
function resourceOf(input: ResourceInput, previous: Snapshot | undefined): XdsResource {
  // The same message object as before (a translator's memo): the same resource, hashed and wrapped once.
  const known = encodedResources.get(input.message);
  if (known && known.typeUrl === input.typeUrl && known.name === input.name) return known;
  const parts = encodeMessageParts(input.typeUrl, input.message);
  const whole = parts.length === 1 ? (parts[0] as Part).bytes : undefined;
  // A message encoded whole is hashed over its bytes; a spliced one (a route configuration) over its parts' digests.
  const version = whole ? prefixedVersion(input.typeUrl, WHOLE, whole) : prefixedVersion(input.typeUrl, SPLICED, partsDigestInput(parts, partDigest));
  const prior = previous?.get(input.typeUrl, input.name);
  const resource = prior && prior.version === version ? prior : new EncodedResource(input.typeUrl, input.name, version, parts);
  encodedResources.set(input.message, resource);
  return resource;
}

const partDigest = (bytes: Uint8Array): Uint8Array => hash('sha256', bytes, 'buffer').subarray(0, 16);

/** What follows the type URL in a version's hash input: a zero byte for a message hashed whole, a one for a spliced one's part digests. */
const WHOLE = 0;
const SPLICED = 1;

/** Each type URL followed by each of those bytes, as bytes. */
const versionPrefixes = [new Map<string, Buffer>(), new Map<string, Buffer>()] as const;

/**
 * contentHash(typeUrl, '\u0000' or '\u0001', bytes), in one call over one buffer: a hash object per resource
 * costs more than the hash at 80,000 resources per cold build.
 */
function prefixedVersion(typeUrl: string, kind: typeof WHOLE | typeof SPLICED, bytes: Uint8Array): string {
  const prefixes = versionPrefixes[kind];
  let prefix = prefixes.get(typeUrl);
  if (!prefix) {
    prefix = Buffer.from(`${typeUrl}${String.fromCharCode(kind)}`);
    prefixes.set(typeUrl, prefix);
  }
  const length = prefix.length + bytes.length;
  if (versionInput.length < length) versionInput = Buffer.allocUnsafeSlow(Math.max(length, versionInput.length * 2));
  prefix.copy(versionInput, 0);
  versionInput.set(bytes, prefix.length);
  return hash('sha256', versionInput.subarray(0, length), 'hex').slice(0, 16);
}

/** What prefixedVersion hashes, written into one reused buffer (a buffer per resource was 40 MB of garbage per cold build). */
let versionInput = Buffer.allocUnsafeSlow(1 << 16);

/**
 * A resource whose bytes are assembled from its parts the first time they are read (when it is first sent):
 * building a snapshot never copies a large route configuration, and one that is never sent is never copied.
 */
class EncodedResource implements XdsResource {
  private parts: readonly Part[] | undefined;
  private bytes: { readonly body: Uint8Array; readonly any: Uint8Array } | undefined;
  /** Its (name, version) digest (keyDigest), a field rather than a weak map entry: 80,000 per cold build. */
  keyDigest: Uint32Array | undefined = undefined;

  constructor(
    readonly typeUrl: TypeUrl,
    readonly name: string,
    readonly version: string,
    parts: readonly Part[],
  ) {
    this.parts = parts;
  }

  get body(): Uint8Array {
    return this.assembled().body;
  }

  get any(): Uint8Array {
    return this.assembled().any;
  }

  /**
   * Its Any in pieces: for a message encoded element by element (a route configuration) not joined yet, the
   * Any's head and the parts, so a state-of-the-world body (wire.ts) copies it once, from its parts, and the
   * resource never holds a joined copy of it; for any other, its one buffer (a message encoded whole is
   * joined once and kept: writing a head per resource per body cost more than that at 4,000 clusters).
   */
  anyChunks(): readonly Uint8Array[] {
    if (this.bytes || !this.parts || this.parts.length <= 1) return [this.any];
    const chunks: Uint8Array[] = [anyHead(this.typeUrl, byteLength(this.parts))];
    for (const p of this.parts) chunks.push(p.bytes);
    return chunks;
  }

  private assembled(): { readonly body: Uint8Array; readonly any: Uint8Array } {
    if (!this.bytes) {
      this.bytes = anyOfParts(this.typeUrl, this.parts ?? []);
      this.parts = undefined;
    }
    return this.bytes;
  }
}

const duplicate = (typeUrl: TypeUrl, name: string): Error => new Error(`duplicate ${typeUrl} resource "${name}"`);

/** A type's set built from its inputs alone. */
function fullTypeSet(typeUrl: TypeUrl, inputs: readonly ResourceInput[], previous: Snapshot | undefined): TypeSet {
  const named = new Map<string, XdsResource>();
  for (const input of inputs) {
    assertType(typeUrl, input);
    if (named.has(input.name)) throw duplicate(typeUrl, input.name);
    named.set(input.name, resourceOf(input, previous));
  }
  const sum = sumOf(named.values());
  return { named, inputs, sum, version: versionOfSum(sum) };
}

/**
 * A type's set from the one before: inputs that are the same objects at the same place are the same
 * resources, so only the others are removed and added (src/resources/window.ts). Undefined when most of the
 * list changed (a full build is as cheap).
 */
function nextTypeSet(typeUrl: TypeUrl, inputs: readonly ResourceInput[], before: TypeSet, previous: Snapshot): { set: TypeSet; removed: readonly XdsResource[] } | undefined {
  const changes = sharedChanges(before.inputs, inputs);
  if (!changes) return undefined;
  if (changes.removed.length === 0 && changes.added.length === 0) return { set: { ...before, inputs }, removed: [] };
  const named = LayeredMap.over(before.named);
  const sum = new Uint32Array(before.sum.sum);
  const removed: XdsResource[] = [];
  for (const input of changes.removed) {
    const r = named.get(input.name);
    if (!r) continue;
    named.delete(input.name);
    addDigest(sum, r, -1);
    removed.push(r);
  }
  for (const input of changes.added) {
    assertType(typeUrl, input);
    if (named.has(input.name)) throw duplicate(typeUrl, input.name);
    const r = resourceOf(input, previous);
    named.set(input.name, r);
    addDigest(sum, r, 1);
  }
  // A name removed and added again is not removed.
  const gone = removed.filter((r) => !named.has(r.name));
  const setSum = { sum, count: named.size };
  return { set: { named, inputs, sum: setSum, version: versionOfSum(setSum) }, removed: gone };
}

/**
 * The resources of one type of a snapshot built from the one before: that snapshot's map (never copied to
 * build this one) under a small layer of the names this one sets and removes. Lookups read the layers; the
 * first walk over every entry (a push to a wildcard client) makes one flat map, kept. Layers never stack:
 * a map built over a layered one copies its small layer, and a layer past a size is flattened.
 */
class LayeredMap implements ReadonlyMap<string, XdsResource> {
  private flatMap: Map<string, XdsResource> | undefined;
  private count: number;

  private constructor(
    private readonly base: ReadonlyMap<string, XdsResource>,
    private readonly layer: Map<string, XdsResource>,
    private readonly gone: Set<string>,
  ) {
    let n = base.size;
    for (const k of gone) if (base.has(k)) n--;
    for (const k of layer.keys()) if (!base.has(k) || gone.has(k)) n++;
    this.count = n;
  }

  /** A map to change, over `named` (a snapshot's map, which it never changes). */
  static over(named: ReadonlyMap<string, XdsResource>): LayeredMap {
    if (named instanceof LayeredMap) {
      if (named.flatMap) return new LayeredMap(named.flatMap, new Map(), new Set());
      if (named.layer.size + named.gone.size <= Math.max(256, named.base.size >> 4)) return new LayeredMap(named.base, new Map(named.layer), new Set(named.gone));
      return new LayeredMap(named.flat(), new Map(), new Set());
    }
    return new LayeredMap(named, new Map(), new Set());
  }

  get size(): number {
    return this.count;
  }

  get(name: string): XdsResource | undefined {
    const own = this.layer.get(name);
    if (own) return own;
    return this.gone.has(name) ? undefined : this.base.get(name);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Only while the snapshot that owns this map is being built. */
  set(name: string, r: XdsResource): void {
    if (!this.has(name)) this.count++;
    this.layer.set(name, r);
  }

  /** Only while the snapshot that owns this map is being built. */
  delete(name: string): void {
    if (!this.has(name)) return;
    this.count--;
    this.layer.delete(name);
    if (this.base.has(name)) this.gone.add(name);
  }

  private flat(): Map<string, XdsResource> {
    if (!this.flatMap) {
      const flat = new Map<string, XdsResource>();
      for (const [k, v] of this.base) {
        if (this.gone.has(k) && !this.layer.has(k)) continue;
        flat.set(k, this.layer.get(k) ?? v);
      }
      for (const [k, v] of this.layer) if (!flat.has(k)) flat.set(k, v);
      this.flatMap = flat;
    }
    return this.flatMap;
  }

  forEach(fn: (value: XdsResource, key: string, map: ReadonlyMap<string, XdsResource>) => void, thisArg?: unknown): void {
    this.flat().forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  entries(): ReturnType<Map<string, XdsResource>['entries']> {
    return this.flat().entries();
  }

  keys(): ReturnType<Map<string, XdsResource>['keys']> {
    return this.flat().keys();
  }

  values(): ReturnType<Map<string, XdsResource>['values']> {
    return this.flat().values();
  }

  [Symbol.iterator](): ReturnType<Map<string, XdsResource>['entries']> {
    return this.flat().entries();
  }
}

/** The inputs of each type, in order. */
function groupedByType(inputs: Iterable<ResourceInput>): Map<TypeUrl, readonly ResourceInput[]> {
  const byType = new Map<TypeUrl, ResourceInput[]>();
  for (const input of inputs) {
    let list = byType.get(input.typeUrl);
    if (!list) {
      list = [];
      byType.set(input.typeUrl, list);
    }
    list.push(input);
  }
  return byType;
}

/**
 * The inputs of each type when the list is recorded as one list per type (translateGateway): those lists
 * themselves, so that the ones every mode shares are compared with the last ones once per build (sharedChanges),
 * and 40,000 inputs are not read to be grouped. Each list's type is its first input's; an input of another
 * type is refused where it is first read (fullTypeSet, nextTypeSet). Undefined: group them.
 */
function typedLists(inputs: Iterable<ResourceInput>): Map<TypeUrl, readonly ResourceInput[]> | undefined {
  const lists = Array.isArray(inputs) ? segments(inputs as readonly ResourceInput[]) : undefined;
  if (!lists) return undefined;
  const byType = new Map<TypeUrl, readonly ResourceInput[]>();
  for (const list of lists as readonly (readonly ResourceInput[])[]) {
    const first = list[0];
    if (!first) continue;
    if (byType.has(first.typeUrl)) return undefined;
    byType.set(first.typeUrl, list);
  }
  return byType;
}

/** Refuses an input listed with resources of another type. */
function assertType(typeUrl: TypeUrl, input: ResourceInput): void {
  if (input.typeUrl !== typeUrl) throw new Error(`${input.typeUrl} resource "${input.name}" is listed with the ${typeUrl} resources`);
}

let serials = 0;

export class Snapshot {
  /** Hash over every type's version: equal snapshots have equal versions. */
  readonly version: string;
  /** Identifies this snapshot object (what `removedSince` compares). */
  readonly serial = ++serials;

  private constructor(
    private readonly sets: ReadonlyMap<TypeUrl, TypeSet>,
    /** The snapshot this one was built from and what of it is gone here, when it was built by difference. */
    private readonly change?: { readonly base: number; readonly removed: readonly XdsResource[] },
  ) {
    const parts: string[] = [];
    for (const typeUrl of PUSH_ORDER) parts.push(`${typeUrl}=${this.typeVersion(typeUrl)}`);
    this.version = contentHash(parts.join('\n'));
  }

  /**
   * Encodes the inputs into a snapshot. Resources whose bytes equal one in `previous` reuse its entry, so
   * an unchanged resource keeps one copy of its bytes however many snapshots come and go. When `previous`
   * was built from inputs mostly the same objects in the same order (a translator's memo), only the
   * inputs that differ are looked at: a change costs what it touches, not the whole set.
   * Throws on a duplicate (type, name) or a message that does not fit its proto.
   */
  static from(inputs: Iterable<ResourceInput>, previous?: Snapshot): Snapshot {
    const byType = typedLists(inputs) ?? groupedByType(inputs);
    const sets = new Map<TypeUrl, TypeSet>();
    const removed: XdsResource[] = [];
    for (const [typeUrl, list] of byType) {
      const before = previous?.sets.get(typeUrl);
      const next = before && previous ? nextTypeSet(typeUrl, list, before, previous) : undefined;
      if (next) {
        sets.set(typeUrl, next.set);
        for (const r of next.removed) removed.push(r);
        continue;
      }
      const set = fullTypeSet(typeUrl, list, previous);
      sets.set(typeUrl, set);
      if (before) for (const r of before.named.values()) if (!set.named.has(r.name)) removed.push(r);
    }
    if (previous) for (const [typeUrl, set] of previous.sets) if (!byType.has(typeUrl)) for (const r of set.named.values()) removed.push(r);
    return new Snapshot(sets, previous ? { base: previous.serial, removed } : undefined);
  }

  /**
   * The resources of `base` that this snapshot no longer has, when this snapshot was built from `base`
   * (Snapshot.from's `previous`); undefined otherwise (compare the two yourself).
   */
  removedSince(base: Snapshot): readonly XdsResource[] | undefined {
    return this.change?.base === base.serial ? this.change.removed : undefined;
  }

  /**
   * This snapshot plus already-encoded resources of another one (a type and name this snapshot has keeps
   * its own). The controller uses it to keep removed clusters a little longer.
   */
  withRetained(extra: Iterable<XdsResource>): Snapshot {
    const more = [...extra].filter((r) => !this.get(r.typeUrl, r.name));
    if (more.length === 0) return this;
    const grown = new Map<TypeUrl, { named: Map<string, XdsResource>; sum: Uint32Array }>();
    for (const r of more) {
      let g = grown.get(r.typeUrl);
      if (!g) {
        const set = this.sets.get(r.typeUrl);
        g = { named: new Map(set?.named ?? []), sum: set ? new Uint32Array(set.sum.sum) : new Uint32Array(4) };
        grown.set(r.typeUrl, g);
      }
      if (g.named.has(r.name)) continue;
      g.named.set(r.name, r);
      addDigest(g.sum, r, 1);
    }
    const sets = new Map(this.sets);
    for (const [typeUrl, g] of grown) {
      const sum = { sum: g.sum, count: g.named.size };
      // Retained resources come from no input: a snapshot built from this one compares its inputs only.
      sets.set(typeUrl, { named: g.named, inputs: NO_INPUTS, sum, version: versionOfSum(sum) });
    }
    return new Snapshot(sets);
  }

  /** An empty snapshot. */
  static empty(): Snapshot {
    return new Snapshot(new Map());
  }

  /** Every resource of a type, by name. */
  resources(typeUrl: TypeUrl): ReadonlyMap<string, XdsResource> {
    return this.sets.get(typeUrl)?.named ?? EMPTY;
  }

  /** One resource, or undefined. */
  get(typeUrl: TypeUrl, name: string): XdsResource | undefined {
    return this.sets.get(typeUrl)?.named.get(name);
  }

  /** The version of all resources of one type (what a wildcard state-of-the-world client is told). */
  typeVersion(typeUrl: TypeUrl): string {
    return this.sets.get(typeUrl)?.version ?? EMPTY_VERSION;
  }

  /** Resource counts per type, for status pages. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const typeUrl of PUSH_ORDER) out[typeUrl] = this.resources(typeUrl).size;
    return out;
  }
}
