import { hostname } from 'node:os';
import type { FilterPolicySource } from '../../../filters/service/process.js';
import { logger } from '../../observability/log.js';
import { grpcClientCredentials } from '../../tls/credentials.js';
import { hostPort, redisUrlOption, UsageError, type Command } from '../command.js';
import { DEFAULTS } from '../defaults.js';
import { registryOptions } from '../registry-options.js';
import { DEFAULT_MAX_BUFFERED_BYTES } from '../../../filters/extproc/buffer-budget.js';
import { defaultWorkers, isFilterWorker, runFilterWorkers, workersPerCore } from '../../../filters/service/workers.js';
import { AUDIT_DECISIONS, type AuditDecisions, type AuditOptions } from '../../../filters/service/audit.js';
import { bufferedBytesOption, tlsOption } from '../server-options.js';
import { FILTER_TRANSPORTS, type FilterTransport } from '../../../filters/service/server.js';

/** `flowgate filters`: the filter service on its own (replicas, sharing counters through Redis). */
export const filtersCommand: Command = {
  name: 'filters',
  summary: 'Run the filter service (ext_authz, rate limit, ext_proc) that Envoy calls, fed by the control plane.',
  options: {
    listen: { type: 'string', description: 'gRPC listen address (Envoys connect here)', env: 'FLOWGATE_FILTERS_LISTEN', default: `127.0.0.1:${DEFAULTS.filtersPort}`, placeholder: 'HOST:PORT' },
    'admin-listen': { type: 'string', description: 'admin HTTP listen address (/metrics, /readyz)', env: 'FLOWGATE_FILTERS_ADMIN_LISTEN', default: `127.0.0.1:${DEFAULTS.filtersAdminPort}`, placeholder: 'HOST:PORT' },
    xds: { type: 'string', description: 'the control plane to take the filter policy from (xDS)', env: 'FLOWGATE_XDS', placeholder: 'HOST:PORT' },
    policy: { type: 'string', description: 'standalone: read the policy directory instead (with --mlflow-uri or --registry, aliases resolve too)', env: 'FLOWGATE_POLICY', placeholder: 'DIR' },
    ...registryOptions(true),
    'poll-interval': { type: 'string', description: 'with --policy and --mlflow-uri: MLflow poll interval, in ms', env: 'FLOWGATE_POLL_INTERVAL_MS', default: '5000', placeholder: 'MS' },
    'tls-cert': { type: 'string', description: 'serve Envoy\'s calls over TLS with this certificate (PEM)', env: 'FLOWGATE_FILTERS_TLS_CERT', placeholder: 'FILE' },
    'tls-key': { type: 'string', description: 'the key of --tls-cert (PEM)', env: 'FLOWGATE_FILTERS_TLS_KEY', placeholder: 'FILE' },
    'tls-client-ca': { type: 'string', description: 'mutual TLS: accept only Envoys with a certificate signed by this CA', env: 'FLOWGATE_FILTERS_TLS_CLIENT_CA', placeholder: 'FILE' },
    'xds-tls-ca': { type: 'string', description: 'TLS to the control plane: the CA that signed its certificate', env: 'FLOWGATE_XDS_TLS_CA', placeholder: 'FILE' },
    'xds-tls-cert': { type: 'string', description: 'mutual TLS: this replica\'s client certificate', env: 'FLOWGATE_XDS_TLS_CERT', placeholder: 'FILE' },
    'xds-tls-key': { type: 'string', description: 'mutual TLS: this replica\'s client key', env: 'FLOWGATE_XDS_TLS_KEY', placeholder: 'FILE' },
    'redis-url': { type: 'string', description: 'Redis shared by replicas for rate-limit and quota counters and the answer cache: redis://, rediss://, redis+cluster://HOST:PORT,… or redis+sentinel://HOST:PORT,…/MASTER (default: in memory)', env: 'FLOWGATE_REDIS_URL', placeholder: 'URL' },
    'max-buffered-bytes': {
      type: 'string',
      description: 'the most body bytes held across all ext_proc exchanges; past it new exchanges get 503',
      env: 'FLOWGATE_FILTERS_MAX_BUFFERED_BYTES',
      default: String(DEFAULT_MAX_BUFFERED_BYTES),
      placeholder: 'BYTES',
    },
    'pipelines-listen': { type: 'string', description: 'also run the pipeline service (HTTP/2, with --tls-*) on this address', env: 'FLOWGATE_PIPELINES_LISTEN', placeholder: 'HOST:PORT' },
    workers: {
      type: 'string',
      description: 'worker processes sharing the ports, or auto (one per core); above 1 needs --redis-url (default 1)',
      env: 'FLOWGATE_FILTERS_WORKERS',
      placeholder: 'N|auto',
    },
    'audit-decisions': {
      type: 'string',
      description: 'which decisions the audit log writes: all, deny (refusals and masking findings only) or none',
      env: 'FLOWGATE_AUDIT_DECISIONS',
      default: 'all',
      placeholder: 'all|deny|none',
    },
    'audit-sample-allows': {
      type: 'string',
      description: 'with --audit-decisions all: the fraction of allowed decisions written, 0 to 1 (refusals are always written)',
      env: 'FLOWGATE_AUDIT_SAMPLE_ALLOWS',
      default: '1',
      placeholder: 'FRACTION',
    },
    transport: {
      type: 'string',
      description:
        'how gRPC is served: raw (HTTP/2 parsed from the socket, every method), h2 (Check and ShouldRateLimit on node:http2, ext_proc on grpc-js, one port) or grpc-js (all on grpc-js)',
      env: 'FLOWGATE_FILTERS_TRANSPORT',
      default: 'raw',
      placeholder: 'raw|h2|grpc-js',
    },
    'node-id': { type: 'string', description: 'the name this replica gives the control plane', env: 'FLOWGATE_NODE_ID', default: `filters-${hostname()}-${process.pid}`, placeholder: 'ID' },
  },
  notes: 'Example: flowgate filters --xds 127.0.0.1:18000 --listen 0.0.0.0:18081 --redis-url redis://redis:6379',
  async run(options) {
    const xds = typeof options.xds === 'string' && options.xds !== '' ? options.xds : undefined;
    const policyDir = typeof options.policy === 'string' && options.policy !== '' ? options.policy : undefined;
    if ((xds === undefined) === (policyDir === undefined)) throw new UsageError('give exactly one of --xds or --policy');
    const log = logger('filters');
    const redisUrl = redisUrlOption(options['redis-url'], '--redis-url');
    const workers = workersOption(options.workers, redisUrl !== undefined);
    const audit = auditOptions(options['audit-decisions'], options['audit-sample-allows']);
    const transport = transportOption(options.transport);
    const listen = hostPort(String(options.listen), '--listen');
    const admin = hostPort(String(options['admin-listen']), '--admin-listen');
    if (workers > 1 && !isFilterWorker()) {
      // The primary forks the workers (this same command line) and serves the admin endpoint; it decides nothing.
      const primary = await runFilterWorkers(workers, admin);
      await stopOnSignal(log, () => primary.stop());
      return 0;
    }
    let source: FilterPolicySource;
    if (xds) {
      hostPort(xds, '--xds');
      const str = (name: string): string | undefined => (typeof options[name] === 'string' && options[name] !== '' ? options[name] : undefined);
      const ca = str('xds-tls-ca');
      const cert = str('xds-tls-cert');
      const key = str('xds-tls-key');
      if (Boolean(cert) !== Boolean(key) || ((cert || key) && !ca)) throw new UsageError('--xds-tls-cert and --xds-tls-key go together, with --xds-tls-ca');
      const credentials = grpcClientCredentials(ca ? { ca, cert, key } : undefined);
      // Each worker is its own xDS client: the control plane sees one node per worker.
      const nodeId = isFilterWorker() ? `${String(options['node-id'])}-w${process.env.FLOWGATE_FILTERS_WORKER ?? '0'}` : String(options['node-id']);
      const { FilterPolicyClient } = await import('../../../filters/service/xds-client.js');
      const client = new FilterPolicyClient(xds, nodeId, credentials);
      source = {
        description: `xds ${xds}`,
        start: (onPolicy) => {
          client.on('policy', onPolicy);
          client.start();
        },
        stop: () => client.stop(),
      };
    } else {
      const registryFile = typeof options.registry === 'string' && options.registry !== '' ? options.registry : undefined;
      const pollIntervalMs = Number(options['poll-interval']);
      if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 100) throw new UsageError('--poll-interval must be a whole number of milliseconds, at least 100');
      // Loaded only here: the local policy source runs the control plane's pipeline, which --xds replicas never need.
      const [{ localFilterPolicySource }, { loadRegistryFile }, { mlflowOptions }] = await Promise.all([
        import('../../control/filter-policy-source.js'),
        import('../../registry/file.js'),
        import('../registry-options.js'),
      ]);
      source = localFilterPolicySource({
        policyDir: policyDir as string,
        ...(registryFile ? { registry: await loadRegistryFile(registryFile) } : { mlflow: mlflowOptions(options) }),
        pollIntervalMs,
      });
    }
    // Loaded here, not with the CLI: `flowgate serve` (the same CLI module graph) never loads the filter service
    // it does not run.
    const { startFilterProcess } = await import('../../../filters/service/process.js');
    const proc = await startFilterProcess({
      audit,
      transport,
      listen,
      admin: isFilterWorker() ? undefined : admin,
      redisUrl,
      tls: tlsOption(options, 'tls'),
      maxBufferedBytes: bufferedBytesOption(options['max-buffered-bytes'], '--max-buffered-bytes'),
      pipelines: typeof options['pipelines-listen'] === 'string' && options['pipelines-listen'] !== '' ? hostPort(options['pipelines-listen'], '--pipelines-listen') : undefined,
      source,
    });
    await stopOnSignal(log, () => proc.stop());
    return 0;
  },
};

