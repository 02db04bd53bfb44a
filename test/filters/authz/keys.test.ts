import { describe, expect, it } from 'vitest';
import { ApiKeyIndex, MAX_API_KEY_LENGTH } from '../../../filters/authz/keys.js';
import { Lru } from '../../../filters/authz/lru.js';
import { sha256Hex } from './fixtures.js';

/** The digest with its last hex digit changed: differs from the real one in 4 bits, at the very end. */
function lastHexFlipped(hex: string): string {
  const last = hex.at(-1) === '0' ? '1' : '0';
  return hex.slice(0, -1) + last;
}

describe('ApiKeyIndex', () => {
  it('finds the consumer and key id of a presented key', () => {
    const index = new ApiKeyIndex([
      { name: 'acme', apiKeys: [{ id: 'acme-1', sha256: sha256Hex('acme-secret-1') }] },
      { name: 'globex', apiKeys: [{ id: 'gx-1', sha256: sha256Hex('globex-secret') }, { id: 'gx-2', sha256: sha256Hex('globex-other') }] },
    ]);
    expect(index.size).toBe(3);
    expect(index.lookup('acme-secret-1')).toEqual({ consumer: 'acme', keyId: 'acme-1' });
    expect(index.lookup('globex-other')).toEqual({ consumer: 'globex', keyId: 'gx-2' });
    expect(index.lookup('nobody-has-this')).toBeUndefined();
  });

  it('matches the documented digest (hex SHA-256 of the UTF-8 key)', () => {
    // docs/policy.md's example digest is the SHA-256 of "foo".
    const index = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'k', sha256: '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae' }] }]);
    expect(index.lookup('foo')).toEqual({ consumer: 'acme', keyId: 'k' });
    expect(index.lookup('Foo')).toBeUndefined();
  });

  it('rejects a key whose digest differs from a stored one only in the last hex digit', () => {
    const key = 'almost-right-key';
    const stored = lastHexFlipped(sha256Hex(key));
    expect(stored.slice(0, 63)).toBe(sha256Hex(key).slice(0, 63));
    const near = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'k', sha256: stored }] }]);
    expect(near.lookup(key)).toBeUndefined();
    // The same lookup against the exact digest succeeds, so the rejection above is about that one digit.
    const exact = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'k', sha256: sha256Hex(key) }] }]);
    expect(exact.lookup(key)).toEqual({ consumer: 'acme', keyId: 'k' });
  });

  it('tells apart digests that share a bucket prefix', () => {
    const key = 'bucket-mate';
    const real = sha256Hex(key);
    // Two digests with the same first 16 bits as the real one land in its bucket, before and after it.
    const before = real.slice(0, 4) + '0'.repeat(60);
    const after = real.slice(0, 4) + 'f'.repeat(60);
    const index = new ApiKeyIndex([
      { name: 'first', apiKeys: [{ id: 'a', sha256: before }] },
      { name: 'owner', apiKeys: [{ id: 'b', sha256: real }] },
      { name: 'last', apiKeys: [{ id: 'c', sha256: after }] },
    ]);
    expect(index.lookup(key)).toEqual({ consumer: 'owner', keyId: 'b' });
  });

  it('refuses empty and oversized keys without a match', () => {
    const long = 'k'.repeat(MAX_API_KEY_LENGTH + 1);
    const index = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'e', sha256: sha256Hex('') }, { id: 'l', sha256: sha256Hex(long) }] }]);
    expect(index.lookup('')).toBeUndefined();
    expect(index.lookup(long)).toBeUndefined();
    const fits = 'k'.repeat(MAX_API_KEY_LENGTH);
    expect(new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'f', sha256: sha256Hex(fits) }] }]).lookup(fits)).toEqual({ consumer: 'acme', keyId: 'f' });
  });

  it('caches the digest of a matched key only, bounded, and still compares it with the store', () => {
    const index = new ApiKeyIndex(
      [
        { name: 'acme', apiKeys: [{ id: 'a1', sha256: sha256Hex('acme-1') }, { id: 'a2', sha256: sha256Hex('acme-2') }] },
        { name: 'globex', apiKeys: [{ id: 'g1', sha256: sha256Hex('globex-1') }] },
      ],
      2,
    );
    expect(index.lookup('nobody')).toBeUndefined();
    expect(index.cachedDigests).toBe(0);
    for (let i = 0; i < 3; i++) expect(index.lookup('acme-1')).toEqual({ consumer: 'acme', keyId: 'a1' });
    expect(index.cachedDigests).toBe(1);
    expect(index.lookup('acme-2')).toEqual({ consumer: 'acme', keyId: 'a2' });
    expect(index.lookup('globex-1')).toEqual({ consumer: 'globex', keyId: 'g1' });
    // Bounded: the third key pushed out the least recently used one; every key still answers the same.
    expect(index.cachedDigests).toBe(2);
    expect(index.lookup('acme-1')).toEqual({ consumer: 'acme', keyId: 'a1' });
    expect(index.lookup('acme-2')).toEqual({ consumer: 'acme', keyId: 'a2' });
    expect(index.lookup('globex-1')).toEqual({ consumer: 'globex', keyId: 'g1' });
    // A near miss of a cached key is hashed, not served from the cache.
    expect(index.lookup('acme-1 ')).toBeUndefined();
    expect(index.lookup('ACME-1')).toBeUndefined();
  });

  it('forgets a key with the policy: a new index for a policy without it refuses it at once', () => {
    const before = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'a1', sha256: sha256Hex('acme-1') }, { id: 'a2', sha256: sha256Hex('acme-2') }] }]);
    expect(before.lookup('acme-1')).toEqual({ consumer: 'acme', keyId: 'a1' });
    const after = new ApiKeyIndex([{ name: 'acme', apiKeys: [{ id: 'a2', sha256: sha256Hex('acme-2') }] }]);
    expect(after.lookup('acme-1')).toBeUndefined();
    expect(after.lookup('acme-2')).toEqual({ consumer: 'acme', keyId: 'a2' });
  });
});

describe('Lru', () => {
  it('drops the least recently used entry past its capacity', () => {
    const lru = new Lru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1); // a is now the most recent
    lru.set('c', 3);
    expect(lru.size).toBe(2);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    expect(lru.get('c')).toBe(3);
    lru.set('a', 10);
    lru.set('d', 4);
    expect(lru.get('c')).toBeUndefined();
    expect(lru.get('a')).toBe(10);
    expect(() => new Lru(0)).toThrow(RangeError);
  });
});
