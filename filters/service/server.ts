import type * as grpc from '@grpc/grpc-js';
import { grpcJs } from '../../src/proto/grpc-js.js';
import { grpcServerCredentials, type ServerTls } from '../../src/tls/credentials.js';
import { logger } from '../../src/observability/log.js';
import { RedisStore } from '../store/counters/redis.js';
import { MemoryStore, type CounterStore } from '../store/counters/store.js';
import { openAuditLog, type AuditEvent, type AuditLog, type AuditOptions } from './audit.js';
import type { FilterPolicy } from '../../src/contract/filter-policy.js';
import { FilterService } from './service.js';
import { startPipelineServer, type PipelineServer } from '../pipelines/server.js';
import { startH2Transport } from './h2-transport.js';
import { startRawTransport } from './raw-transport.js';
import { EXTERNAL_PROCESSOR_SERVICE } from './grpc.js';

/**
 * The filter service's gRPC server: one port for ext_authz, rate limit and ext_proc, a counter store (memory,
 * or Redis shared by replicas) and the audit log the policy names.
 */

const log = logger('filters');

export interface FilterServerOptions {
  readonly host: string;
  readonly port: number;
  /** redis://host:port shared by replicas; absent: counters in memory. */
  readonly redisUrl?: string | undefined;
  /** TLS (or mutual TLS) for Envoy's calls. */
  readonly tls?: ServerTls | undefined;
  /** The most body bytes all ext_proc exchanges together may hold; past it new exchanges get 503. */
  readonly maxBufferedBytes?: number | undefined;
  /** Also run the pipeline service (HTTP/2, with the same TLS) on this address; absent: none. */
  readonly pipelines?: { readonly host: string; readonly port: number } | undefined;
  /** Which decisions the audit log writes (default: all). */
  readonly audit?: AuditOptions | undefined;
  /** How gRPC is served (default: defaultTransport()). */
  readonly transport?: FilterTransport | undefined;
}

/**
 * `h2`: Check and ShouldRateLimit on node:http2 directly (h2-transport.ts), ext_proc handed to grpc-js on
 * the same port; `grpc-js`: every method on grpc-js's server; `raw`: every method on HTTP/2 parsed from the
 * socket (raw-transport.ts; ext_proc through a stand-in for grpc-js's duplex call).
 */
export const FILTER_TRANSPORTS = ['h2', 'grpc-js', 'raw'] as const;
export type FilterTransport = (typeof FILTER_TRANSPORTS)[number];

/** The transport when none is given: FLOWGATE_FILTERS_TRANSPORT (so the embedded filter service of `flowgate serve` follows it too), else raw. */
export function defaultTransport(): FilterTransport {
  const env = process.env.FLOWGATE_FILTERS_TRANSPORT;
  if (env === undefined || env === '') return 'raw';
  if (!(FILTER_TRANSPORTS as readonly string[]).includes(env)) throw new Error(`FLOWGATE_FILTERS_TRANSPORT is one of ${FILTER_TRANSPORTS.join(', ')} (got ${JSON.stringify(env)})`);
  return env as FilterTransport;
}

export interface FilterServer {
  readonly port: number;
  readonly service: FilterService;
  readonly store: CounterStore;
  /** The pipeline service's port, when it runs. */
  readonly pipelinesPort: number | undefined;
  setPolicy(policy: FilterPolicy, version: string): void;
  stop(): Promise<void>;
}

/**
 * grpc-js server options. Channelz off: it tracked every call (4 % of a ShouldRateLimit profile) for a
 * debugging service the filter service does not serve. Streams per connection bounded, so one Envoy cannot
 * hold unbounded calls (Envoy opens another connection when a connection's streams are all in use).
 */
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_BYTES = 70 * 1024 * 1024;
const MAX_CONCURRENT_STREAMS = 1000;
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': KEEPALIVE_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.enable_channelz': 0,
  'grpc.max_concurrent_streams': MAX_CONCURRENT_STREAMS,
};

/** Opens the audit log on the first policy, from its Gateway.audit settings. */
class LazyAudit implements AuditLog {
  private log: AuditLog | undefined;
  constructor(private readonly options: AuditOptions) {}
  open(policy: FilterPolicy): void {
    this.log ??= openAuditLog(policy.audit.sink, policy.audit.path, this.options);
  }
  write(event: AuditEvent): void {
    this.log?.write(event);
  }
}