/** --audit-decisions and --audit-sample-allows, checked. */
export function auditOptions(decisions: string | boolean | undefined, sample: string | boolean | undefined): AuditOptions {
  const mode = String(decisions ?? 'all');
  if (!(AUDIT_DECISIONS as readonly string[]).includes(mode)) throw new UsageError(`--audit-decisions is one of ${AUDIT_DECISIONS.join(', ')} (got ${mode})`);
  const text = String(sample ?? '1');
  const fraction = Number(text);
  if (text.trim() === '' || !(fraction >= 0 && fraction <= 1)) throw new UsageError(`--audit-sample-allows is a fraction from 0 to 1 (got ${text})`);
  return { decisions: mode as AuditDecisions, sampleAllows: fraction };
}

/** --transport: h2, grpc-js or raw. */
export function transportOption(value: string | boolean | undefined): FilterTransport {
  const text = String(value ?? 'raw');
  if (!(FILTER_TRANSPORTS as readonly string[]).includes(text)) throw new UsageError(`--transport is one of ${FILTER_TRANSPORTS.join(', ')} (got ${text})`);
  return text as FilterTransport;
}

/** Resolves once SIGTERM or SIGINT arrived and `stop` finished. */
async function stopOnSignal(log: ReturnType<typeof logger>, stop: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const on = (signal: string): void => {
      log.info({ signal }, 'stopping');
      void stop().then(resolve);
    };
    process.once('SIGTERM', () => on('SIGTERM'));
    process.once('SIGINT', () => on('SIGINT'));
  });
}

/** --workers: a whole number from 1 to 64 or auto (one per core); more than one only with Redis (memory counters are per process). */
export function workersOption(value: string | boolean | undefined, redis: boolean): number {
  if (value === undefined || value === '' || typeof value === 'boolean') return defaultWorkers();
  const n = value === 'auto' ? workersPerCore() : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--workers is a whole number from 1 to 64 (got ${value})`);
  if (n > 1 && !redis) throw new UsageError('--workers above 1 needs --redis-url: counters in memory are per process, so each worker would apply its own limits');
  return n;
}
