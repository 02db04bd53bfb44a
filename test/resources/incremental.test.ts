import { describe, expect, test } from 'vitest';
import { ConsistencyTracker, danglingReferences, InconsistentSnapshotError } from '../../src/resources/consistency.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';
import { changeLimit, listChanges, mapChanged } from '../../src/resources/window.js';
import { runPipeline, type PipelineOutput } from '../../src/pipeline/index.js';
import { policyFromFiles } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/policy.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { RegisteredModel, RegistrySnapshot } from '../../src/registry/types.js';
import { encodeMessage } from '../../src/proto/codec.js';
import { ALL_TYPES } from '../../src/resources/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { joined, withSegments } from '../../src/resources/segments.js';
import { irProblems } from '../../src/ir/validate.js';
import type { GatewayIR } from '../../src/ir/types.js';
import { listenerHttpFilters } from '../../src/translate/http-filters/index.js';
import { listenerOwners } from '../../src/translate/routes.js';
import { modelPolicy, registryModels } from '../../bench/peers/fixtures.js';

/**
 * The incremental consistency check and the list comparison it (and Snapshot.from, and the controller) rely
 * on: after any sequence of changes, the tracker must refuse exactly the sets the full check refuses.
 */

const cluster = (name: string, eds = false): ResourceInput => ({
  typeUrl: TypeUrl.Cluster,
  name,
  message: { name, ...(eds ? { type: 'EDS', eds_cluster_config: { service_name: name } } : { type: 'STRICT_DNS' }) },
});
const endpoints = (name: string): ResourceInput => ({ typeUrl: TypeUrl.ClusterLoadAssignment, name, message: { cluster_name: name } });
const listener = (name: string, routes: string): ResourceInput => ({ typeUrl: TypeUrl.Listener, name, message: { name, api_listener: { api_listener: { '@type': 'x', rds: { route_config_name: routes } } } } });
const route = (name: string, clusters: string[]): object => ({
  name,
  match: { prefix: `/${name}` },
  route: clusters.length === 1 ? { cluster: clusters[0] } : { weighted_clusters: { clusters: clusters.map((c) => ({ name: c, weight: { value: 1 } })) } },
});
const routeConfig = (name: string, routes: object[]): ResourceInput => ({ typeUrl: TypeUrl.RouteConfiguration, name, message: { name, virtual_hosts: [{ name: 'any', domains: ['*'], routes }] } });

describe('listChanges', () => {
  test('finds a lone replacement, an insertion and a removal by pointer comparison', () => {
    const [a, b, c, d, e, x] = ['a', 'b', 'c', 'd', 'e', 'x'].map((n) => ({ n })) as [object, object, object, object, object, object];
    const list = [a, b, c, d, e] as object[];
    expect(listChanges(list, [a, x, c, d, e], 10)).toEqual({ removed: [b], added: [x] });
    expect(listChanges(list, [a, b, x, c, d, e], 10)).toEqual({ removed: [], added: [x] });
    expect(listChanges(list, [a, b, d, e], 10)).toEqual({ removed: [c], added: [] });
    // Replacements at both ends (a resource rebuilt on every change) and one in the middle.
    expect(listChanges(list, [x, b, x, d, x], 10)).toEqual({ removed: [a, c, e], added: [x, x, x] });
    expect(listChanges([a, b, c, d, e, x], [a, x, x, d, e, b], 10)).toEqual({ removed: [b, c, x], added: [x, x, b] });
    expect(listChanges(list, list, 10)).toEqual({ removed: [], added: [] });
    expect(listChanges(list, [e, d, c, b, a], 2)).toBeUndefined();
    expect(changeLimit(10)).toBe(64);
    const calls: string[] = [];
    const upper = (o: object): string => {
      calls.push((o as { n: string }).n);
      return (o as { n: string }).n.toUpperCase();
    };
    expect(mapChanged(list, ['A', 'B', 'C', 'D', 'E'], [a, x, c, d, e, b], upper)).toEqual(['A', 'X', 'C', 'D', 'E', 'B']);
    expect(calls).toEqual(['x', 'b']);
    // Replacements at both ends and in the middle, each mapped once, the rest kept.
    calls.length = 0;
    expect(mapChanged(list, ['A', 'B', 'C', 'D', 'E'], [x, b, x, d, x], upper)).toEqual(['X', 'B', 'X', 'D', 'X']);
    expect(calls).toEqual(['x', 'x', 'x']);
  });

  test('joined is the lists concatenated, past one call\'s chunk of lists', () => {
    const lists = Array.from({ length: 20_000 }, (_, i) => (i % 3 === 0 ? [] : [i, -i]));
    const out = joined(lists);
    expect(out).toEqual(lists.flat());
    expect(out.length).toBe(2 * lists.filter((l) => l.length > 0).length);
  });
});

