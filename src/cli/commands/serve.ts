import { startControlPlane } from '../../control/plane.js';
import { logger } from '../../observability/log.js';
import { serverTlsOption, TlsOptionError, type ServerTls } from '../../tls/credentials.js';
import { hostPort, UsageError, type Command, type OptionValues } from '../command.js';
import { DEFAULTS } from '../defaults.js';
import { mlflowOptions, registryOptions } from '../registry-options.js';

/** `flowgate serve`: the control plane. */
export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the control plane: watch the policy, poll MLflow, serve Envoy configuration over xDS.',
  options: {
    policy: { type: 'string', description: 'the policy directory (watched; edits apply when valid)', env: 'FLOWGATE_POLICY', required: true, placeholder: 'DIR' },
    ...registryOptions(true),
    'registry-cache': { type: 'string', description: 'file keeping the last MLflow snapshot, served at start while MLflow is unreachable', env: 'FLOWGATE_REGISTRY_CACHE', placeholder: 'FILE' },
    'poll-interval': { type: 'string', description: 'MLflow poll interval, in ms', env: 'FLOWGATE_POLL_INTERVAL_MS', default: '5000', placeholder: 'MS' },
    'xds-listen': { type: 'string', description: 'xDS gRPC listen address (Envoys connect here)', env: 'FLOWGATE_XDS_LISTEN', default: `127.0.0.1:${DEFAULTS.xdsPort}`, placeholder: 'HOST:PORT' },
    'xds-tls-cert': { type: 'string', description: 'serve xDS over TLS with this certificate (PEM)', env: 'FLOWGATE_XDS_TLS_CERT', placeholder: 'FILE' },
    'xds-tls-key': { type: 'string', description: 'the key of --xds-tls-cert (PEM)', env: 'FLOWGATE_XDS_TLS_KEY', placeholder: 'FILE' },
    'xds-tls-client-ca': { type: 'string', description: 'mutual TLS: accept only xDS clients with a certificate signed by this CA', env: 'FLOWGATE_XDS_TLS_CLIENT_CA', placeholder: 'FILE' },
    'admin-listen': { type: 'string', description: 'admin HTTP listen address (/metrics, /readyz, /debug/*)', env: 'FLOWGATE_ADMIN_LISTEN', default: `127.0.0.1:${DEFAULTS.adminPort}`, placeholder: 'HOST:PORT' },
    filters: { type: 'boolean', description: 'run the filter service in this process (--no-filters when it runs as `flowgate filters`)', env: 'FLOWGATE_EMBEDDED_FILTERS', default: true },
    'filters-listen': { type: 'string', description: 'embedded filter service gRPC listen address', env: 'FLOWGATE_FILTERS_LISTEN', default: `127.0.0.1:${DEFAULTS.filtersPort}`, placeholder: 'HOST:PORT' },
    'filters-tls-cert': { type: 'string', description: 'serve the embedded filter service over TLS with this certificate (PEM)', env: 'FLOWGATE_FILTERS_TLS_CERT', placeholder: 'FILE' },
    'filters-tls-key': { type: 'string', description: 'the key of --filters-tls-cert (PEM)', env: 'FLOWGATE_FILTERS_TLS_KEY', placeholder: 'FILE' },
    'filters-tls-client-ca': { type: 'string', description: 'mutual TLS: accept only Envoys with a certificate signed by this CA', env: 'FLOWGATE_FILTERS_TLS_CLIENT_CA', placeholder: 'FILE' },
    'redis-url': { type: 'string', description: 'Redis for rate-limit and quota counters shared by filter replicas (default: in memory)', env: 'FLOWGATE_REDIS_URL', placeholder: 'URL' },
    'pipelines-listen': { type: 'string', description: 'run the pipeline service beside the embedded filter service (HTTP/2, its TLS) on this address', env: 'FLOWGATE_PIPELINES_LISTEN', placeholder: 'HOST:PORT' },
  },
  notes: [
    'Example: flowgate serve --policy ./policy --mlflow-uri http://127.0.0.1:5000',
    'Envoys get their bootstrap from `flowgate bootstrap`. SIGTERM or SIGINT stops it gracefully: streams end,',
    'and Envoys keep serving their last configuration until they reconnect.',
  ].join('\n'),
  async run(options) {
    const pollIntervalMs = Number(options['poll-interval']);
    if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 100) throw new UsageError('--poll-interval must be a whole number of milliseconds, at least 100');
    const registryFile = typeof options.registry === 'string' && options.registry !== '' ? options.registry : undefined;
    const mlflow = registryFile ? undefined : mlflowOptions(options);
    if (!registryFile && !mlflow) throw new UsageError('give --mlflow-uri (or MLFLOW_TRACKING_URI), or --registry FILE');
    const plane = await startControlPlane({
      policyDir: String(options.policy),
      ...(mlflow && { mlflow }),
      ...(registryFile && { registryFile }),
      pollIntervalMs,
      registryCache: typeof options['registry-cache'] === 'string' && options['registry-cache'] !== '' ? options['registry-cache'] : undefined,
      xds: hostPort(String(options['xds-listen']), '--xds-listen'),
      xdsTls: tlsOption(options, 'xds-tls'),
      admin: hostPort(String(options['admin-listen']), '--admin-listen'),
      ...(options.filters !== false && {
        filters: {
          ...hostPort(String(options['filters-listen']), '--filters-listen'),
          redisUrl: typeof options['redis-url'] === 'string' ? options['redis-url'] : undefined,
          tls: tlsOption(options, 'filters-tls'),
          pipelines: typeof options['pipelines-listen'] === 'string' && options['pipelines-listen'] !== '' ? hostPort(options['pipelines-listen'], '--pipelines-listen') : undefined,
        },
      }),
    });
    const log = logger('serve');
    log.info({ xdsPort: plane.xdsPort, adminPort: plane.adminPort }, 'control plane running');
    await new Promise<void>((resolve) => {
      const onSignal = (signal: string): void => {
        log.info({ signal }, 'signal received');
        void plane.stop().then(resolve);
      };
      process.once('SIGTERM', () => onSignal('SIGTERM'));
      process.once('SIGINT', () => onSignal('SIGINT'));
    });
    return 0;
  },
};

/** A TLS option group, with a wrong combination reported as a usage error. */
export function tlsOption(options: OptionValues, prefix: string): ServerTls | undefined {
  try {
    return serverTlsOption(options, prefix);
  } catch (err) {
    if (err instanceof TlsOptionError) throw new UsageError(err.message);
    throw err;
  }
}
