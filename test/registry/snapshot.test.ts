import { describe, expect, test } from 'vitest';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { RegisteredModel } from '../../src/registry/types.js';

/**
 * A poll hands in new objects for every model: one equal to the last one given for its name is that time's
 * canonical object (what the IR reuses by identity); any difference, however deep, is a new one.
 */

const model = (name: string, tag = 'a', challenger = '2'): RegisteredModel => ({
  name,
  description: '',
  tags: { team: 'ml' },
  aliases: { champion: '1', challenger },
  versions: ['1', '2', '3'].map((version) => ({
    name,
    version,
    status: 'READY',
    stage: 'None',
    aliases: [],
    tags: { note: version === '3' ? tag : 'x' },
    source: `models:/${name}/${version}`,
    runId: `run-${version}`,
    createdAt: 1,
    updatedAt: 2,
  })),
});

describe('registry snapshots from polled models', () => {
  test('new objects equal to the last ones are the last canonical objects, whatever their key order', () => {
    const first = registrySnapshotFrom([model('snap-a'), model('snap-b')]);
    const reordered = { ...model('snap-b'), aliases: { challenger: '2', champion: '1' } };
    const again = registrySnapshotFrom([model('snap-a'), reordered]);
    expect(again.hash).toBe(first.hash);
    expect(again.models.get('snap-a')).toBe(first.models.get('snap-a'));
    expect(again.models.get('snap-b')).toBe(first.models.get('snap-b'));
  });

  test('a change deep in a version, or of an alias, is a new canonical object with the change', () => {
    const first = registrySnapshotFrom([model('snap-c'), model('snap-d')]);
    const next = registrySnapshotFrom([model('snap-c', 'b'), model('snap-d', 'a', '3')]);
    expect(next.hash).not.toBe(first.hash);
    expect(next.models.get('snap-c')).not.toBe(first.models.get('snap-c'));
    expect(next.models.get('snap-c')?.versions[2]?.tags.note).toBe('b');
    expect(next.models.get('snap-d')?.aliases.challenger).toBe('3');
    expect(next.models.get('snap-d')?.versions.find((v) => v.version === '3')?.aliases).toEqual(['challenger']);
    // And back: the earlier content again is equal in hash to the first snapshot.
    expect(registrySnapshotFrom([model('snap-c'), model('snap-d')]).hash).toBe(first.hash);
  });

  test('an extra or missing field is a difference', () => {
    const first = registrySnapshotFrom([model('snap-e')]);
    const extra = { ...model('snap-e'), tags: { team: 'ml', owner: 'x' } };
    expect(registrySnapshotFrom([extra]).models.get('snap-e')?.tags).toEqual({ owner: 'x', team: 'ml' });
    const fewer = { ...model('snap-e'), tags: {} };
    expect(registrySnapshotFrom([fewer]).models.get('snap-e')?.tags).toEqual({});
    expect(registrySnapshotFrom([model('snap-e')]).hash).toBe(first.hash);
  });
});