describe('ConsistencyTracker', () => {
  test('refuses exactly what the full check refuses, over a sequence of changes', () => {
    const tracker = new ConsistencyTracker();
    const options = { staticClusters: ['xds'] };
    const routes = Array.from({ length: 200 }, (_, i) => route(`r${i}`, [`c${i}`]));
    const clusters = Array.from({ length: 200 }, (_, i) => cluster(`c${i}`, i % 2 === 0));
    const eds = clusters.filter((_, i) => i % 2 === 0).map((c) => endpoints(c.name));
    const base = [...clusters, ...eds, listener('l', 'rc'), routeConfig('rc', routes)];
    const steps: ResourceInput[][] = [
      base,
      // A route now names a cluster that does not exist.
      [...clusters, ...eds, listener('l', 'rc'), routeConfig('rc', routes.map((r, i) => (i === 50 ? route('r50', ['c50', 'nope']) : r)))],
      base,
      // An EDS cluster loses its endpoints.
      [...clusters, ...eds.filter((e) => e.name !== 'c10'), listener('l', 'rc'), routeConfig('rc', routes)],
      // A cluster a route names is removed (the route configuration is the same object).
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, base[base.length - 2] as ResourceInput, base[base.length - 1] as ResourceInput],
      // ... and its route with it.
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, listener('l', 'rc'), routeConfig('rc', routes.filter((_, i) => i !== 7))],
      // The listener names a route configuration that is not there.
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, listener('l', 'other'), routeConfig('rc', routes.filter((_, i) => i !== 7))],
      // A cluster replaced by one of another name, the route following it; a static cluster named.
      [...clusters.map((c) => (c.name === 'c3' ? cluster('c3b') : c)), ...eds, listener('l', 'rc'), routeConfig('rc', [...routes.map((r, i) => (i === 3 ? route('r3', ['c3b']) : r)), route('xds', ['xds'])])],
      base,
    ];
    const verdicts = steps.map((set) => {
      const full = danglingReferences(set, options);
      let refused: InconsistentSnapshotError | undefined;
      try {
        tracker.check(set, options);
      } catch (err) {
        refused = err as InconsistentSnapshotError;
      }
      expect(refused?.dangling ?? []).toEqual(full);
      return full.length > 0;
    });
    expect(verdicts).toEqual([false, true, false, true, true, false, true, false, false]);
  });
});

describe('segmented route lists', () => {
  test('are checked and encoded per kept list, as the same list without segments', () => {
    const tracker = new ConsistencyTracker();
    const segmentsOf = (n: number, bad = -1): object[][] => Array.from({ length: n }, (_, i) => [route(`a${i}`, [`c${i}`]), route(`b${i}`, i === bad ? ['c0', 'gone'] : [`c${i}`])]);
    const config = (segs: object[][]): ResourceInput => routeConfig('rc', withSegments(segs.flat(), segs));
    const clusters = Array.from({ length: 100 }, (_, i) => cluster(`c${i}`));
    const good = segmentsOf(100);
    for (const [segs, refused] of [
      [good, false],
      [good.map((s, i) => (i === 40 ? (segmentsOf(100, 40)[40] as object[]) : s)), true],
      [good, false],
    ] as const) {
      const set = [...clusters, listener('l', 'rc'), config(segs)];
      expect(danglingReferences(set).length > 0).toBe(refused);
      if (refused) expect(() => tracker.check(set)).toThrow(InconsistentSnapshotError);
      else expect(() => tracker.check(set)).not.toThrow();
      const plain = routeConfig('rc', segs.flat());
      expect(Buffer.from(encodeMessage(plain.typeUrl, config(segs).message)).equals(Buffer.from(encodeMessage(plain.typeUrl, plain.message)))).toBe(true);
    }
  });
});

