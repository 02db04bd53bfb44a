import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import { AdminServer } from '../../src/observability/admin-server.js';
import { logger } from '../../src/observability/log.js';
import { metricsRegistry } from '../../src/observability/metrics.js';

/**
 * `flowgate filters --workers N`: N worker processes (node:cluster) share the gRPC port (and the pipeline
 * port), so the filter service uses every core. The primary serves no call: it forks the workers, starts a
 * new one when one dies, serves the admin endpoint (/readyz once every worker decides with a policy,
 * /metrics summed over the workers) and stops them together. Each worker is a whole filter service with its
 * own policy source; counters must be shared by all of them, so more than one worker needs Redis (a memory
 * store per process would give each worker its own limits).
 */

const log = logger('filters');

/** The IPC message a worker sends when a policy decides there. */
interface PolicyMessage {
  readonly flowgate: 'filters-policy';
  readonly version: string;
}

function isPolicyMessage(m: unknown): m is PolicyMessage {
  return typeof m === 'object' && m !== null && (m as { flowgate?: unknown }).flowgate === 'filters-policy';
}

/**
 * The default: one process. More workers pay only where the service has cores of its own: on a 2-core
 * machine shared with the load client and Redis, 2 workers answered fewer calls than 1
 * (docs/performance-filters.md). `--workers auto` asks for one per core (with Redis).
 */
export function defaultWorkers(): number {
  return 1;
}

/** `--workers auto`: one worker per core. */
export function workersPerCore(): number {
  return availableParallelism();
}

/** Whether this process is a worker forked by runFilterWorkers. */
export function isFilterWorker(): boolean {
  return cluster.isWorker;
}

/** In a worker: tells the primary which policy version now decides here. */
export function reportWorkerPolicy(version: string): void {
  if (cluster.isWorker && process.send) process.send({ flowgate: 'filters-policy', version } satisfies PolicyMessage);
}

/** In a worker: lets the primary sum this worker's metrics. */
export function shareWorkerMetrics(): void {
  AggregatorRegistry.setRegistries([metricsRegistry]);
  // Constructing one is what makes a worker answer the primary's metric requests (prom-client's IPC listener).
  new AggregatorRegistry();
}

export interface FilterWorkers {
  readonly adminPort: number;
  stop(): Promise<void>;
}

/** In the primary: forks `count` workers (the same command line) and serves the admin endpoint. */
export async function runFilterWorkers(count: number, admin: { readonly host: string; readonly port: number }): Promise<FilterWorkers> {
  const policies = new Map<number, string>();
  let stopping = false;
  const aggregator = new AggregatorRegistry();
  const fork = (index: number): Worker => {
    const worker = cluster.fork({ FLOWGATE_FILTERS_WORKER: String(index) });
    worker.on('message', (m: unknown) => {
      if (isPolicyMessage(m)) policies.set(index, m.version);
    });
    worker.on('exit', (code, signal) => {
      policies.delete(index);
      if (stopping) return;
      log.error({ worker: index, code, signal }, 'filter worker exited; starting another');
      setTimeout(() => {
        if (!stopping) fork(index);
      }, 1000).unref();
    });
    return worker;
  };
  for (let i = 0; i < count; i++) fork(i);
  const server = new AdminServer();
  server.readinessCheck('workers', () =>
    policies.size === count ? { ready: true } : { ready: false, reason: `${policies.size} of ${count} filter workers have a policy` },
  );
  server.route('/metrics', async () => {
    // The workers' metrics summed (counters and histograms add up; process gauges are summed too).
    return { text: await aggregator.clusterMetrics(), contentType: metricsRegistry.contentType };
  });
  const adminPort = await server.listen(admin.port, admin.host);
  log.info({ workers: count, admin: adminPort }, 'filter workers started');
  let stopped: Promise<void> | undefined;
  return {
    adminPort,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
        await Promise.all(
          live.map(
            (w) =>
              new Promise<void>((resolve) => {
                const force = setTimeout(() => w.process.kill('SIGKILL'), 5000);
                w.once('exit', () => {
                  clearTimeout(force);
                  resolve();
                });
                w.process.kill('SIGTERM');
              }),
          ),
        );
        await server.close();
      })()),
  };
}
