import { createHash, timingSafeEqual } from 'node:crypto';
import type { ConsumerRules } from '../../src/contract/filter-policy.js';
import { Lru } from './lru.js';

/**
 * API-key lookup. The policy holds only the hex SHA-256 of each key, so a lookup hashes the presented key and
 * looks for that digest.
 *
 * Why the lookup is shaped this way: a plain `Map<hexDigest, owner>` would compare strings with an early exit
 * on the first differing character, so a caller could time how many leading hex digits of a stored digest
 * their guess shares. Instead the digests are bucketed by their first two bytes and every candidate in the
 * bucket is compared in full with `crypto.timingSafeEqual`, never stopping at the first match. What timing
 * can still reveal is whether some stored digest starts with the same 16 bits as the digest of the presented
 * key. That is harmless: the caller does not choose a digest, only a key, and turning knowledge of a digest
 * (even all of it) into a key that hashes to it is a SHA-256 preimage search. The prefix buckets keep a
 * lookup at about one comparison however many keys the policy holds, where a scan of every digest would
 * cost O(keys) per request.
 *
 * The digest of a presented key that matched is remembered (a bounded LRU per index, so per policy version:
 * a new policy builds a new index with an empty cache), which saves the SHA-256 on a known key's next request;
 * the cached digest is then compared in constant time against the bucket exactly as a fresh one would be, so
 * a key removed from the policy stops matching at once. Only matches are cached: random keys cannot churn
 * it, and what its timing could tell (that a key was presented and valid recently) the answer itself tells
 * whoever presents that key.
 */

/** Who an API key belongs to: the Consumer's name and the key's `id` (safe to log; never the key). */
export interface ApiKeyOwner {
  readonly consumer: string;
  readonly keyId: string;
}

interface IndexedKey {
  readonly digest: Buffer;
  readonly owner: ApiKeyOwner;
}

/** Presented keys longer than this are refused without hashing: no real key is this long. */
export const MAX_API_KEY_LENGTH = 4096;

/** How many digests of matched keys an index remembers; keys longer than DIGEST_CACHE_KEY_LENGTH are never cached. */
export const DIGEST_CACHE_ENTRIES = 10_000;
const DIGEST_CACHE_KEY_LENGTH = 256;

function bucketOf(digest: Buffer): number {
  return digest.readUInt16BE(0);
}

/** The SHA-256 digest of a key as the policy stores it: over the key's UTF-8 bytes. */
function digestOf(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The index of every Consumer's API-key digests, answering which consumer a presented key belongs to. */
export class ApiKeyIndex {
  private readonly buckets = new Map<number, IndexedKey[]>();
  private count = 0;
  /** Presented key -> its digest, for keys that matched under this index. */
  private readonly digests: Lru<string, Buffer>;

  /** Indexes the digests of the given consumers (policy checks guarantee one digest names one consumer). */
  constructor(consumers: readonly Pick<ConsumerRules, 'name' | 'apiKeys'>[], digestCacheEntries = DIGEST_CACHE_ENTRIES) {
    this.digests = new Lru(digestCacheEntries);
    for (const consumer of consumers) {
      for (const key of consumer.apiKeys) {
        // The schema has already lower-cased and checked the 64 hex digits.
        const digest = Buffer.from(key.sha256, 'hex');
        const entry: IndexedKey = { digest, owner: { consumer: consumer.name, keyId: key.id } };
        const bucket = this.buckets.get(bucketOf(digest));
        if (bucket) bucket.push(entry);
        else this.buckets.set(bucketOf(digest), [entry]);
        this.count += 1;
      }
    }
  }

  /** How many keys are indexed. */
  get size(): number {
    return this.count;
  }

  /** How many digests are cached (tests). */
  get cachedDigests(): number {
    return this.digests.size;
  }

  /** The owner of the presented key, or undefined when no Consumer holds it. */
  lookup(presentedKey: string): ApiKeyOwner | undefined {
    if (presentedKey.length === 0 || presentedKey.length > MAX_API_KEY_LENGTH) return undefined;
    const cached = this.digests.get(presentedKey);
    const digest = cached ?? digestOf(presentedKey);
    const bucket = this.buckets.get(bucketOf(digest));
    if (!bucket) return undefined;
    let owner: ApiKeyOwner | undefined;
    // Every candidate is compared in full, even after a match, so the time spent does not say which one matched.
    for (const candidate of bucket) {
      if (timingSafeEqual(candidate.digest, digest) && owner === undefined) owner = candidate.owner;
    }
    if (owner !== undefined && cached === undefined && presentedKey.length <= DIGEST_CACHE_KEY_LENGTH) this.digests.set(presentedKey, digest);
    return owner;
  }
}