describe('incremental pipeline and snapshots', () => {
  type Split = 'routes' | 'endpoints';
  const gateway = (split: Split): string => ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', `traffic: { split: ${split} }`, ''].join('\n');
  const policyOf = (dir: string, models: number, canaryOf0: number, split: Split): Policy => {
    const load = policyFromFiles(dir, [{ file: 'gateway.yaml', text: gateway(split) }, ...Array.from({ length: models }, (_, i) => ({ file: `m${i}.yaml`, text: modelPolicy(i, i === 0 ? canaryOf0 : 10) }))]);
    if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
    return load.policy;
  };
  const registryOf = (models: number, moved: readonly number[]): RegistrySnapshot =>
    registrySnapshotFrom(
      registryModels(models, false).map(
        (m, i): RegisteredModel => ({
          name: m.name,
          description: '',
          tags: {},
          aliases: moved.includes(i) ? { ...m.aliases, challenger: '3' } : m.aliases,
          versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
        }),
      ),
    );
  const encoded = (out: PipelineOutput): string[][] => out.groups.map((g) => g.resources.map((r) => `${r.typeUrl} ${r.name} ${Buffer.from(encodeMessage(r.typeUrl, r.message)).toString('base64')}`));
  const summary = (s: Snapshot): string[] => ALL_TYPES.flatMap((t) => [...s.resources(t).values()].map((r) => `${t} ${r.name} ${r.version}`)).sort();

  // The split by endpoints decides which models have version clusters: the same steps in both modes, and
  // the mode switched back and forth between steps.
  const modes: Record<string, (k: number) => Split> = { routes: () => 'routes', endpoints: () => 'endpoints', switched: (k) => (k % 3 === 1 ? 'routes' : 'endpoints') };
  test.each(Object.keys(modes))('a sequence of moves, edits, additions and removals gives what a build from fresh objects gives (split: %s)', (mode) => {
    const splitAt = modes[mode] as (k: number) => Split;
    // [models, canary weight of model 0, models whose challenger moved]
    const steps: [number, number, number[]][] = [
      [120, 10, []],
      [120, 10, [60]],
      [120, 30, [60]],
      [121, 30, [60]],
      [121, 30, [60, 61, 62]],
      [118, 30, [60, 61, 62]],
      [118, 30, [5]],
      [160, 30, [5]],
    ];
    // Every incremental build first, each from the one before (as a serving process runs them), then the fresh ones.
    let previous: PipelineOutput | undefined;
    let built: Snapshot[] = [];
    const runs = steps.map(([models, canary, moved], k) => {
      const out = runPipeline({ policy: policyOf('/inc', models, canary, splitAt(k)), registry: registryOf(models, moved), previous: previous?.ir }, { proxyless: true });
      const chained = out.groups.map((g, i) => Snapshot.from(g.resources, built[i]));
      previous = out;
      built = chained;
      return { out, chained };
    });
    let snapshots: Snapshot[] = [];
    steps.forEach(([models, canary, moved], k) => {
      const { out, chained } = runs[k] as (typeof runs)[number];
      const fresh = runPipeline({ policy: policyOf(`/fresh-${k}`, models, canary, splitAt(k)), registry: registryOf(models, moved) }, { proxyless: true });
      expect(out.ir).toEqual(fresh.ir);
      expect(encoded(out)).toEqual(encoded(fresh));
      // The split mode is in effect: per-model split clusters exactly when it says endpoints.
      expect(encoded(out).flat().some((line) => line.includes(' split_'))).toBe(splitAt(k) === 'endpoints');
      fresh.groups.forEach((g, i) => {
        const alone = Snapshot.from(g.resources);
        const built = chained[i] as Snapshot;
        expect(built.version, `step ${k} ${g.variant}`).toBe(alone.version);
        expect(summary(built)).toEqual(summary(alone));
        if (snapshots[i]) {
          const gone = built.removedSince(snapshots[i]);
          const expected = summary(snapshots[i]).filter((line) => !summary(built).some((b) => b.split(' ').slice(0, 2).join(' ') === line.split(' ').slice(0, 2).join(' ')));
          expect((gone ?? []).map((r) => `${r.typeUrl} ${r.name} ${r.version}`).sort()).toEqual(expected);
        }
      });
      snapshots = chained;
    });
  });
});

