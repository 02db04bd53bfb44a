/**
 * Bytes per Envoy for one change, with the split in the routes (Gateway.traffic.split: routes, weighted
 * clusters) and in the endpoints (traffic.split: endpoints, src/translate/eds-split.ts). M models (the
 * side-by-side's fixtures: two live versions each) go through the GatewayController as `flowgate serve` runs
 * them; then one change, and the responses one Envoy is sent for it are encoded with the xDS server's own
 * encoders (src/xds/wire.ts):
 *   - SotW: per resource type whose version changed, one DiscoveryResponse: every resource of the type for
 *     listeners and clusters, the changed ones for routes and endpoints (what src/xds/stream/sotw.ts sends a
 *     subscriber of all of them, as an Envoy is);
 *   - delta: per type, one DeltaDiscoveryResponse with the resources whose version changed or that are new,
 *     and the names of the removed ones.
 * The FilterPolicy (to the filter service, not to Envoys) is left out. gRPC framing (5 bytes a message) too.
 * Changes: `alias move` (one model's challenger alias moved to a version that was not live) and `weight edit`
 * (one model's canary weight changed in the policy). Measures, never asserts.
 *
 *   npx tsx bench/eds-split.ts [--models 1000]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { GatewayController } from '../src/control/controller.js';
import { policyFromFiles, type PolicyFileText } from '../src/policy/load.js';
import type { Policy } from '../src/policy/policy.js';
import { registrySnapshotFrom } from '../src/registry/snapshot.js';
import type { RegisteredModel } from '../src/registry/types.js';
import { PUSH_ORDER } from '../src/xds/stream/ordering.js';
import { changedSince } from '../src/xds/stream/sotw.js';
import { TypeUrl } from '../src/resources/types.js';
import { SnapshotCache } from '../src/xds/cache.js';
import type { Snapshot } from '../src/xds/snapshot.js';
import { encodeDeltaResponse, encodeSotwResponse, wireLength } from '../src/xds/wire.js';
import { modelPolicy, registryModels } from './peers/fixtures.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: '1000' } } });

type Split = 'routes' | 'endpoints';

const gateway = (split: Split): string => ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', `traffic: { split: ${split} }`, ''].join('\n');

function policy(split: Split, models: number, edited = -1): Policy {
  const files: PolicyFileText[] = [{ file: 'gateway.yaml', text: gateway(split) }];
  for (let i = 0; i < models; i++) files.push({ file: `model-${i}.yaml`, text: modelPolicy(i, i === edited ? 20 : 10) });
  const load = policyFromFiles(`/bench-eds-split-${split}-${edited}`, files);
  if (!load.ok) throw new Error(`bench policy rejected: ${load.issues.map((i) => i.message).join('; ')}`);
  return load.policy;
}

/** The fixtures' registry; `moved`: model `moved`'s challenger alias on version 3 instead of 2. */
function registry(models: number, moved = -1): RegisteredModel[] {
  return registryModels(models, false).map((m, i) => ({
    name: m.name,
    description: '',
    tags: {},
    aliases: i === moved ? { ...m.aliases, challenger: '3' } : m.aliases,
    versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
  }));
}

const CP = 'flowgate-bench';
const NONCE = '00000001';

/** What one Envoy is sent to go from `before` to `after`, by type and in total, in both transports. */
function bytesPerEnvoy(before: Snapshot, after: Snapshot): { sotw: number; delta: number; types: string[] } {
  let sotw = 0;
  let delta = 0;
  const types: string[] = [];
  // The FilterPolicy goes to the filter service, never to an Envoy.
  for (const typeUrl of PUSH_ORDER.filter((t) => t !== TypeUrl.FilterPolicy)) {
    const version = after.typeVersion(typeUrl);
    if (version === before.typeVersion(typeUrl)) continue;
    const now = after.resources(typeUrl);
    const was = before.resources(typeUrl);
    const changed = [...now.values()].filter((r) => was.get(r.name)?.version !== r.version);
    const removed = [...was.keys()].filter((n) => !now.has(n));
    const part = changedSince(typeUrl, was, now);
    const s = wireLength(encodeSotwResponse(typeUrl, version, part ?? now.values(), NONCE, CP, part ? 'bench' : ''));
    const d = wireLength(encodeDeltaResponse(typeUrl, version, changed, removed, NONCE, CP));
    sotw += s;
    delta += d;
    types.push(`${typeUrl.split('.').at(-1) ?? typeUrl} (SotW ${kb(s)}, delta ${changed.length} changed + ${removed.length} removed = ${kb(d)})`);
  }
  return { sotw, delta, types };
}

const kb = (n: number): string => (n < 10_000 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`);

function published(split: Split, models: number, edited: number, moved: number): Snapshot {
  const controller = new GatewayController({ cache: new SnapshotCache(), clusterLingerMs: 0 });
  controller.setPolicy(policy(split, models, edited));
  controller.setRegistry(registrySnapshotFrom(registry(models, moved)));
  const s = controller.snapshot('ads');
  if (!s) throw new Error('nothing published');
  return s;
}

const models = Number(values.models);
const target = models >> 1;
console.log(`eds-split bench: ${models} models, two live versions each; load average ${loadavg()[0]?.toFixed(1)}`);
for (const split of ['routes', 'endpoints'] as const) {
  const base = published(split, models, -1, -1);
  const total = Object.values(base.counts()).reduce((a, b) => a + b, 0);
  console.log(`\ntraffic.split: ${split} (${total} resources)`);
  for (const [change, after] of [
    ['alias move', published(split, models, -1, target)],
    ['weight edit', published(split, models, target, -1)],
  ] as const) {
    const b = bytesPerEnvoy(base, after);
    console.log(`  ${change}: SotW ${kb(b.sotw)}, delta ${kb(b.delta)} per Envoy`);
    for (const t of b.types) console.log(`    ${t}`);
  }
}
