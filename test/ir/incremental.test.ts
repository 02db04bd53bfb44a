import { describe, expect, test } from 'vitest';
import { runPipeline } from '../../src/pipeline/index.js';
import { policyFromFiles } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/policy.js';
import { registryHash, registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { RegisteredModel, RegistrySnapshot } from '../../src/registry/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { modelPolicy, registryModels } from '../../bench/peers/fixtures.js';

/**
 * The pipeline reuses what it made of a model whose inputs are the same objects as before (IR, routes,
 * clusters, encodings). Reuse must never show: an incremental build equals a build from fresh objects.
 */

const GATEWAY = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', ''].join('\n');

function policy(models: number, canaryOf0 = 10): Policy {
  const load = policyFromFiles('/t', [{ file: 'gateway.yaml', text: GATEWAY }, ...Array.from({ length: models }, (_, i) => ({ file: `m${i}.yaml`, text: modelPolicy(i, i === 0 ? canaryOf0 : 10) }))]);
  if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
  return load.policy;
}

function registry(models: number, challengerOf1: string): RegistrySnapshot {
  return registrySnapshotFrom(
    registryModels(models, false).map(
      (m, i): RegisteredModel => ({
        name: m.name,
        description: '',
        tags: {},
        aliases: i === 1 ? { ...m.aliases, challenger: challengerOf1 } : m.aliases,
        versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
      }),
    ),
  );
}

const versions = (out: ReturnType<typeof runPipeline>): string[] => out.groups.map((g) => Snapshot.from(g.resources).version);

describe('incremental pipeline', () => {
  test('an alias move rebuilds that model only, and the result equals a build from fresh objects', () => {
    const p = policy(4);
    const before = runPipeline({ policy: p, registry: registry(4, '2') });
    const moved = registry(4, '3');
    const after = runPipeline({ policy: p, registry: moved, previous: before.ir });
    // Unchanged models keep their IR objects; the moved one is new.
    expect(after.ir.models.length).toBe(4);
    after.ir.models.forEach((m, i) => (i === 1 ? expect(m).not.toBe(before.ir.models[i]) : expect(m).toBe(before.ir.models[i])));
    expect(after.ir.models[1]?.live.map((l) => l.version)).toEqual(['1', '3']);
    const fresh = runPipeline({ policy: policy(4), registry: registry(4, '3') });
    expect(after.ir).toEqual(fresh.ir);
    expect(versions(after)).toEqual(versions(fresh));
    expect(versions(after)).not.toEqual(versions(before));
  });

  test('a policy edit of one model changes that model, and a registry read again unchanged reuses its objects', () => {
    const base = runPipeline({ policy: policy(3), registry: registry(3, '2') });
    const edited = runPipeline({ policy: policy(3, 30), registry: registry(3, '2'), previous: base.ir });
    expect(edited.ir.models[0]?.live.map((l) => l.weight)).toEqual([70, 30]);
    expect(versions(edited)).not.toEqual(versions(base));
    // The same content read again (a poll that found nothing new) gives the very same model objects.
    const a = registry(3, '2');
    const b = registry(3, '2');
    expect(a.models.get('model-2')).toBe(b.models.get('model-2'));
    expect(a.hash).toBe(b.hash);
    // The hash assembled from each model's text is the one registryHash computes over the whole list.
    expect(a.hash).toBe(registryHash([...a.models.values()]));
  });
});