describe('incremental IR, validation and route configuration', () => {
  // A model's own route, when it is not the fixture's: another prefix, other hosts.
  type Shape = { readonly prefix?: string; readonly hosts?: readonly string[]; readonly canary?: number };
  const modelText = (i: number, shape: Shape = {}): string => {
    const text = modelPolicy(i, shape.canary ?? 10).replace(`    pathPrefix: /models/model-${i}`, `    pathPrefix: ${shape.prefix ?? `/models/model-${i}`}`);
    return shape.hosts ? text.replace('    pathPrefix:', `    hosts: [${shape.hosts.map((h) => `'${h}'`).join(', ')}]\n    pathPrefix:`) : text;
  };
  const GATEWAY = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', ''].join('\n');
  const policyOf = (dir: string, models: readonly number[], shapes: Readonly<Record<number, Shape>>): Policy => {
    const load = policyFromFiles(dir, [{ file: 'gateway.yaml', text: GATEWAY }, ...models.map((i) => ({ file: `m${i}.yaml`, text: modelText(i, shapes[i]) }))]);
    if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
    return load.policy;
  };
  const registered = (m: ReturnType<typeof registryModels>[number], challenger?: string): RegisteredModel => ({
    name: m.name,
    description: '',
    tags: {},
    aliases: challenger ? { ...m.aliases, challenger } : m.aliases,
    versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
  });
  const encoded = (out: PipelineOutput): string[][] => out.groups.map((g) => g.resources.map((r) => `${r.typeUrl} ${r.name} ${Buffer.from(encodeMessage(r.typeUrl, r.message)).toString('base64')}`));

  test('a registry that keeps unchanged models\' objects, and policy edits that move, add and drop claims, give what fresh objects give', () => {
    const all = Array.from({ length: 70 }, (_, i) => i);
    const base = registryModels(70, false);
    const range = (n: number): number[] => all.slice(0, n);
    // [models in the policy, route shapes, models whose challenger moves to version 3 (a new object)]
    // The 4th: models whose champion alias is gone (their last live versions are kept), and models gone from the registry.
    type Lost = { readonly lost?: readonly number[]; readonly gone?: readonly number[] };
    const steps: [number[], Record<number, Shape>, number[], Lost?][] = [
      [range(50), { 3: { hosts: ['api.example.com', '*'] } }, []],
      [range(50), { 3: { hosts: ['api.example.com', '*'] } }, [10]],
      // A longer prefix: the claim moves to the front of the list.
      [range(50), { 3: { hosts: ['api.example.com', '*'] }, 7: { prefix: '/models/a-much-longer-prefix-7' } }, [10]],
      [range(50).filter((i) => i !== 20), { 3: { hosts: ['api.example.com', '*'] }, 7: { prefix: '/models/a-much-longer-prefix-7' } }, [10, 11]],
      [[...range(50), 60], { 3: { hosts: ['api.example.com', '*'] }, 7: { prefix: '/models/a-much-longer-prefix-7' }, 21: { canary: 30 } }, [10, 11]],
      // A host a virtual host has already, then a new one (a new virtual host), then one left (its virtual host removed).
      [[...range(50), 60], { 3: { hosts: ['api.example.com', '*'] }, 8: { hosts: ['api.example.com'] } }, [12]],
      [[...range(50), 60], { 3: { hosts: ['api.example.com', '*'] }, 8: { hosts: ['api.example.com'] }, 9: { hosts: ['new.example.com'] } }, [12]],
      [[...range(50), 60], { 8: { hosts: ['api.example.com'] } }, [13]],
      [[...range(50), 60], {}, [13]],
      // A prefix claimed twice in a virtual host (the claim of the more specific host serves it), then again once.
      [[...range(50), 60], { 3: { hosts: ['api.example.com'] }, 11: { prefix: '/models/model-12', hosts: ['api.example.com'] } }, [13]],
      [[...range(50), 60], { 3: { hosts: ['api.example.com'] }, 11: { prefix: '/models/model-12', hosts: ['api.example.com'] } }, [12, 14]],
      [[...range(50), 60], { 3: { hosts: ['api.example.com'] } }, [14]],
      [[...range(50), 60], {}, [14]],
      // Alerts and policy issues (read from the previous IR, or placed by file) while other models move.
      [[...range(50), 60], {}, [], { lost: [26], gone: [25] }],
      [[...range(50), 60], {}, [16], { lost: [26], gone: [25] }],
      [[...range(50), 60], {}, [17], { lost: [26] }],
      [[...range(50), 60], {}, [], {}],
      [range(40), {}, [14, 15]],
    ];
    const kindAt = (k: number, i: number): 'lost' | 'moved' | 'base' => (steps[k]?.[3]?.lost?.includes(i) ? 'lost' : steps.slice(0, k + 1).some((st) => st[2].includes(i)) ? 'moved' : 'base');
    const modelOf = (i: number, kind: 'lost' | 'moved' | 'base'): RegisteredModel => {
      const m = registered(base[i] as (typeof base)[number], kind === 'moved' ? '3' : undefined);
      if (kind !== 'lost') return m;
      const { champion: _gone, ...aliases } = m.aliases;
      return { ...m, aliases };
    };
    const registryAt = (k: number, keep: (i: number, kind: string) => RegisteredModel | undefined): RegistrySnapshot =>
      registrySnapshotFrom((steps[k]?.[0] ?? []).filter((i) => !steps[k]?.[3]?.gone?.includes(i)).map((i) => keep(i, kindAt(k, i)) ?? modelOf(i, kindAt(k, i))));
    // The webhook path: an unchanged model keeps its object (a move makes a new one).
    const kinds = new Map<number, string>();
    let registry: RegistrySnapshot | undefined;
    let previous: PipelineOutput | undefined;
    const outputs = steps.map(([models, shapes, moved], k) => {
      registry = registryAt(k, (i, kind) => (kinds.get(i) === kind && !moved.includes(i) ? registry?.models.get(`model-${i}`) : undefined));
      for (const i of models) kinds.set(i, kindAt(k, i));
      previous = runPipeline({ policy: policyOf('/patched', models, shapes), registry, previous: previous?.ir });
      return previous;
    });
    const messages = (out: PipelineOutput | undefined): string[] => (out?.issues ?? []).map((i) => i.message);
    steps.forEach(([models, shapes], k) => {
      const fresh = runPipeline({ policy: policyOf(`/fresh-claims-${k}`, models, shapes), registry: registryAt(k, () => undefined), previous: outputs[k - 1]?.ir });
      expect(outputs[k]?.ir, `step ${k}`).toEqual(fresh.ir);
      expect(outputs[k] && encoded(outputs[k]), `step ${k}`).toEqual(encoded(fresh));
      expect(messages(outputs[k]), `step ${k}`).toEqual(messages(fresh));
    });
    // The alerts are there: the kept live versions and the unknown registered model.
    expect(outputs[steps.length - 5]?.ir.alerts.map((a) => `${a.model} ${a.code}`)).toEqual(['model-25 unknown_registered_model', 'model-25 kept_last_live', 'model-26 kept_last_live']);
    expect(messages(outputs[steps.length - 5])).toHaveLength(1);
  });

  test('listener filters follow the models whose filters change and are kept through moves; the proxyless variant follows moves', () => {
    const FILTERED = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', 'filterService: { address: filters.flowgate.svc, port: 18081, timeout: 300ms }', ''].join('\n');
    const MASKING = 'masking: { request: { patterns: [email] } }\n';
    // [extra policy text per model, models whose challenger moved]
    const steps: [Record<number, string>, number[]][] = [
      [{}, []],
      [{}, [4]],
      // ext_proc appears on the listener (fail closed), then fail open instead, then both.
      [{ 5: MASKING }, [4]],
      [{ 5: `${MASKING}failOpen: true\n` }, [4, 6]],
      [{ 5: `${MASKING}failOpen: true\n`, 9: MASKING }, [4, 6]],
      [{ 5: `${MASKING}failOpen: true\n`, 9: MASKING }, [4, 6, 7, 31]],
      // ext_authz (access rules) on another model, while the masked ones go.
      [{ 8: 'access: { consumers: [acme] }\n' }, [4, 6, 7, 31]],
      [{}, [4, 6, 7, 8, 31]],
      [{}, [4, 6, 7, 8, 30, 31]],
    ];
    const CONSUMERS = 'kind: Consumer\nname: acme\napiKeys: [{ id: k, sha256: abababababababababababababababababababababababababababababababab }]\n';
    const policyAt = (dir: string, k: number): Policy => {
      const extra = steps[k]?.[0] ?? {};
      const load = policyFromFiles(dir, [
        { file: 'gateway.yaml', text: FILTERED },
        { file: 'consumers.yaml', text: CONSUMERS },
        ...Array.from({ length: 30 }, (_, i) => ({ file: `m${i}.yaml`, text: modelPolicy(i, 10) + (extra[i] ?? '') })),
        // Two proxyless models (the proxyless variant follows the models that changed too).
        ...[30, 31].map((i) => ({ file: `g${i}.yaml`, text: modelPolicy(i, 10).replace('protocol: mlflow', `protocol: grpc\ngrpc: { service: inference.Svc${i} }\nproxyless: { target: m${i} }`).replace(/routes:\n.*\n.*\n/, '') })),
      ]);
      if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
      return load.policy;
    };
    const base = registryModels(32, false);
    const registryAt = (k: number, keep?: RegistrySnapshot): RegistrySnapshot =>
      registrySnapshotFrom(base.map((m, i) => (keep && !steps[k]?.[1].includes(i) ? keep.models.get(m.name) : undefined) ?? registered(m, steps[k]?.[1].includes(i) ? '3' : undefined)));
    let registry: RegistrySnapshot | undefined;
    let previous: PipelineOutput | undefined;
    // Every incremental build first (each built from the one before), then the fresh ones.
    const outputs = steps.map((_, k) => {
      registry = registryAt(k, registry);
      previous = runPipeline({ policy: policyAt('/filters-patched', k), registry, previous: previous?.ir });
      return previous;
    });
    const filterNames = (out: PipelineOutput | undefined): string[] =>
      JSON.stringify(out?.groups[0]?.resources.find((r) => r.typeUrl === TypeUrl.Listener)?.message ?? {})
        .match(/"name":"flowgate\.(authz|extproc)[a-z.]*"/g)
        ?.sort() ?? [];
    steps.forEach((_, k) => {
      const fresh = runPipeline({ policy: policyAt(`/filters-fresh-${k}`, k), registry: registryAt(k) });
      expect(outputs[k] && encoded(outputs[k]), `step ${k}`).toEqual(encoded(fresh));
      // And what the filters make of the IR, unmemoised (the fresh run above may reuse a listener too).
      const ir = outputs[k]?.ir as GatewayIR;
      expect(filterNames(outputs[k]), `step ${k}`).toEqual(JSON.stringify(listenerHttpFilters(ir, listenerOwners(ir, 'public'), 'public')).match(/"name":"flowgate\.(authz|extproc)[a-z.]*"/g)?.sort() ?? []);
    });
    // The proxyless models are served, and their moves reach the proxyless variant.
    const proxyless = (out: PipelineOutput | undefined): string[] => encoded(out as PipelineOutput)[3] ?? [];
    expect(proxyless(outputs[0]).length).toBeGreaterThan(0);
    expect(new Set(outputs.map((o) => proxyless(o).join('\n'))).size).toBe(3);
    // The filters did change along the way (so the steps test something).
    expect(new Set(outputs.map((o) => filterNames(o).join(' '))).size).toBe(4);
  });

  test('the incremental validation refuses what the whole check refuses', () => {
    const registry = registrySnapshotFrom(registryModels(30, false).map((m) => registered(m)));
    const models = Array.from({ length: 30 }, (_, i) => i);
    const ok = runPipeline({ policy: policyOf('/valid', models, {}), registry });
    // The same IR with one model claiming another's cluster: refused after a sound IR as it is alone.
    const [first, second] = ok.ir.models;
    if (!first || !second) throw new Error('no models');
    const stolen = { ...second, live: second.live.map((l, i) => (i === 0 ? { ...l, cluster: first.live[0]?.cluster ?? '' } : l)) };
    const bad = { ...ok.ir, models: ok.ir.models.map((m) => (m === second ? stolen : m)) };
    expect(irProblems(bad)).toEqual([`cluster ${first.live[0]?.cluster} belongs to both ${first.name} and ${second.name}`]);
    expect(irProblems(ok.ir)).toEqual([]);
    const twice = { ...ok.ir, models: [...ok.ir.models, { ...second }] };
    expect(irProblems(twice)).toContain(`model ${second.name} appears twice`);
    expect(irProblems(ok.ir)).toEqual([]);
    expect(irProblems(bad)).toHaveLength(1);
  });
});

