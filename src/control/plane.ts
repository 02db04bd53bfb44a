import * as grpc from '@grpc/grpc-js';
import { AdminServer } from '../observability/admin-server.js';
import { nodeStatuses } from '../admin/nodes.js';
import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import { enableProcessMetrics } from '../observability/metrics.js';
import { PolicyWatcher } from '../policy/watch.js';
import type { MlflowClientOptions } from '../registry/mlflow-client.js';
import { MlflowClient } from '../registry/mlflow-client.js';
import { RegistryPoller } from '../registry/poller.js';
import { WebhookReceiver } from '../registry/webhook-receiver.js';
import type { Policy } from '../policy/policy.js';
import { SignatureFetcher } from '../registry/signatures.js';
import type { RegistrySnapshot } from '../registry/types.js';
import { SnapshotCache } from '../xds/cache.js';
import { existsSync } from 'node:fs';
import { grpcServerCredentials, type ServerTls } from '../tls/credentials.js';
import { loadRegistryFile, saveRegistryFile } from '../registry/file.js';
import { RegistryFileWatcher } from '../registry/file-watch.js';
import { snapshotVariantOf } from '../resources/variants.js';
import { XdsServer, xdsGrpcOptions } from '../xds/server.js';
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from '../xds/wire.js';
import { GatewayController } from './controller.js';
import { TrafficAggregator } from '../traffic/aggregator.js';
import { registerTrafficRoutes } from '../traffic/routes.js';
import { registerAccessLogService } from '../traffic/receiver.js';
import { registerCsds } from '../status/service.js';
import type { FilterPolicy } from '../contract/filter-policy.js';
import { startRollouts, type RolloutOptions, type RolloutRuntime } from './rollouts.js';
import { registerConsole } from '../console/server.js';
import type { PolicyIssue } from '../policy/issues.js';
import { signatureReport } from '../status/signatures.js';

/**
 * The control plane process: policy watcher + registry poller -> controller -> snapshot cache -> xDS server,
 * with the admin endpoint beside it. `flowgate serve` runs one; tests run it in a child process through the CLI.
 */

const log = logger('serve');

export interface ControlPlaneOptions {
  readonly policyDir: string;
  /** Poll this MLflow server ... */
  readonly mlflow?: MlflowClientOptions;
  /** ... or serve this registry file (--registry FILE), re-read when it changes. */
  readonly registryFile?: string;
  readonly pollIntervalMs: number;
  /**
   * Which registered models each poll fetches in full: those the policy names (default; a policy edit naming
   * a new one fetches it before the edit is checked), or every model in the registry.
   */
  readonly registryScope?: 'policy' | 'all';
  /** Receive MLflow webhooks here and re-read the model each names at once (needs `mlflow`). */
  readonly webhooks?: {
    readonly host: string;
    readonly port: number;
    readonly secrets: readonly string[];
    readonly tls?: { readonly cert: string; readonly key: string } | undefined;
    readonly maxAgeMs?: number | undefined;
  };
  /**
   * A file holding the last registry snapshot: written after each change, read at start so a control plane
   * restarted while MLflow is down serves what it served before instead of nothing.
   */
  readonly registryCache?: string | undefined;
  readonly xds: { readonly host: string; readonly port: number };
  /** TLS on the xDS port (PEM file paths); with `clientCa`, only clients with a certificate it signed connect (mutual TLS). */
  readonly xdsTls?: ServerTls | undefined;
  /** What one request on the xDS port may cost (default DEFAULT_REQUEST_LIMITS). */
  readonly xdsLimits?: RequestLimits | undefined;
  readonly admin: { readonly host: string; readonly port: number };
  /** How long streams get to end on shutdown before the server is forced down. */
  readonly drainMs?: number;
  /** How long a removed cluster is still served (GatewayController's clusterLingerMs). */
  readonly clusterLingerMs?: number | undefined;
  /** Run the filter service in this process, fed by the controller directly; absent: none (run `flowgate filters`). */
  readonly filters?: {
    readonly host: string;
    readonly port: number;
    readonly redisUrl?: string | undefined;
    readonly tls?: ServerTls | undefined;
    readonly maxBufferedBytes?: number | undefined;
    /** Also run the pipeline service in this process, on this address. */
    readonly pipelines?: { readonly host: string; readonly port: number } | undefined;
  };
  /** Rollouts and anomaly alerts (their MLflow writer is made from `mlflow`). */
  readonly rollouts?: Omit<RolloutOptions, 'mlflow'>;
}

/** The policy rejections the console lists (newest last). */
export interface PolicyRejection {
  readonly at: string;
  readonly issues: readonly PolicyIssue[];
}

const MAX_REJECTIONS = 20;

