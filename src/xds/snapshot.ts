import { createHash } from 'node:crypto';
import { encodeAny, encodeMessage } from '../proto/codec.js';
import type { ResourceInput, TypeUrl } from '../resources/types.js';
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
}


/** A short content hash (16 hex digits) of bytes. */
export function contentHash(...parts: (Uint8Array | string)[]): string {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest('hex').slice(0, 16);
}

/** Each resource's (name, version) digest as four 32-bit lanes, computed once per resource. */
const keyDigests = new WeakMap<XdsResource, Uint32Array>();

function keyDigest(r: XdsResource): Uint32Array {
  let d = keyDigests.get(r);
  if (!d) {
    const bytes = createHash('sha256').update(r.name).update('\u0000').update(r.version).digest();
    d = new Uint32Array([bytes.readUInt32BE(0), bytes.readUInt32BE(4), bytes.readUInt32BE(8), bytes.readUInt32BE(12)]);
    keyDigests.set(r, d);
  }
  return d;
}

/**
 * The version of a set of resources, independent of order: a hash of the count and of the lane-wise sums
 * (mod 2^32) of each (name, version) digest. A sum, not a sorted list, so a set of 40,000 resources costs a
 * walk over cached digests rather than a sort of 40,000 strings on every snapshot.
 */
export function setVersion(resources: Iterable<XdsResource>): string {
  const sum = new Uint32Array(4);
  let count = 0;
  for (const r of resources) {
    const d = keyDigest(r);
    for (let i = 0; i < 4; i++) sum[i] = ((sum[i] as number) + (d[i] as number)) >>> 0;
    count++;
  }
  return contentHash(`${count}:${[...sum].map((x) => x.toString(16).padStart(8, '0')).join('')}`);
}

const EMPTY: ReadonlyMap<string, XdsResource> = new Map();

/** The resource each message object was encoded into (messages are never mutated once given to a snapshot). */
const encodedResources = new WeakMap<object, XdsResource>();

export class Snapshot {
  /** Hash over every type's version: equal snapshots have equal versions. */
  readonly version: string;
  private readonly typeVersions = new Map<TypeUrl, string>();

  private constructor(private readonly byType: ReadonlyMap<TypeUrl, ReadonlyMap<string, XdsResource>>) {
    const parts: string[] = [];
    for (const typeUrl of PUSH_ORDER) {
      const v = setVersion(this.resources(typeUrl).values());
      this.typeVersions.set(typeUrl, v);
      parts.push(`${typeUrl}=${v}`);
    }
    this.version = contentHash(parts.join('\n'));
  }

  /**
   * Encodes the inputs into a snapshot. Resources whose bytes equal one in `previous` reuse its entry, so
   * an unchanged resource keeps one copy of its bytes however many snapshots come and go.
   * Throws on a duplicate (type, name) or a message that does not fit its proto.
   */
  static from(inputs: Iterable<ResourceInput>, previous?: Snapshot): Snapshot {
    const byType = new Map<TypeUrl, Map<string, XdsResource>>();
    for (const input of inputs) {
      let named = byType.get(input.typeUrl);
      if (!named) {
        named = new Map();
        byType.set(input.typeUrl, named);
      }
      if (named.has(input.name)) throw new Error(`duplicate ${input.typeUrl} resource "${input.name}"`);
      // The same message object as before (a translator's memo): the same resource, hashed and wrapped once.
      const known = encodedResources.get(input.message);
      if (known && known.typeUrl === input.typeUrl && known.name === input.name) {
        named.set(input.name, known);
        continue;
      }
      const body = encodeMessage(input.typeUrl, input.message);
      const version = contentHash(input.typeUrl, '\u0000', body);
      const prior = previous?.get(input.typeUrl, input.name);
      const resource = prior && prior.version === version ? prior : { typeUrl: input.typeUrl, name: input.name, version, body, any: encodeAny(input.typeUrl, body) };
      encodedResources.set(input.message, resource);
      named.set(input.name, resource);
    }
    return new Snapshot(byType);
  }

  /**
   * This snapshot plus already-encoded resources of another one (a type and name this snapshot has keeps
   * its own). The controller uses it to keep removed clusters a little longer.
   */
  withRetained(extra: Iterable<XdsResource>): Snapshot {
    const more = [...extra].filter((r) => !this.get(r.typeUrl, r.name));
    if (more.length === 0) return this;
    const byType = new Map<TypeUrl, Map<string, XdsResource>>([...this.byType].map(([t, named]) => [t, new Map(named)]));
    let added = 0;
    for (const r of more) {
      let named = byType.get(r.typeUrl);
      if (!named) {
        named = new Map();
        byType.set(r.typeUrl, named);
      }
      if (named.has(r.name)) continue;
      named.set(r.name, r);
      added++;
    }
    return added === 0 ? this : new Snapshot(byType);
  }

  /** An empty snapshot. */
  static empty(): Snapshot {
    return new Snapshot(new Map());
  }

  /** Every resource of a type, by name. */
  resources(typeUrl: TypeUrl): ReadonlyMap<string, XdsResource> {
    return this.byType.get(typeUrl) ?? EMPTY;
  }

  /** One resource, or undefined. */
  get(typeUrl: TypeUrl, name: string): XdsResource | undefined {
    return this.byType.get(typeUrl)?.get(name);
  }

  /** The version of all resources of one type (what a wildcard state-of-the-world client is told). */
  typeVersion(typeUrl: TypeUrl): string {
    return this.typeVersions.get(typeUrl) ?? setVersion([]);
  }

  /** Resource counts per type, for status pages. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const typeUrl of PUSH_ORDER) out[typeUrl] = this.resources(typeUrl).size;
    return out;
  }
}