/**
 * Whether the policy's models may open ext_proc streams (bodies read or rewritten: masking, token quotas,
 * usage, guardrails, LLM routing). Only a hint to create the grpc-js server ahead of the first stream; a
 * stream it misses creates it on arrival.
 */
function hasStreams(policy: FilterPolicy): boolean {
  return (
    policy.llm !== undefined ||
    policy.consumers.some((c) => c.tokenQuotas.length > 0) ||
    policy.models.some((m) => m.masking !== undefined || m.guardrails !== undefined || m.llm !== undefined || m.tokenQuotas.length > 0 || m.bodies !== undefined)
  );
}

export async function startFilterServer(options: FilterServerOptions): Promise<FilterServer> {
  const store: CounterStore = options.redisUrl ? new RedisStore({ url: options.redisUrl }) : new MemoryStore();
  const audit = new LazyAudit(options.audit ?? {});
  const service = new FilterService({ store, audit, maxBufferedBytes: options.maxBufferedBytes, redisUrl: options.redisUrl });
  const transport = options.transport ?? defaultTransport();
  // With h2, grpc-js serves only the streams the lean transport hands it (ext_proc), and is loaded and
  // created for the first of them, or for a policy whose models have ext_proc streams (grpcServer below);
  // raw serves ext_proc itself, so grpc-js's server is never created.
  let server: grpc.Server | undefined;
  const grpcServer = (): grpc.Server => {
    if (server === undefined) {
      server = new (grpcJs().Server)(GRPC_SERVER_OPTIONS);
      service.register(server, transport === 'h2');
    }
    return server;
  };
  let closeLean: ((graceMs: number) => Promise<void>) | undefined;
  let port: number;
  if (transport === 'h2' || transport === 'raw') {
    const common = {
      host: options.host,
      port: options.port,
      tls: options.tls,
      unary: service.unaryMethods(),
      maxMessageBytes: MAX_MESSAGE_BYTES,
      maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
      keepaliveMs: KEEPALIVE_MS,
      keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
    };
    const process = EXTERNAL_PROCESSOR_SERVICE.Process as grpc.MethodDefinition<unknown, object>;
    // h2: grpc-js serves only the streams the lean transport hands it (ext_proc), binding no port itself;
    // raw: ext_proc through raw-duplex.ts's stand-in for grpc-js's duplex call, to the same handler.
    const lean =
      transport === 'h2'
        ? await startH2Transport({ ...common, fallback: grpcServer })
        : await startRawTransport({
            ...common,
            streaming: new Map([[process.path, { decode: process.requestDeserialize, encode: process.responseSerialize, handle: (call) => service.process(call) }]]),
          });
    port = lean.port;
    closeLean = (graceMs) => lean.close(graceMs);
  } else {
    const all = grpcServer();
    port = await new Promise<number>((resolve, reject) =>
      all.bindAsync(`${options.host}:${options.port}`, grpcServerCredentials(options.tls), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
  }
  log.info({ host: options.host, port, transport, store: store.kind, maxBufferedBytes: service.buffers.capBytes, tls: options.tls ? (options.tls.clientCa ? 'mutual' : 'server') : 'off' }, 'filter service listening');
  const pipelines: PipelineServer | undefined = options.pipelines
    ? await startPipelineServer({ ...options.pipelines, tls: options.tls, engine: () => service.current(), audit })
    : undefined;
  let warned = false;
  return {
    port,
    service,
    store,
    pipelinesPort: pipelines?.port,
    setPolicy: (policy, version) => {
      audit.open(policy);
      service.setPolicy(policy, version);
      if (transport === 'h2' && hasStreams(policy)) grpcServer();
      if (!pipelines && (policy.pipelines ?? []).length > 0 && !warned) {
        warned = true;
        log.warn({ pipelines: policy.pipelines?.map((p) => p.name) }, 'the policy has pipelines but this filter service runs no pipeline service (--pipelines-listen); another replica must');
      }
    },
    stop: async () => {
      await pipelines?.close();
      const lean = closeLean?.(3000);
      const grpcOnly = server;
      if (grpcOnly !== undefined) {
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            grpcOnly.forceShutdown();
            resolve();
          }, 3000);
          grpcOnly.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      }
      await lean;
      await store.close();
      await service.close();
    },
  };
}
