import { Counter, Gauge } from 'prom-client';
import type { FilterPolicy } from '../contract/filter-policy.js';
import { FILTER_POLICY_NAME } from '../contract/filter-policy.js';
import { errorMessage } from '../errors.js';
import type { GatewayAlert, GatewayIR, ModelIR } from '../ir/types.js';
import type { ReservedAddress } from '../ir/upstream-guard.js';
import { logger, type Logger } from '../observability/log.js';
import { metricsRegistry } from '../observability/metrics.js';
import { reportAllModels, reportChangedModels } from './live-gauges.js';
import type { PolicyIssue } from '../policy/issues.js';
import type { Policy } from '../policy/policy.js';
import { runPipeline, type PipelineOutput } from '../pipeline/index.js';
import type { RegistrySnapshot } from '../registry/types.js';
import type { SignatureMap, VersionRef } from '../registry/signatures.js';
import type { SnapshotCache } from '../xds/cache.js';
import { CONFIG_SOURCE_MODES, type ConfigSourceMode } from '../resources/config-source.js';
import type { SnapshotVariant } from '../resources/variants.js';
import { Snapshot, type XdsResource } from '../xds/snapshot.js';
import { TypeUrl } from '../resources/types.js';
import { sharedChanges, type ListChanges } from '../resources/window.js';

/**
 * GatewayController: the one place where policy and registry meet. Each time either changes it runs the
 * pipeline (IR, translation per xDS mode, consistency check) and hands the snapshots to the cache, which
 * pushes them to the Envoys. It keeps the last IR so a registry mistake keeps the last live versions, and
 * never publishes a snapshot that failed to translate or would be inconsistent.
 */

