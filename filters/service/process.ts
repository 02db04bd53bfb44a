import { logger } from '../../src/observability/log.js';
import { AdminServer } from '../../src/observability/admin-server.js';
import { enableProcessMetrics } from '../../src/observability/metrics.js';
import type { ServerTls } from '../../src/tls/credentials.js';
import type { FilterPolicy } from '../../src/contract/filter-policy.js';
import { startFilterServer, type FilterServer, type FilterTransport } from './server.js';
import type { AuditOptions } from './audit.js';
import { isFilterWorker, reportWorkerPolicy, shareWorkerMetrics } from './workers.js';

/**
 * The standalone filter service process (`flowgate filters`), as src/control/plane.ts is the control
 * plane's: the gRPC server, its admin endpoint (/metrics, /readyz once a policy decides) and a policy source
 * (the control plane over xDS, or a local policy directory), wired together and stopped together.
 */

/** Where filter policies come from. */
export interface FilterPolicySource {
  /** A human description for the log: `xds 127.0.0.1:18000`, `policy ./policy`. */
  readonly description: string;
  start(onPolicy: (policy: FilterPolicy, version: string) => void): Promise<void> | void;
  stop(): Promise<void> | void;
}

export interface FilterProcessOptions {
  readonly listen: { readonly host: string; readonly port: number };
  /** Absent in a worker of `--workers N`: the primary serves the admin endpoint for all of them. */
  readonly admin?: { readonly host: string; readonly port: number } | undefined;
  readonly redisUrl?: string | undefined;
  /** Counters on a Redis Cluster (its nodes). */
  readonly tls?: ServerTls | undefined;
  readonly maxBufferedBytes?: number | undefined;
  /** Also run the pipeline service on this address. */
  readonly pipelines?: { readonly host: string; readonly port: number } | undefined;
  readonly source: FilterPolicySource;
  /** Which decisions the audit log writes (default: all). */
  readonly audit?: AuditOptions | undefined;
  readonly transport?: FilterTransport | undefined;
}

export interface FilterProcess {
  readonly server: FilterServer;
  /** Undefined when the process serves no admin endpoint (a worker). */
  readonly adminPort: number | undefined;
  stop(): Promise<void>;
}

/** Starts the filter service with its admin endpoint and policy source. */
export async function startFilterProcess(options: FilterProcessOptions): Promise<FilterProcess> {
  enableProcessMetrics();
  const log = logger('filters');
  const server = await startFilterServer({ ...options.listen, redisUrl: options.redisUrl, tls: options.tls, maxBufferedBytes: options.maxBufferedBytes, pipelines: options.pipelines, audit: options.audit, transport: options.transport });
  const admin = options.admin ? new AdminServer() : undefined;
  admin?.readinessCheck('policy', () => (server.service.version ? { ready: true } : { ready: false, reason: 'no filter policy yet' }));
  const adminPort = options.admin ? await admin?.listen(options.admin.port, options.admin.host) : undefined;
  if (isFilterWorker()) shareWorkerMetrics();
  await options.source.start((policy, version) => {
    server.setPolicy(policy, version);
    if (server.service.version === version) reportWorkerPolicy(version);
  });
  log.info({ port: server.port, admin: adminPort, source: options.source.description, ...(isFilterWorker() && { worker: process.env.FLOWGATE_FILTERS_WORKER }) }, 'filter service running');
  let stopping: Promise<void> | undefined;
  return {
    server,
    adminPort,
    stop: () =>
      (stopping ??= (async () => {
        await options.source.stop();
        await server.stop();
        await admin?.close();
      })()),
  };
}
