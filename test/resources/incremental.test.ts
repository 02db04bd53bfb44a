import { describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { ConsistencyTracker, danglingReferences, InconsistentSnapshotError } from '../../src/resources/consistency.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';
import { changeLimit, listChanges, mapChanged } from '../../src/resources/window.js';
import { runPipeline, type PipelineOutput } from '../../src/pipeline/index.js';
import { policyFromFiles } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/policy.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { RegisteredModel, RegistrySnapshot } from '../../src/registry/types.js';
import { encodeMessage, encodeMessageParts, withTextParts } from '../../src/proto/codec.js';
import { ALL_TYPES } from '../../src/resources/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { joined, segments, startsGroup, withSegments } from '../../src/resources/segments.js';
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

  test('a cluster whose name looks like another kind of resource stands for no other resource', () => {
    // Keys are a cluster's name and a prefixed name for the other kinds: the prefix starts with a zero
    // character, so a cluster named with one must not stand in for missing endpoints or route configurations.
    for (const set of [
      [cluster('a', true), cluster('\u0000Ea')],
      [listener('l', 'rc'), cluster('\u0000Rrc')],
      [cluster('\u0000Cx', true), cluster('x'), endpoints('x')],
    ]) {
      const full = danglingReferences(set);
      expect(full.length).toBeGreaterThan(0);
      expect(() => new ConsistencyTracker().check(set)).toThrow(InconsistentSnapshotError);
    }
    // Named so, a cluster is still itself.
    const named = [cluster('\u0000Rrc', true), endpoints('\u0000Rrc'), routeConfig('rc', [route('r', ['\u0000Rrc'])]), listener('l', 'rc')];
    expect(danglingReferences(named)).toEqual([]);
    expect(new ConsistencyTracker().check(named)).toBe(named);
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

describe('grouped route lists (kept lists of kept lists)', () => {
  test('are checked per group and per kept list, and encoded as the same list without segments', () => {
    const tracker = new ConsistencyTracker();
    const modelRoutes = (i: number, missing = false): object[] => [route(`a${i}`, [`c${i}`]), route(`b${i}`, missing ? ['gone'] : [`c${i}`])];
    const models = Array.from({ length: 60 }, (_, i) => modelRoutes(i));
    // Groups of 8 models, each a list recorded as its models' lists; the virtual host's list recorded as its groups.
    const config = (lists: object[][]): ResourceInput => {
      const groups = Array.from({ length: Math.ceil(lists.length / 8) }, (_, g) => lists.slice(g * 8, g * 8 + 8)).map((inner) => withSegments(joined(inner), inner));
      return routeConfig('rc', withSegments(joined(groups), groups));
    };
    const clusters = Array.from({ length: 60 }, (_, i) => cluster(`c${i}`));
    const withMissing = models.map((m, i) => (i === 21 ? modelRoutes(21, true) : m));
    for (const [lists, refused] of [
      [models, false],
      [withMissing, true],
      [models.map((m, i) => (i === 21 ? modelRoutes(21) : i === 40 ? modelRoutes(40) : m)), false],
      [models.slice(0, 50), false],
      [[...models.slice(0, 30), modelRoutes(3, true), ...models.slice(30)], true],
      [models, false],
    ] as const) {
      const set = [...clusters, listener('l', 'rc'), config(lists as object[][])];
      expect(danglingReferences(set).length > 0).toBe(refused);
      if (refused) expect(() => tracker.check(set)).toThrow(InconsistentSnapshotError);
      else expect(() => tracker.check(set)).not.toThrow();
      const plain = routeConfig('rc', (lists as object[][]).flat());
      const grouped = config(lists as object[][]);
      expect(Buffer.from(encodeMessage(plain.typeUrl, grouped.message)).equals(Buffer.from(encodeMessage(plain.typeUrl, plain.message)))).toBe(true);
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

describe('content-defined groups: the route configuration and the FilterPolicy', () => {
  // Model i published at /models/model-i on '*'; `renamed` models are called zz-renamed-i (same prefix and
  // registered model): their claim sorts elsewhere among the prefixes of the same length.
  const GATEWAY = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', ''].join('\n');
  const nameOf = (i: number, renamed: readonly number[]): string => (renamed.includes(i) ? `zz-renamed-${i}` : `model-${i}`);
  const policyOf = (dir: string, models: readonly number[], renamed: readonly number[]): Policy => {
    const files = models.map((i) => ({ file: `m${i}.yaml`, text: modelPolicy(i, 10).replace(`\nname: model-${i}\n`, `\nname: ${nameOf(i, renamed)}\n`) }));
    const load = policyFromFiles(dir, [{ file: 'gateway.yaml', text: GATEWAY }, ...files]);
    if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
    return load.policy;
  };
  const base = registryModels(2000, false);
  const registryOf = (models: readonly number[], moved: readonly number[]): RegistrySnapshot =>
    registrySnapshotFrom(
      models.map((i): RegisteredModel => {
        const m = base[i] as (typeof base)[number];
        return {
          name: m.name,
          description: '',
          tags: {},
          aliases: moved.includes(i) ? { ...m.aliases, challenger: '3' } : m.aliases,
          versions: m.versions.map((v) => ({ name: m.name, version: v.version, status: v.status, stage: 'None', aliases: [], tags: v.tags, source: '', runId: '', createdAt: 0, updatedAt: 0 })),
        };
      }),
    );
  // The claims in the virtual host's order (longer prefixes first, then by owner name) and the groups they make.
  const claimStarts = (i: number, renamed: readonly number[] = []): boolean => startsGroup(`${nameOf(i, renamed)}\u0000/models/model-${i}\u0000*`);
  const sorted = (models: readonly number[], renamed: readonly number[] = []): number[] =>
    [...models].sort((a, b) => `/models/model-${b}`.length - `/models/model-${a}`.length || (nameOf(a, renamed) < nameOf(b, renamed) ? -1 : 1));
  const groupsOf = (models: readonly number[], renamed: readonly number[] = []): number[][] => {
    const out: number[][] = [];
    for (const i of sorted(models, renamed)) {
      if (out.length === 0 || claimStarts(i, renamed)) out.push([]);
      (out[out.length - 1] as number[]).push(i);
    }
    return out;
  };
  const all = Array.from({ length: 300 }, (_, i) => i);
  const groups = groupsOf(all);
  // Chosen from the groups themselves: a group's starting claim, a model inside a group, a whole group, new models.
  const inner = groups.find((g, k) => k > 0 && g.length > 3) as number[];
  const start = inner[0] as number;
  const middle = inner[2] as number;
  const emptied = groups.find((g, k) => k > 0 && g.length >= 2 && !g.includes(start) && !g.includes(middle)) as number[];
  const newStart = Array.from({ length: 1700 }, (_, k) => 300 + k).find((i) => claimStarts(i)) as number;
  const newInner = Array.from({ length: 1700 }, (_, k) => 300 + k).find((i) => !claimStarts(i)) as number;
  const first = groups[0]?.[0] as number;
  // A model renamed so that its claim sorts into another group (zz- sorts after every model-: the last group of its length).
  const renamedModel = inner[1] as number;
  const without = (xs: readonly number[], gone: readonly number[]): number[] => xs.filter((i) => !gone.includes(i));
  // [models, renamed, moved challengers (a new registry object each step they are listed)]
  const steps: [number[], number[], number[]][] = [
    [all, [], []],
    [all, [], [middle, start]],
    [all, [], [middle, start, inner[3] as number]],
    [without(all, [start]), [], [middle]],
    [all, [], [middle]],
    [[...all, newStart], [], [start]],
    [[...all, newStart, newInner], [], [start]],
    [without([...all, newStart, newInner], emptied), [], [middle]],
    [[...all, newStart, newInner], [], [middle, emptied[0] as number, emptied[1] as number]],
    [[...all, newStart, newInner], [renamedModel], [middle]],
    [without([...all, newStart, newInner], [first]), [], [middle]],
    [without([...all, newStart, newInner], groups[0] as number[]), [], [start]],
  ];
  const routeSegments = (out: PipelineOutput): readonly object[] => {
    const rc = out.groups[0]?.resources.find((r) => r.typeUrl === TypeUrl.RouteConfiguration)?.message as { virtual_hosts: { routes: object[] }[] };
    return segments(rc.virtual_hosts[0]?.routes ?? []) ?? [];
  };
  const policyParts = (out: PipelineOutput): readonly object[] => {
    const fp = out.groups[0]?.resources.find((r) => r.typeUrl === TypeUrl.FilterPolicy);
    return fp ? encodeMessageParts(fp.typeUrl, fp.message).filter((p) => p.kept) : [];
  };
  const summary = (s: Snapshot): string[] => ALL_TYPES.flatMap((t) => [...s.resources(t).values()].map((r) => `${t} ${r.name} ${r.version}`)).sort();
  const encoded = (out: PipelineOutput): string[][] => out.groups.map((g) => g.resources.map((r) => `${r.typeUrl} ${r.name} ${Buffer.from(encodeMessage(r.typeUrl, r.message)).toString('base64')}`));

  test('the fixture crosses group edges', () => {
    expect(groups.length).toBeGreaterThan(2);
    expect(claimStarts(start) && !claimStarts(middle) && claimStarts(newStart) && !claimStarts(newInner)).toBe(true);
    // The renamed model's claim lands in another group.
    const after = groupsOf(all, [renamedModel]);
    expect(after.findIndex((g) => g.includes(renamedModel))).not.toBe(groups.findIndex((g) => g.includes(renamedModel)));
  });

  test('groups patched through moves, additions and removals at group edges, an emptied group and a rename give the bytes and versions of fresh builds', () => {
    let previous: PipelineOutput | undefined;
    let built: Snapshot[] = [];
    const runs = steps.map(([models, renamed, moved]) => {
      const out = runPipeline({ policy: policyOf('/groups', models, renamed), registry: registryOf(models, moved), previous: previous?.ir }, { proxyless: false });
      const chained = out.groups.map((g, i) => Snapshot.from(g.resources, built[i]));
      const kept = { routes: routeSegments(out), policy: policyParts(out) };
      const was = previous ? { routes: routeSegments(previous), policy: policyParts(previous) } : undefined;
      previous = out;
      built = chained;
      return { out, chained, kept, was };
    });
    steps.forEach(([models, renamed, moved], k) => {
      const { out, chained, kept, was } = runs[k] as (typeof runs)[number];
      const fresh = runPipeline({ policy: policyOf(`/groups-fresh-${k}`, models, renamed), registry: registryOf(models, moved) }, { proxyless: false });
      expect(encoded(out), `step ${k}`).toEqual(encoded(fresh));
      fresh.groups.forEach((g, i) => {
        const alone = Snapshot.from(g.resources);
        expect(chained[i]?.version, `step ${k} ${g.variant}`).toBe(alone.version);
        expect(summary(chained[i] as Snapshot), `step ${k}`).toEqual(summary(alone));
      });
      // The groups are what the claims make: the LLM routes' segment, one per group, the no-route segment.
      expect(kept.routes.length, `step ${k}`).toBe(groupsOf(models, renamed).length + 2);
      // A move, or a lone addition or removal (with the moves of the step), makes a few groups again; the others are the same lists.
      if (was && k <= 6) {
        expect(kept.routes.filter((s) => !was.routes.includes(s)).length, `step ${k}`).toBeLessThanOrEqual(4);
      }
      // The FilterPolicy's groups follow a move in place: the others keep their parts (and digests).
      if (was && (k === 1 || k === 2)) {
        expect(kept.policy.filter((p) => !was.policy.includes(p)).length, `step ${k}`).toBeLessThanOrEqual(k);
        expect(kept.policy.length, `step ${k}`).toBe(was.policy.length);
      }
    });
  });

  test('a string field given as text parts encodes as the whole text, and its version follows the parts', () => {
    const url = 'type.googleapis.com/flowgate.v1.FilterPolicy';
    const text = '{"models":[{"name":"ä"},{"name":"b"}]}';
    const pieces = ['{"models":[', '{"name":"ä"}', ',', '{"name":"b"}', ']}'].map((t, i) => ({ bytes: Buffer.from(t), ...(i % 2 === 1 && { kept: true as const }) }));
    const message = withTextParts({ schema_version: 2 }, 'policy_json', pieces);
    expect(Buffer.from(encodeMessage(url, message)).equals(Buffer.from(encodeMessage(url, { schema_version: 2, policy_json: text })))).toBe(true);
    expect(() => encodeMessage(url, withTextParts({ schema_version: 2, nope: 1 }, 'policy_json', pieces))).toThrow(/nope/);
    expect(() => encodeMessage(url, withTextParts({ policy_json: '' }, 'schema_version', pieces))).toThrow(/not a string field/);
  });
});

describe('resource versions', () => {
  // Replicas of different builds (a rolling upgrade) must give equal content equal versions, or every Envoy
  // that moves between them reloads: the version's formula is fixed here.
  const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

  test('a message encoded whole: sha256 of its type URL, a zero byte and its bytes', () => {
    const input = cluster('m:v1');
    const bytes = encodeMessage(input.typeUrl, input.message);
    const version = Snapshot.from([input]).get(TypeUrl.Cluster, 'm:v1')?.version;
    expect(version).toBe(sha(Buffer.concat([Buffer.from(`${input.typeUrl}\u0000`), bytes])));
  });

  test('a spliced message: sha256 of its type URL, a one byte and its parts (kept ones by their digest)', () => {
    const url = TypeUrl.FilterPolicy;
    const pieces = ['{"models":[', '{"name":"ä"}', ',', '{"name":"b"}', ']}'].map((t, i) => ({ bytes: Buffer.from(t), ...(i % 2 === 1 && { kept: true as const }) }));
    const input: ResourceInput = { typeUrl: url, name: 'fp', message: withTextParts({ schema_version: 2 }, 'policy_json', pieces) };
    const parts = encodeMessageParts(url, input.message);
    expect(parts.length).toBeGreaterThan(1);
    const digestInput = Buffer.concat(
      parts.map((p) => {
        if (p.kept) return Buffer.concat([Buffer.from([1]), createHash('sha256').update(p.bytes).digest().subarray(0, 16)]);
        const length = Buffer.alloc(4);
        length.writeUInt32BE(p.bytes.length);
        return Buffer.concat([Buffer.from([0]), length, p.bytes]);
      }),
    );
    const version = Snapshot.from([input]).get(url, 'fp')?.version;
    expect(version).toBe(sha(Buffer.concat([Buffer.from(`${url}\u0001`), digestInput])));
  });
});

describe('startsGroup', () => {
  test('a key given in parts is the parts joined by zero characters', () => {
    let seed = 7;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed % n);
    const chars = ['a', 'z', '0', '9', '/', '-', '.', '*', 'é', '\u0000', '𝔸'];
    const word = (): string => Array.from({ length: rand(12) }, () => chars[rand(chars.length)]).join('');
    let starts = 0;
    for (let i = 0; i < 5000; i++) {
      const parts = Array.from({ length: 1 + rand(4) }, word);
      const whole = startsGroup(parts.join('\u0000'));
      expect(startsGroup(...parts)).toBe(whole);
      if (whole) starts++;
    }
    // One key in 32 on average starts a group.
    expect(starts).toBeGreaterThan(5000 / 32 / 2);
    expect(starts).toBeLessThan((5000 / 32) * 2);
  });
});