export interface ControlPlane {
  readonly xdsPort: number;
  /** The embedded filter service's port, when it runs. */
  readonly filtersPort: number | undefined;
  readonly adminPort: number;
  /** The webhook receiver's port, when it runs. */
  readonly webhookPort: number | undefined;
  readonly controller: GatewayController;
  /** Graceful stop: Envoys keep their last config and reconnect to another replica (or to this one restarted). */
  stop(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  enableProcessMetrics();
  // A node's group is its node.cluster (or metadata flowgate.group); its snapshot variant is the xDS mode its
  // bootstrap declared, since that decides the config sources its resources must name, or proxyless for a
  // gRPC client (src/resources/variants.ts says how one is recognised).
  const cache = new SnapshotCache({ variantOf: snapshotVariantOf });
  // Loaded only when embedded: with --no-filters the filter service's modules (and their memory) stay out.
  const filters = options.filters ? await (await import('../../filters/service/server.js')).startFilterServer(options.filters) : undefined;
  // The addresses this process listens on: a registry tag must not point a public route at them.
  const reserved = [
    { ...options.xds, what: "the control plane's xDS port" },
    { ...options.admin, what: "the control plane's admin port" },
    ...(options.filters ? [{ host: options.filters.host, port: options.filters.port, what: "the embedded filter service's port" }] : []),
  ].filter((r) => r.port !== 0);
  // Signatures are read from MLflow once per routed version that validates or converts bodies.
  const signatures = options.mlflow ? new SignatureFetcher({ mlflow: options.mlflow }) : undefined;
  // Rollouts need the admin server, which comes later; the controller's callbacks reach them through this.
  const late: { rollouts?: RolloutRuntime } = {};
  const controller = new GatewayController({
    cache,
    // ADS from the start (what `flowgate bootstrap` declares by default); the gRPC and delta gRPC modes from
    // the first Envoy that declares one: a fleet of one mode never pays for the others' builds.
    modes: ['ads'],
    reserved,
    ...(filters && { onFilterPolicy: (fp: FilterPolicy, version: string) => filters.setPolicy(fp, version) }),
    ...(signatures && { onSignaturesWanted: (versions) => signatures.want(versions) }),
    onIR: (ir) => late.rollouts?.onIR(ir),
    ...(options.clusterLingerMs !== undefined && { clusterLingerMs: options.clusterLingerMs }),
  });
  cache.whenMissing((key) => controller.demand(key.variant));
  signatures?.on('signatures', (map) => controller.setSignatures(map));
  let poller: RegistryPoller | undefined;
  const scope = options.registryScope ?? 'policy';
  const watcher = new PolicyWatcher(options.policyDir, {
    check: controller.checkPolicy,
    // A policy edit that starts using a model is checked against it: fetch it first if no poll has.
    prepare: async (policy) => {
      if (poller && scope === 'policy') await poller.ensureModels(registeredModels(policy));
    },
  });
  const rejections: PolicyRejection[] = [];
  watcher.on('rejected', (issues) => {
    rejections.push({ at: new Date().toISOString(), issues });
    if (rejections.length > MAX_REJECTIONS) rejections.shift();
  });

  watcher.on('policy', (policy) => {
    controller.setPolicy(policy);
  });
  const onRegistry = (snapshot: RegistrySnapshot): void => {
    controller.setRegistry(snapshot);
    // A policy rejected for naming a model MLflow did not have may be good now.
    if (watcher.lastError()) void watcher.reload();
  };

  let cached = false;
  let registryFile: RegistryFileWatcher | undefined;
  if (options.registryFile) {
    registryFile = new RegistryFileWatcher(options.registryFile);
    registryFile.on('snapshot', onRegistry);
    onRegistry(await registryFile.start());
  } else if (options.mlflow) {
    const cacheFile = options.registryCache;
    if (cacheFile && existsSync(cacheFile)) {
      try {
        const snapshot = await loadRegistryFile(cacheFile);
        onRegistry(snapshot);
        cached = true;
        log.warn({ file: cacheFile, ageSeconds: Math.round((Date.now() - snapshot.fetchedAt) / 1000) }, 'serving the cached registry snapshot until MLflow answers');
      } catch (err) {
        log.error({ file: cacheFile, err: errorMessage(err) }, 'the registry cache is unreadable; waiting for MLflow');
      }
    }
    const client = new MlflowClient(options.mlflow);
    // With the policy scope a registry of thousands of models costs a poll two searches per 50 named models.
    const names = scope === 'all' ? () => undefined : () => registeredModels(watcher.current());
    poller = new RegistryPoller({ client, intervalMs: options.pollIntervalMs, names });
    poller.on('snapshot', (snapshot) => {
      onRegistry(snapshot);
      if (cacheFile) {
        saveRegistryFile(cacheFile, snapshot).catch((err: unknown) => log.error({ file: cacheFile, err: errorMessage(err) }, 'cannot write the registry cache'));
      }
    });
  } else {
    throw new Error('a registry source is required: an MLflow URI or a registry file');
  }

  let webhooks: WebhookReceiver | undefined;
  let webhookPort: number | undefined;
  if (options.webhooks) {
    const target = poller;
    if (!target) throw new Error('MLflow webhooks need an MLflow registry (--mlflow-uri), not a registry file');
    webhooks = new WebhookReceiver({
      secrets: options.webhooks.secrets,
      tls: options.webhooks.tls,
      ...(options.webhooks.maxAgeMs !== undefined && { maxAgeMs: options.webhooks.maxAgeMs }),
      onModelChanged: (name) => void target.refreshModel(name, 'webhook'),
    });
    webhookPort = await webhooks.listen(options.webhooks.port, options.webhooks.host);
  }

  const limits = options.xdsLimits ?? DEFAULT_REQUEST_LIMITS;
  const xds = new XdsServer(cache, { controlPlaneId: `flowgate-${process.pid}`, limits });
  const server = new grpc.Server(xdsGrpcOptions(limits));
  xds.register(server);
  // Only clusters this control plane created count as model versions: a forged cluster name cannot take a series.
  const traffic = new TrafficAggregator({ isModelCluster: (cluster) => controller.createdCluster(cluster), onModelRecord: (model, version, r) => late.rollouts?.record(model, version, r) });
  registerAccessLogService(server, traffic, xds);
  registerCsds(server, xds);
  const xdsPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.xds.host}:${options.xds.port}`, grpcServerCredentials(options.xdsTls), (err, port) => (err ? reject(err) : resolve(port))),
  );
  log.info({ host: options.xds.host, port: xdsPort, tls: options.xdsTls ? (options.xdsTls.clientCa ? 'mutual' : 'server') : 'off' }, 'xds listening');

  const admin = new AdminServer();
  const rollouts = startRollouts(
    { ...options.rollouts, mlflow: options.mlflow },
    {
      controller,
      admin,
      refresh: async () => {
        await poller?.pollNow();
      },
    },
  );
  late.rollouts = rollouts;
  registerConsole(admin, { rejections: () => rejections });
  admin.route('/debug/nodes', () => ({ json: nodeStatuses(xds) }));
  admin.route('/debug/ir', () => ({ json: controller.current() ?? null }));
  admin.route('/debug/snapshot', () => ({ json: { versions: controller.versions() } }));
  admin.route('/debug/signatures', () => ({ json: signatureReport(controller.current()) }));
  registerTrafficRoutes(admin, traffic, rollouts.local);
  admin.route('/debug/policy', () => ({ json: { lastError: watcher.lastError() ?? null, hash: watcher.current()?.hash ?? null } }));
  admin.readinessCheck('policy', () => (watcher.ready() ? { ready: true } : { ready: false, reason: 'no good policy loaded yet' }));
  admin.readinessCheck('registry', () =>
    registryFile?.current || poller?.current || cached ? { ready: true } : { ready: false, reason: 'the registry has not been synced yet' },
  );
  admin.readinessCheck('snapshot', () => (controller.published() ? { ready: true } : { ready: false, reason: 'no snapshot published yet' }));
  const adminPort = await admin.listen(options.admin.port, options.admin.host);

  const first = await watcher.start();
  if (first.result === 'rejected') log.error({ dir: options.policyDir }, 'the policy directory is not valid; waiting for a good edit');
  if (poller) void poller.start();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('stopping: ending xDS streams; Envoys keep their configuration');
      await webhooks?.close();
      await watcher.stop();
      await rollouts.stop();
      await poller?.stop();
      signatures?.stop();
      registryFile?.stop();
      xds.endAll();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, options.drainMs ?? 5_000);
        // Envoys keep their access-log streams open; once the xDS streams have ended, nothing else is in flight.
        setTimeout(() => server.forceShutdown(), 500).unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await filters?.stop();
      await admin.close().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'admin close failed'));
      log.info('stopped');
    })());

  return { xdsPort, adminPort, webhookPort, filtersPort: filters?.port, controller, stop };
}

/** The registered models a policy names, and the Prompt Registry prompts (also registered models); none before a first good policy. */
function registeredModels(policy: Policy | undefined): string[] {
  if (!policy) return [];
  const models = [...policy.models.values()];
  return [...new Set([...models.map((m) => m.registeredModel), ...models.flatMap((m) => (m.llm?.prompt ? [m.llm.prompt.name] : []))])];
}

