import { writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { DEFAULT_MAX_DOWNSTREAM_CONNECTIONS, DEFAULT_MAX_HEAP_BYTES, envoyBootstrapJson, isLoopbackAddress } from '../../bootstrap/bootstrap.js';
import { hostPort, UsageError, type Command } from '../command.js';
import { DEFAULTS } from '../defaults.js';

/** `flowgate bootstrap`: prints an Envoy bootstrap pointing at a Flowgate control plane. */
export const bootstrapCommand: Command = {
  name: 'bootstrap',
  summary: 'Print an Envoy bootstrap that takes all its configuration from a Flowgate control plane.',
  options: {
    'node-id': { type: 'string', description: 'the Envoy node id', env: 'FLOWGATE_NODE_ID', required: true, placeholder: 'ID' },
    'node-cluster': { type: 'string', description: 'the Envoy node cluster (its node group)', env: 'FLOWGATE_NODE_CLUSTER', default: 'flowgate', placeholder: 'NAME' },
    xds: { type: 'string', description: 'the control plane xDS address', env: 'FLOWGATE_XDS', default: `127.0.0.1:${DEFAULTS.xdsPort}`, placeholder: 'HOST:PORT' },
    delta: { type: 'boolean', description: 'incremental xDS (DELTA_GRPC) instead of state of the world', default: false },
    ads: { type: 'boolean', description: 'one aggregated stream (ADS); --no-ads opens one stream per resource type', default: true },
    'admin-address': { type: 'string', description: 'Envoy admin listen address: loopback only (127.0.0.1 or ::1)', default: '127.0.0.1', placeholder: 'ADDR' },
    'health-listen': { type: 'string', description: 'add a probe listener answering GET /ready (Envoy\'s health), nothing else; e.g. 0.0.0.0:9902', placeholder: 'HOST:PORT' },
    'admin-port': { type: 'string', description: 'Envoy admin port', default: String(DEFAULTS.envoyAdminPort), placeholder: 'PORT' },
    'xds-tls-ca': { type: 'string', description: 'TLS to the control plane: CA file (on the Envoy host) that signed its certificate', env: 'FLOWGATE_XDS_TLS_CA', placeholder: 'FILE' },
    'xds-tls-cert': { type: 'string', description: 'mutual TLS: this Envoy\'s client certificate file', env: 'FLOWGATE_XDS_TLS_CERT', placeholder: 'FILE' },
    'xds-tls-key': { type: 'string', description: 'mutual TLS: this Envoy\'s client key file', env: 'FLOWGATE_XDS_TLS_KEY', placeholder: 'FILE' },
    'xds-tls-sni': { type: 'string', description: 'server name to request and verify (default: the --xds host when it is a name)', placeholder: 'NAME' },
    'max-heap-bytes': { type: 'string', description: 'overload manager heap bound: Envoy shrinks its heap at 95% and refuses new requests at 98%', default: String(DEFAULT_MAX_HEAP_BYTES), placeholder: 'BYTES' },
    'max-connections': { type: 'string', description: 'the most downstream connections Envoy holds at once', default: String(DEFAULT_MAX_DOWNSTREAM_CONNECTIONS), placeholder: 'N' },
    format: { type: 'string', description: 'yaml or json', default: 'yaml', placeholder: 'FORMAT' },
    output: { type: 'string', short: 'o', description: 'write to FILE instead of stdout', placeholder: 'FILE' },
  },
  notes: 'Run Envoy with it:  flowgate bootstrap --node-id edge-1 > envoy.yaml && envoy -c envoy.yaml',
  run(options) {
    const xds = hostPort(String(options.xds), '--xds');
    const str = (name: string): string | undefined => (typeof options[name] === 'string' && options[name] !== '' ? options[name] : undefined);
    const ca = str('xds-tls-ca');
    if (!ca && (str('xds-tls-cert') || str('xds-tls-key'))) throw new UsageError('--xds-tls-cert and --xds-tls-key need --xds-tls-ca');
    if (Boolean(str('xds-tls-cert')) !== Boolean(str('xds-tls-key'))) throw new UsageError('give both --xds-tls-cert and --xds-tls-key, or neither');
    const healthText = str('health-listen');
    const health = healthText === undefined ? undefined : hostPort(healthText, '--health-listen');
    if (!isLoopbackAddress(String(options['admin-address']))) {
      throw new UsageError(`--admin-address must be loopback (127.0.0.1 or ::1): the admin interface can stop Envoy and dump its config; give --health-listen for probes from outside`);
    }
    const json = envoyBootstrapJson({
      nodeId: String(options['node-id']),
      nodeCluster: String(options['node-cluster']),
      xdsHost: xds.host,
      xdsPort: xds.port,
      delta: options.delta === true,
      ads: options.ads !== false,
      adminAddress: String(options['admin-address']),
      adminPort: Number(options['admin-port']),
      maxHeapBytes: positiveInteger(options['max-heap-bytes'], '--max-heap-bytes'),
      maxDownstreamConnections: positiveInteger(options['max-connections'], '--max-connections'),
      ...(health && { health: { address: health.host, port: health.port } }),
      ...(ca && { xdsTls: { ca, cert: str('xds-tls-cert'), key: str('xds-tls-key'), sni: str('xds-tls-sni') } }),
    });
    const text = options.format === 'json' ? JSON.stringify(json, null, 2) + '\n' : YAML.stringify(json);
    if (typeof options.output === 'string') writeFileSync(options.output, text);
    else process.stdout.write(text);
    return Promise.resolve(0);
  },
};

function positiveInteger(value: unknown, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive whole number (got ${String(value)})`);
  return n;
}