const builds = new Counter({
  name: 'flowgate_snapshot_builds_total',
  help: 'Gateway snapshot builds, by result: published (a new snapshot), unchanged (same version), failed (translation error; previous kept).',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
for (const result of ['published', 'unchanged', 'failed'] as const) builds.inc({ result }, 0);

const snapshotVersion = new Gauge({
  name: 'flowgate_snapshot_version',
  help: 'The first 48 bits of the published snapshot version (ADS mode) as a number; equal on replicas serving the same config.',
  registers: [metricsRegistry],
});

const alertsGauge = new Gauge({
  name: 'flowgate_model_alerts',
  help: 'Active alerts per model and code (no_live_version, kept_last_live, canary_unresolved, mirror_unresolved, unknown_registered_model, address_refused, no_signature; anomaly_error_rate, anomaly_latency from live traffic).',
  labelNames: ['model', 'code'] as const,
  registers: [metricsRegistry],
});

export interface ControllerOptions {
  readonly cache: SnapshotCache;
  /** Called with each new filter policy and its resource version (the embedded filter service). */
  readonly onFilterPolicy?: (policy: FilterPolicy, version: string) => void;
  /**
   * Called after each build with the routed versions whose signature is still unknown (validation or
   * protocol conversion reads it); the control plane reads them from MLflow and calls setSignatures.
   */
  readonly onSignaturesWanted?: (versions: readonly VersionRef[]) => void;
  /**
   * The xDS modes to build snapshots for from the start (variants in the cache); default all three. The others
   * are built from the first `demand` for them on (`flowgate serve` starts with ADS and builds a mode when an
   * Envoy of that mode connects).
   */
  readonly modes?: readonly ConfigSourceMode[];
  /** This process's listen addresses, refused as model upstreams. */
  readonly reserved?: readonly ReservedAddress[];
  readonly log?: Logger;
  /** Called with each IR built from a new policy or registry snapshot (rollout gauges, the console). */
  readonly onIR?: (ir: GatewayIR) => void;
  /**
   * How long a cluster (and its endpoints) that left the configuration is still served; default 10 s, 0
   * removes at once. A request whose route was chosen just before the route change still names the old
   * cluster when it reaches Envoy's router, after the gateway's filters (ext_authz, rate limit, ext_proc)
   * have taken their time: removed at once, that cluster would be a 503 `cluster_not_found`.
   */
  readonly clusterLingerMs?: number;
}

/** The resource types whose removal is deferred by `clusterLingerMs`. */
const LINGERING_TYPES: readonly TypeUrl[] = [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment];

/** How many models' live versions a publish log line names. */
const LOGGED_MODELS = 20;

/** The models of the last IR a build replaced, and those that replaced them (memoised models are kept objects). */
type ModelChanges = ListChanges<ModelIR>;

const clustersOf = (m: ModelIR): string[] => [...m.live.map((l) => l.cluster), ...(m.mirror ? [m.mirror.cluster] : [])];
const pending = (v: { readonly processing?: { readonly signature: { readonly status: string } } | undefined }): boolean => v.processing?.signature.status === 'pending';
const waitsForSignature = (m: ModelIR): boolean => m.live.some(pending) || (m.mirror !== undefined && pending(m.mirror));

/** An alert raised from live traffic rather than from the IR (the anomaly detector). */
export interface RuntimeAlert {
  readonly code: `anomaly_${string}`;
  readonly model: string;
  readonly message: string;
}

export class GatewayController {
  private readonly log: Logger;
  private modes: readonly ConfigSourceMode[];
  private demandTimer: NodeJS.Immediate | undefined;
  private policy: Policy | undefined;
  private registry: RegistrySnapshot | undefined;
  private signatures: SignatureMap | undefined;
  private ir: GatewayIR | undefined;
  /** What is published, by variant: the pipeline's snapshot plus the lingering removed clusters. */
  private readonly snapshots = new Map<SnapshotVariant, Snapshot>();
  /** The pipeline's own snapshots (what `flowgate render` prints), by variant. */
  private readonly built = new Map<SnapshotVariant, Snapshot>();
  /** Removed clusters and endpoints still served, by variant, each until its time (ms since the epoch). */
  private readonly lingering = new Map<SnapshotVariant, Map<string, { readonly resource: XdsResource; readonly until: number }>>();
  private lingerTimer: NodeJS.Timeout | undefined;
  private activeAlerts = new Set<string>();
  private runtimeAlerts: readonly RuntimeAlert[] = [];
  private filterPolicyVersion: string | undefined;
  /**
   * Model-version clusters of the IR published now, and those of the one before it that it no longer has
   * (late access logs of a version just removed). Updated by the models that changed.
   */
  private clusters: { current: Set<string>; removed: ReadonlySet<string> } = { current: new Set(), removed: new Set() };
  /** The pipeline run of the last checked policy, reused when that policy is then applied (no second build). */
  /** The models of the published IR routing a version whose signature is pending (updated by the models that changed). */
  private pendingModels = new Set<ModelIR>();
  private checked:
    | { readonly policy: Policy; readonly registry: RegistrySnapshot; readonly previous: GatewayIR | undefined; readonly signatures: SignatureMap | undefined; readonly output: PipelineOutput }
    | undefined;

  constructor(private readonly options: ControllerOptions) {
    this.log = options.log ?? logger('controller');
    this.modes = options.modes ?? CONFIG_SOURCE_MODES;
  }

  /** The IR last published, if any. */
  current(): GatewayIR | undefined {
    return this.ir;
  }

  /**
   * The version of every built snapshot, by xDS mode (what `flowgate render` prints for the same inputs);
   * while a removed cluster lingers, Envoys are sent that version plus the lingering clusters.
   */
  versions(): Record<string, string> {
    return Object.fromEntries([...this.built].map(([mode, s]) => [mode, s.version]));
  }

  /** True when `cluster` is a model-version cluster of the published IR or of the one before it. */
  createdCluster(cluster: string): boolean {
    return this.clusters.current.has(cluster) || this.clusters.removed.has(cluster);
  }


  /** The published snapshot of a variant (an xDS mode, or proxyless). */
  snapshot(mode: SnapshotVariant): Snapshot | undefined {
    return this.snapshots.get(mode);
  }

  /** True once a snapshot has been published from a policy and (when one is configured) a registry sync. */
  published(): boolean {
    return this.ir !== undefined;
  }

  /**
   * The faults of a candidate policy that only the registry can reveal; the policy watcher rejects a policy
   * that has any. Before the first registry sync nothing can be said, so nothing is reported.
   */
  checkPolicy = (policy: Policy): readonly PolicyIssue[] => {
    if (!this.registry) return [];
    const output = this.run(policy, this.registry);
    if (output) this.checked = { policy, registry: this.registry, previous: this.ir, signatures: this.signatures, output };
    return output?.issues ?? [];
  };

  /**
   * An xDS client needs `variant`: a mode not built yet is built from now on, by the next turn of the event loop
   * (with the policy and registry known by then); other variants are ignored (proxyless is always built).
   */
  demand(variant: string): void {
    const mode = CONFIG_SOURCE_MODES.find((m) => m === variant);
    if (!mode || this.modes.includes(mode)) return;
    this.modes = CONFIG_SOURCE_MODES.filter((m) => m === mode || this.modes.includes(m));
    // A policy checked for the modes built before is not the build that now includes this one.
    this.checked = undefined;
    this.log.info({ mode }, 'an xDS client of this mode connected: its snapshots are built from now on');
    this.demandTimer ??= setImmediate(() => {
      this.demandTimer = undefined;
      this.rebuild('demand');
    });
  }

  setPolicy(policy: Policy): void {
    this.policy = policy;
    this.rebuild('policy');
  }

  /** Replaces the alerts raised from live traffic; they are logged, counted and cleared like the IR's. */
  setRuntimeAlerts(alerts: readonly RuntimeAlert[]): void {
    this.runtimeAlerts = alerts;
    if (this.ir) this.reportAlerts(this.ir);
  }

  /** Every active alert: the IR's and the runtime ones. */
  alerts(): readonly (GatewayAlert | RuntimeAlert)[] {
    return [...(this.ir?.alerts ?? []), ...this.runtimeAlerts];
  }

  setRegistry(registry: RegistrySnapshot): void {
    this.registry = registry;
    this.rebuild('registry');
  }

  /** New model-version signatures: models that validate or convert bodies are rebuilt with them. */
  setSignatures(signatures: SignatureMap): void {
    this.signatures = signatures;
    this.rebuild('signatures');
  }

  /** The routed versions whose signature the last IR still lacks, with their registry source. */
  wantedSignatures(): VersionRef[] {
    const out: VersionRef[] = [];
    if (!this.ir || !this.registry) return out;
    for (const m of this.pendingModels) {
      const versions = this.registry.models.get(m.registeredModel)?.versions ?? [];
      for (const v of [...m.live, ...(m.mirror ? [m.mirror] : [])]) {
        if (!pending(v)) continue;
        const mv = versions.find((x) => x.version === v.version);
        if (mv) out.push({ name: mv.name, version: mv.version, source: mv.source });
      }
    }
    return out;
  }

  /** The pipeline's output, or undefined (logged and counted) when translation failed. */
  private run(policy: Policy, registry: RegistrySnapshot): PipelineOutput | undefined {
    const checked = this.checked;
    if (checked && checked.policy === policy && checked.registry === registry && checked.previous === this.ir && checked.signatures === this.signatures) return checked.output;
    try {
      // The proxyless variant is built even when no model has a target, so clients of a target that was just
      // removed are told it is gone rather than keeping the last snapshot that had it.
      return runPipeline({ policy, registry, previous: this.ir, reserved: this.options.reserved, signatures: this.signatures }, { modes: this.modes, proxyless: true });
    } catch (err) {
      builds.inc({ result: 'failed' });
      this.log.error({ err: errorMessage(err) }, 'translation failed; the previous snapshot keeps serving');
      return undefined;
    }
  }

  /** Builds and publishes once both a policy and a registry snapshot are known. */
  private rebuild(cause: 'policy' | 'registry' | 'signatures' | 'demand'): void {
    if (!this.policy || !this.registry) return;
    const output = this.run(this.policy, this.registry);
    this.checked = undefined;
    if (!output) return;
    const { ir, filterPolicy } = output;
    let next: Map<SnapshotVariant, Snapshot>;
    try {
      next = new Map(output.groups.map((g) => [g.variant, Snapshot.from(g.resources, this.built.get(g.variant))]));
    } catch (err) {
      builds.inc({ result: 'failed' });
      this.log.error({ cause, err: errorMessage(err) }, 'encoding failed; the previous snapshot keeps serving');
      return;
    }
    const before = this.ir;
    this.ir = ir;
    // The models that changed since the last build (memoised models are the same objects): undefined, all of them.
    const changed = before ? sharedChanges(before.models, ir.models) : undefined;
    this.trackClusters(ir, changed);
    this.trackPending(ir, changed);
    this.reportAlerts(ir);
    this.reportModels(ir, changed);
    this.options.onIR?.(ir);
    const wanted = this.wantedSignatures();
    if (wanted.length > 0) this.options.onSignaturesWanted?.(wanted);
    const ads = next.get('ads') ?? [...next.values()][0];
    // A change may touch one variant only (a proxyless target renamed leaves every Envoy resource as it was).
    if ([...next].every(([variant, s]) => s.version === this.built.get(variant)?.version)) {
      builds.inc({ result: 'unchanged' });
      return;
    }
    for (const [variant, snapshot] of next) {
      this.retire(variant, snapshot);
      this.built.set(variant, snapshot);
    }
    this.publishBuilt();
    if (ads) snapshotVersion.set(parseInt(ads.version.slice(0, 12), 16));
    const fpVersion = ads?.get(TypeUrl.FilterPolicy, FILTER_POLICY_NAME)?.version;
    if (fpVersion && fpVersion !== this.filterPolicyVersion) {
      this.filterPolicyVersion = fpVersion;
      this.options.onFilterPolicy?.(filterPolicy, fpVersion);
    }
    builds.inc({ result: 'published' });
    // The live versions of the models that changed (of the first LOGGED_MODELS; all models on a first build).
    const shown = (changed?.added ?? ir.models).slice(0, LOGGED_MODELS);
    const live = Object.fromEntries(shown.map((m) => [m.name, m.live.map((l) => `v${l.version}:${l.weight}%`).join(' ')]));
    const changedModels = changed ? changed.added.length : ir.models.length;
    this.log.info({ cause, version: ads?.version, policy: ir.policyHash.slice(0, 16), registry: ir.registryHash.slice(0, 16), models: ir.models.length, changedModels, live }, 'snapshot published');
  }

  /** Starts the linger of every cluster (and endpoints) the published snapshot has and `next` drops. */
  private retire(variant: SnapshotVariant, next: Snapshot): void {
    const linger = this.options.clusterLingerMs ?? 10_000;
    const published = this.snapshots.get(variant);
    const held = this.lingering.get(variant) ?? new Map<string, { resource: XdsResource; until: number }>();
    const until = Date.now() + linger;
    // What the published snapshot has beyond the last built one is held already (checked below): what `next`
    // removed from the last built one is what starts to linger, known without a walk when next was built from it.
    const built = this.built.get(variant);
    const removed = built && next.removedSince(built);
    const candidates: Iterable<XdsResource> = removed ?? LINGERING_TYPES.flatMap((type) => [...(published?.resources(type).values() ?? [])]);
    for (const resource of candidates) {
      if (!LINGERING_TYPES.includes(resource.typeUrl)) continue;
      const key = `${resource.typeUrl}\u0000${resource.name}`;
      if (next.get(resource.typeUrl, resource.name)) held.delete(key);
      else if (linger > 0 && !held.has(key)) held.set(key, { resource, until });
    }
    // A lingering resource that comes back is the pipeline's again.
    for (const [key, { resource }] of held) if (next.get(resource.typeUrl, resource.name)) held.delete(key);
    this.lingering.set(variant, held);
  }

  /** Publishes every built snapshot with the resources still lingering, and times the next removal. */
  private publishBuilt(): void {
    const now = Date.now();
    let nextRemoval = Infinity;
    for (const [variant, built] of this.built) {
      const held = this.lingering.get(variant);
      const kept: XdsResource[] = [];
      for (const [key, entry] of held ?? []) {
        if (entry.until <= now) held?.delete(key);
        else {
          kept.push(entry.resource);
          nextRemoval = Math.min(nextRemoval, entry.until);
        }
      }
      const snapshot = built.withRetained(kept);
      if (snapshot.version === this.snapshots.get(variant)?.version) continue;
      this.snapshots.set(variant, snapshot);
      this.options.cache.setSnapshot(this.options.cache.fallbackGroup, snapshot, variant);
    }
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (nextRemoval !== Infinity) {
      this.lingerTimer = setTimeout(() => this.publishBuilt(), Math.max(0, nextRemoval - now));
      this.lingerTimer.unref();
    }
  }

  private reportAlerts(ir: GatewayIR): void {
    const now = new Set<string>();
    const all = [...ir.alerts, ...this.runtimeAlerts];
    for (const a of all) {
      const key = `${a.model}\u0000${a.code}\u0000${a.message}`;
      now.add(key);
      if (!this.activeAlerts.has(key)) this.logAlert(a);
    }
    for (const key of this.activeAlerts) {
      if (!now.has(key)) {
        const [model, code] = key.split('\u0000');
        this.log.info({ model, code }, 'alert cleared');
      }
    }
    this.activeAlerts = now;
    alertsGauge.reset();
    for (const a of all) alertsGauge.inc({ model: a.model, code: a.code });
  }

  private logAlert(a: GatewayAlert | RuntimeAlert): void {
    const level = a.code === 'canary_unresolved' || a.code === 'mirror_unresolved' || a.code === 'no_signature' || a.code.startsWith('anomaly_') ? 'warn' : 'error';
    this.log[level]({ model: a.model, code: a.code, alert: true }, a.message);
  }

  /** The live-version gauges: of the models that changed, or of every model (applied when the metrics are read). */
  private reportModels(ir: GatewayIR, changed: ModelChanges | undefined): void {
    if (changed) reportChangedModels(changed.removed, changed.added);
    else reportAllModels(ir.models);
  }

  /** The models waiting for a signature, of every model or updated by the models that changed (most models process nothing). */
  private trackPending(ir: GatewayIR, changed: ModelChanges | undefined): void {
    if (!changed) {
      this.pendingModels = new Set(ir.models.filter(waitsForSignature));
      return;
    }
    for (const m of changed.removed) this.pendingModels.delete(m);
    for (const m of changed.added) if (waitsForSignature(m)) this.pendingModels.add(m);
  }

  /** The model-version clusters of the published IR, updated by the models that changed. */
  private trackClusters(ir: GatewayIR, changed: ModelChanges | undefined): void {
    const current = this.clusters.current;
    if (!changed) {
      const clusters = new Set(ir.models.flatMap(clustersOf));
      if ([...clusters].some((c) => !current.has(c)) || clusters.size !== current.size) this.clusters = { current: clusters, removed: new Set([...current].filter((c) => !clusters.has(c))) };
      return;
    }
    const gone = new Set(changed.removed.flatMap(clustersOf));
    const added = changed.added.flatMap(clustersOf);
    for (const c of added) gone.delete(c);
    const fresh = added.filter((c) => !current.has(c));
    if (gone.size === 0 && fresh.length === 0) return;
    for (const c of gone) current.delete(c);
    for (const c of fresh) current.add(c);
    this.clusters = { current, removed: gone };
  }
}
