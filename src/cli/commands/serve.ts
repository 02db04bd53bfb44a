import { startControlPlane, type ControlPlaneOptions } from '../../control/plane.js';
import { FlowgateError } from '../../errors.js';
import { readWebhookSecrets, WEBHOOK_PATH } from '../../registry/webhook-receiver.js';
import { logger } from '../../observability/log.js';
import { DEFAULT_REQUEST_LIMITS } from '../../xds/wire.js';
import { hostPort, redisUrlOption, UsageError, type Command, type OptionValues } from '../command.js';
import { bufferedBytesOption, tlsOption } from '../server-options.js';
import { DEFAULTS } from '../defaults.js';
import { mlflowOptions, registryOptions } from '../registry-options.js';
import { loadAdminToken } from '../../admin/token.js';
import { parseDuration } from '../../policy/fields.js';
import { DEFAULT_ANOMALY_SETTINGS } from '../../rollout/anomaly.js';

/** `flowgate serve`: the control plane. */
export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the control plane: watch the policy, poll MLflow, serve Envoy configuration over xDS.',
  options: {
    policy: { type: 'string', description: 'the policy directory (watched; edits apply when valid)', env: 'FLOWGATE_POLICY', required: true, placeholder: 'DIR' },
    ...registryOptions(true),
    'registry-cache': { type: 'string', description: 'file keeping the last MLflow snapshot, served at start while MLflow is unreachable', env: 'FLOWGATE_REGISTRY_CACHE', placeholder: 'FILE' },
    'registry-scope': { type: 'string', description: 'which models each MLflow poll fetches: policy (those the policy names) or all', env: 'FLOWGATE_REGISTRY_SCOPE', default: 'policy', placeholder: 'SCOPE' },
    'webhook-listen': { type: 'string', description: `receive MLflow webhooks on this address (POST ${WEBHOOK_PATH}); absent: polling only`, env: 'FLOWGATE_WEBHOOK_LISTEN', placeholder: 'HOST:PORT' },
    'webhook-secret-file': { type: 'string', description: 'the webhook secrets, one per line (two while rotating); required with --webhook-listen', env: 'FLOWGATE_WEBHOOK_SECRET_FILE', placeholder: 'FILE' },
    'webhook-tls-cert': { type: 'string', description: 'serve webhooks over HTTPS with this certificate (PEM)', env: 'FLOWGATE_WEBHOOK_TLS_CERT', placeholder: 'FILE' },
    'webhook-tls-key': { type: 'string', description: 'the key of --webhook-tls-cert (PEM)', env: 'FLOWGATE_WEBHOOK_TLS_KEY', placeholder: 'FILE' },
    'webhook-plaintext': { type: 'boolean', description: 'serve webhooks over plain HTTP (only behind a TLS-terminating proxy)', env: 'FLOWGATE_WEBHOOK_PLAINTEXT', default: false },
    'webhook-max-age': { type: 'string', description: 'refuse deliveries whose timestamp is further than this from the clock, in s', env: 'FLOWGATE_WEBHOOK_MAX_AGE_S', default: '300', placeholder: 'S' },
    'poll-interval': { type: 'string', description: 'MLflow poll interval, in ms', env: 'FLOWGATE_POLL_INTERVAL_MS', default: '5000', placeholder: 'MS' },
    'cluster-linger': {
      type: 'string',
      description: 'how long a cluster that left the configuration is still sent to Envoys (requests routed just before the change reach it); 0s removes at once',
      env: 'FLOWGATE_CLUSTER_LINGER',
      default: '10s',
      placeholder: 'DURATION',
    },
    'xds-listen': { type: 'string', description: 'xDS gRPC listen address (Envoys connect here)', env: 'FLOWGATE_XDS_LISTEN', default: `127.0.0.1:${DEFAULTS.xdsPort}`, placeholder: 'HOST:PORT' },
    'xds-tls-cert': { type: 'string', description: 'serve xDS over TLS with this certificate (PEM)', env: 'FLOWGATE_XDS_TLS_CERT', placeholder: 'FILE' },
    'xds-tls-key': { type: 'string', description: 'the key of --xds-tls-cert (PEM)', env: 'FLOWGATE_XDS_TLS_KEY', placeholder: 'FILE' },
    'xds-tls-client-ca': { type: 'string', description: 'mutual TLS: accept only xDS clients with a certificate signed by this CA', env: 'FLOWGATE_XDS_TLS_CLIENT_CA', placeholder: 'FILE' },
    'xds-max-request-bytes': { type: 'string', description: 'largest xDS request (and access-log batch) accepted, in bytes', env: 'FLOWGATE_XDS_MAX_REQUEST_BYTES', default: String(DEFAULT_REQUEST_LIMITS.maxRequestBytes), placeholder: 'BYTES' },
    'xds-max-resource-names': { type: 'string', description: 'most resource names one xDS request (or stream) may name', env: 'FLOWGATE_XDS_MAX_RESOURCE_NAMES', default: String(DEFAULT_REQUEST_LIMITS.maxResourceNames), placeholder: 'N' },
    'admin-listen': { type: 'string', description: 'admin HTTP listen address (/metrics, /readyz, /debug/*)', env: 'FLOWGATE_ADMIN_LISTEN', default: `127.0.0.1:${DEFAULTS.adminPort}`, placeholder: 'HOST:PORT' },
    filters: { type: 'boolean', description: 'run the filter service in this process (--no-filters when it runs as `flowgate filters`)', env: 'FLOWGATE_EMBEDDED_FILTERS', default: true },
    'filters-listen': { type: 'string', description: 'embedded filter service gRPC listen address', env: 'FLOWGATE_FILTERS_LISTEN', default: `127.0.0.1:${DEFAULTS.filtersPort}`, placeholder: 'HOST:PORT' },
    'filters-tls-cert': { type: 'string', description: 'serve the embedded filter service over TLS with this certificate (PEM)', env: 'FLOWGATE_FILTERS_TLS_CERT', placeholder: 'FILE' },
    'filters-tls-key': { type: 'string', description: 'the key of --filters-tls-cert (PEM)', env: 'FLOWGATE_FILTERS_TLS_KEY', placeholder: 'FILE' },
    'filters-tls-client-ca': { type: 'string', description: 'mutual TLS: accept only Envoys with a certificate signed by this CA', env: 'FLOWGATE_FILTERS_TLS_CLIENT_CA', placeholder: 'FILE' },
    'redis-url': {
      type: 'string',
      description: 'Redis shared by replicas: rate-limit and quota counters, rollout traffic windows, the rollout lease and timeline; redis://, rediss://, redis+cluster://HOST:PORT,… or redis+sentinel://HOST:PORT,…/MASTER (default: this process alone)',
      env: 'FLOWGATE_REDIS_URL',
      placeholder: 'URL',
    },
    'prometheus-url': { type: 'string', description: 'judge rollouts and anomalies on PromQL over this Prometheus instead of the access-log windows', env: 'FLOWGATE_PROMETHEUS_URL', placeholder: 'URL' },
    'admin-token-file': { type: 'string', description: 'file holding the admin token that mutating admin endpoints require (or FLOWGATE_ADMIN_TOKEN); without one they are off', env: 'FLOWGATE_ADMIN_TOKEN_FILE', placeholder: 'FILE' },
    'rollout-lease-ttl': { type: 'string', description: 'expiry of the rollout lease in Redis (renewed at a third of it)', env: 'FLOWGATE_ROLLOUT_LEASE_TTL', default: '10s', placeholder: 'DURATION' },
    'rollout-tick': { type: 'string', description: 'how often the lease holder looks at every rollout', env: 'FLOWGATE_ROLLOUT_TICK', default: '1s', placeholder: 'DURATION' },
    anomalies: { type: 'boolean', description: 'raise anomaly alerts (error rate or p99 jumps) on live traffic (--no-anomalies to turn off)', env: 'FLOWGATE_ANOMALIES', default: true },
    'anomaly-window': { type: 'string', description: 'the recent window anomaly detection judges', env: 'FLOWGATE_ANOMALY_WINDOW', default: '1m', placeholder: 'DURATION' },
    'anomaly-baseline': { type: 'string', description: 'the baseline before it that a version is compared with', env: 'FLOWGATE_ANOMALY_BASELINE', default: '10m', placeholder: 'DURATION' },
    'replica-id': { type: 'string', description: 'this replica\'s name in the rollout lease (default host-pid-random)', env: 'FLOWGATE_REPLICA_ID', placeholder: 'NAME' },
    'filters-max-buffered-bytes': {
      type: 'string',
      description: 'the most body bytes the embedded filter service holds across all exchanges, past which new ones get 503 (default 268435456: 256 MiB)',
      env: 'FLOWGATE_FILTERS_MAX_BUFFERED_BYTES',
      placeholder: 'BYTES',
    },
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
    const redisUrl = redisUrlOption(options['redis-url'], '--redis-url');
    const scope = String(options['registry-scope']);
    if (scope !== 'policy' && scope !== 'all') throw new UsageError('--registry-scope must be policy or all');
    const webhooks = webhookOptions(options);
    if (webhooks && !mlflow) throw new UsageError('--webhook-listen needs --mlflow-uri: webhooks come from MLflow, not from a registry file');
    const plane = await startControlPlane({
      policyDir: String(options.policy),
      ...(mlflow && { mlflow }),
      registryScope: scope,
      ...(webhooks && { webhooks }),
      ...(registryFile && { registryFile }),
      pollIntervalMs,
      clusterLingerMs: durationOption(options['cluster-linger'], '--cluster-linger', 0),
      registryCache: typeof options['registry-cache'] === 'string' && options['registry-cache'] !== '' ? options['registry-cache'] : undefined,
      xds: hostPort(String(options['xds-listen']), '--xds-listen'),
      xdsTls: tlsOption(options, 'xds-tls'),
      xdsLimits: {
        maxRequestBytes: wholeOption(options, 'xds-max-request-bytes', 1024),
        maxResourceNames: wholeOption(options, 'xds-max-resource-names', 1),
      },
      admin: hostPort(String(options['admin-listen']), '--admin-listen'),
      ...(options.filters !== false && {
        filters: {
          ...hostPort(String(options['filters-listen']), '--filters-listen'),
          redisUrl,
          tls: tlsOption(options, 'filters-tls'),
          maxBufferedBytes: bufferedBytesOption(options['filters-max-buffered-bytes'], '--filters-max-buffered-bytes'),
          pipelines: typeof options['pipelines-listen'] === 'string' && options['pipelines-listen'] !== '' ? hostPort(options['pipelines-listen'], '--pipelines-listen') : undefined,
        },
      }),
      rollouts: {
        redisUrl,
        prometheusUrl: stringOption(options['prometheus-url']),
        adminToken: loadAdminToken(stringOption(options['admin-token-file'])),
        leaseTtlMs: durationOption(options['rollout-lease-ttl'], '--rollout-lease-ttl', 1000),
        tickMs: durationOption(options['rollout-tick'], '--rollout-tick', 100),
        anomalies:
          options.anomalies === false
            ? false
            : {
                ...DEFAULT_ANOMALY_SETTINGS,
                windowMs: durationOption(options['anomaly-window'], '--anomaly-window', 1000),
                baselineMs: durationOption(options['anomaly-baseline'], '--anomaly-baseline', 1000),
              },
        replicaId: stringOption(options['replica-id']),
      },
    });
    const log = logger('serve');
    log.info({ xdsPort: plane.xdsPort, adminPort: plane.adminPort, webhookPort: plane.webhookPort }, 'control plane running');
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

function stringOption(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** A duration option (250ms, 5s, 1m) in milliseconds, at least `minMs`. */
function durationOption(value: string | boolean | undefined, flag: string, minMs: number): number {
  const ms = typeof value === 'string' ? parseDuration(value) : undefined;
  if (ms === undefined || ms < minMs) throw new UsageError(`${flag} must be a duration like 250ms, 5s or 1m, at least ${minMs}ms`);
  return ms;
}

/** The webhook receiver's options, or undefined without --webhook-listen; wrong combinations are usage errors. */
function webhookOptions(options: OptionValues): ControlPlaneOptions['webhooks'] {
  const str = (name: string): string | undefined => (typeof options[name] === 'string' && options[name] !== '' ? options[name] : undefined);
  const listen = str('webhook-listen');
  const cert = str('webhook-tls-cert');
  const key = str('webhook-tls-key');
  const secretFile = str('webhook-secret-file');
  if (!listen) {
    if (cert || key || secretFile) throw new UsageError('--webhook-tls-cert, --webhook-tls-key and --webhook-secret-file need --webhook-listen');
    return undefined;
  }
  if (!secretFile) throw new UsageError('--webhook-listen needs --webhook-secret-file: unsigned deliveries are refused');
  if (Boolean(cert) !== Boolean(key)) throw new UsageError('--webhook-tls-cert and --webhook-tls-key go together');
  const plaintext = options['webhook-plaintext'] === true;
  if (!cert && !plaintext) throw new UsageError('webhooks are served over HTTPS: give --webhook-tls-cert and --webhook-tls-key (or --webhook-plaintext behind a TLS proxy)');
  if (cert && plaintext) throw new UsageError('--webhook-plaintext and --webhook-tls-cert exclude each other');
  const maxAgeS = Number(options['webhook-max-age']);
  if (!Number.isInteger(maxAgeS) || maxAgeS < 1 || maxAgeS > 86_400) throw new UsageError('--webhook-max-age must be a whole number of seconds between 1 and 86400');
  let secrets: string[];
  try {
    secrets = readWebhookSecrets(secretFile);
  } catch (err) {
    throw new UsageError(err instanceof FlowgateError ? err.toString() : String(err));
  }
  return { ...hostPort(listen, '--webhook-listen'), secrets, tls: cert && key ? { cert, key } : undefined, maxAgeMs: maxAgeS * 1000 };
}

/** A whole-number option of at least `min`, or a usage error naming it. */
function wholeOption(options: OptionValues, name: string, min: number): number {
  const value = Number(options[name]);
  if (!Number.isSafeInteger(value) || value < min) throw new UsageError(`--${name} must be a whole number, at least ${min}`);
  return value;
}
