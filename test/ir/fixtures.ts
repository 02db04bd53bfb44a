import { policyFromFiles } from '../../src/policy/load.js';
import { formatIssues } from '../../src/policy/format.js';
import type { Policy } from '../../src/policy/policy.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { ModelVersion, RegisteredModel, RegistrySnapshot } from '../../src/registry/types.js';

/** Registry and policy builders for IR and translator tests (fixed timestamps, so goldens are stable). */

export interface VersionSpec {
  readonly status?: string;
  readonly stage?: string;
  readonly tags?: Record<string, string>;
}

export function registry(models: Record<string, { versions: Record<string, VersionSpec>; aliases?: Record<string, string> }>): RegistrySnapshot {
  const list: RegisteredModel[] = Object.entries(models).map(([name, m]) => ({
    name,
    description: '',
    tags: {},
    aliases: m.aliases ?? {},
    versions: Object.entries(m.versions).map(
      ([version, v]): ModelVersion => ({
        name,
        version,
        status: v.status ?? 'READY',
        stage: v.stage ?? 'None',
        aliases: [],
        tags: v.tags ?? {},
        source: `models:/m-${name}-${version}`,
        runId: `run${version}`,
        createdAt: 1_700_000_000_000,
        updatedAt: 1_700_000_000_000,
      }),
    ),
  }));
  return registrySnapshotFrom(list, 1_700_000_000_000);
}

/** A policy from inline YAML files; fails the test with the issues when it does not load. */
export function policy(files: Record<string, string>): Policy {
  const load = policyFromFiles('policy', Object.entries(files).map(([file, text]) => ({ file, text })));
  if (!load.ok) throw new Error(formatIssues(load.issues, 'policy'));
  return load.policy;
}