describe('Snapshot built from the one before', () => {
  test('reads a list recorded per type as the same list grouped, and refuses an input of another type in it', () => {
    const clusters = Array.from({ length: 30 }, (_, i) => cluster(`c${i}`, true));
    const eds = clusters.map((c) => endpoints(c.name));
    const typed = (lists: ResourceInput[][]): ResourceInput[] => withSegments(lists.flat(), lists);
    const first = Snapshot.from(typed([clusters, eds]));
    expect(first.version).toBe(Snapshot.from([...eds, ...clusters]).version);
    expect(first.resources(TypeUrl.ClusterLoadAssignment).size).toBe(30);
    // The next list: one cluster replaced, one endpoint removed (each type compared with its own last list).
    const moved = clusters.map((c, i) => (i === 7 ? cluster('c7b', true) : c));
    const next = Snapshot.from(typed([moved, [...eds.filter((e) => e.name !== 'c3'), endpoints('c7b')]]), first);
    const alone = Snapshot.from([...moved, ...eds.filter((e) => e.name !== 'c3'), endpoints('c7b')]);
    expect(next.version).toBe(alone.version);
    expect((next.removedSince(first) ?? []).map((r) => r.name).sort()).toEqual(['c3', 'c7']);
    // An endpoint listed with the clusters: refused on a first build and on a change.
    expect(() => Snapshot.from(typed([[...clusters, endpoints('x')], eds]))).toThrow(/listed with/);
    expect(() => Snapshot.from(typed([clusters.map((c, i) => (i === 9 ? endpoints('c9') : c)), eds]), first)).toThrow(/listed with/);
  });

  test('reads as a fresh snapshot through hundreds of small changes (its maps layered, then flattened)', () => {
    const clusterOf = (name: string, port: number): ResourceInput => ({ typeUrl: TypeUrl.Cluster, name, message: { name, type: 'STRICT_DNS', load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 'h', port_value: port } } } }] }] } } });
    let inputs = Array.from({ length: 100 }, (_, i) => clusterOf(`c${i}`, 1));
    let snapshot = Snapshot.from(inputs);
    for (let step = 0; step < 400; step++) {
      const i = (step * 37) % 100;
      // Replace one, and every 7th step also remove one and add one of a new name.
      inputs = inputs.map((r, k) => (k === i ? clusterOf(r.name, step + 2) : r));
      if (step % 7 === 0) inputs = [...inputs.filter((_, k) => k !== (i + 1) % inputs.length), clusterOf(`n${step}`, 1)];
      const next = Snapshot.from(inputs, snapshot);
      const fresh = Snapshot.from(inputs);
      expect(next.version).toBe(fresh.version);
      const named = next.resources(TypeUrl.Cluster);
      expect(named.size).toBe(inputs.length);
      for (const r of inputs) expect(named.get(r.name)?.version).toBe(fresh.get(TypeUrl.Cluster, r.name)?.version);
      expect(named.has('c-none')).toBe(false);
      if (step % 50 === 0) expect([...named.keys()].sort()).toEqual(inputs.map((r) => r.name).sort());
      snapshot = next;
    }
    expect(() => Snapshot.from([...inputs, clusterOf((inputs[0] as ResourceInput).name, 9)], snapshot)).toThrow(/duplicate/);
  });
});
