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
import { SignatureFetcher } from '../registry/signatures.js';
import type { RegistrySnapshot } from '../registry/types.js';
import { SnapshotCache } from '../xds/cache.js';
import { existsSync } from 'node:fs';
import { grpcServerCredentials, type ServerTls } from '../tls/credentials.js';
import { loadRegistryFile, saveRegistryFile } from '../registry/file.js';
import { RegistryFileWatcher } from '../registry/file-watch.js';
import { configSourceModeOf } from '../resources/config-source.js';
import { XdsServer, XDS_GRPC_OPTIONS } from '../xds/server.js';
import { GatewayController } from './controller.js';
import { TrafficAggregator } from '../traffic/aggregator.js';
import { registerTrafficRoutes } from '../traffic/routes.js';
import { registerAccessLogService } from '../traffic/receiver.js';
import { registerCsds } from '../status/service.js';
import { startFilterServer } from '../../filters/service/server.js';
import type { FilterPolicy } from '../contract/filter-policy.js';
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
   * A file holding the last registry snapshot: written after each change, read at start so a control plane
   * restarted while MLflow is down serves what it served before instead of nothing.
   */
  readonly registryCache?: string | undefined;
  readonly xds: { readonly host: string; readonly port: number };
  /** TLS on the xDS port (PEM file paths); with `clientCa`, only clients with a certificate it signed connect (mutual TLS). */
  readonly xdsTls?: ServerTls | undefined;
  readonly admin: { readonly host: string; readonly port: number };
  /** How long streams get to end on shutdown before the server is forced down. */
  readonly drainMs?: number;
  /** Run the filter service in this process, fed by the controller directly; absent: none (run `flowgate filters`). */
  readonly filters?: {
    readonly host: string;
    readonly port: number;
    readonly redisUrl?: string | undefined;
    readonly tls?: ServerTls | undefined;
    /** Also run the pipeline service in this process, on this address. */
    readonly pipelines?: { readonly host: string; readonly port: number } | undefined;
  };
}

export interface ControlPlane {
  readonly xdsPort: number;
  /** The embedded filter service's port, when it runs. */
  readonly filtersPort: number | undefined;
  readonly adminPort: number;
  readonly controller: GatewayController;
  /** Graceful stop: Envoys keep their last config and reconnect to another replica (or to this one restarted). */
  stop(): Promise<void>;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  enableProcessMetrics();
  // A node's group is its node.cluster (or metadata flowgate.group); its snapshot variant is the xDS mode its
  // bootstrap declared, since that decides the config sources its resources must name.
  const cache = new SnapshotCache({ variantOf: (node) => configSourceModeOf(node.metadata) });
  const filters = options.filters ? await startFilterServer(options.filters) : undefined;
  // Signatures are read from MLflow once per routed version that validates or converts bodies.
  const signatures = options.mlflow ? new SignatureFetcher({ mlflow: options.mlflow }) : undefined;
  const controller = new GatewayController({
    cache,
    ...(filters && { onFilterPolicy: (fp: FilterPolicy, version: string) => filters.setPolicy(fp, version) }),
    ...(signatures && { onSignaturesWanted: (versions) => signatures.want(versions) }),
  });
  signatures?.on('signatures', (map) => controller.setSignatures(map));
  const watcher = new PolicyWatcher(options.policyDir, { check: controller.checkPolicy });
  let poller: RegistryPoller | undefined;

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
    // Every registered model is fetched, not only those the policy names: a policy edit that starts using a
    // model must find it in the snapshot it is checked against.
    poller = new RegistryPoller({ client, intervalMs: options.pollIntervalMs });
    poller.on('snapshot', (snapshot) => {
      onRegistry(snapshot);
      if (cacheFile) {
        saveRegistryFile(cacheFile, snapshot).catch((err: unknown) => log.error({ file: cacheFile, err: errorMessage(err) }, 'cannot write the registry cache'));
      }
    });
  } else {
    throw new Error('a registry source is required: an MLflow URI or a registry file');
  }

  const xds = new XdsServer(cache, { controlPlaneId: `flowgate-${process.pid}` });
  const server = new grpc.Server(XDS_GRPC_OPTIONS);
  xds.register(server);
  const traffic = new TrafficAggregator();
  registerAccessLogService(server, traffic);
  registerCsds(server, xds);
  const xdsPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.xds.host}:${options.xds.port}`, grpcServerCredentials(options.xdsTls), (err, port) => (err ? reject(err) : resolve(port))),
  );
  log.info({ host: options.xds.host, port: xdsPort, tls: options.xdsTls ? (options.xdsTls.clientCa ? 'mutual' : 'server') : 'off' }, 'xds listening');

  const admin = new AdminServer();
  admin.route('/debug/nodes', () => ({ json: nodeStatuses(xds) }));
  admin.route('/debug/ir', () => ({ json: controller.current() ?? null }));
  admin.route('/debug/snapshot', () => ({ json: { versions: controller.versions() } }));
  admin.route('/debug/signatures', () => ({ json: signatureReport(controller.current()) }));
  registerTrafficRoutes(admin, traffic);
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
      await watcher.stop();
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

  return { xdsPort, adminPort, filtersPort: filters?.port, controller, stop };
}

