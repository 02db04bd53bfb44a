import * as grpc from '@grpc/grpc-js';
import { grpcServerCredentials, type ServerTls } from '../../src/tls/credentials.js';
import { logger } from '../../src/observability/log.js';
import { RedisStore } from '../store/counters/redis.js';
import { MemoryStore, type CounterStore } from '../store/counters/store.js';
import { openAuditLog, type AuditEvent, type AuditLog, type AuditOptions } from './audit.js';
import type { FilterPolicy } from '../../src/contract/filter-policy.js';
import { FilterService } from './service.js';
import { startPipelineServer, type PipelineServer } from '../pipelines/server.js';

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
export const GRPC_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.max_receive_message_length': 70 * 1024 * 1024,
  'grpc.enable_channelz': 0,
  'grpc.max_concurrent_streams': 1000,
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

export async function startFilterServer(options: FilterServerOptions): Promise<FilterServer> {
  const store: CounterStore = options.redisUrl ? new RedisStore({ url: options.redisUrl }) : new MemoryStore();
  const audit = new LazyAudit(options.audit ?? {});
  const service = new FilterService({ store, audit, maxBufferedBytes: options.maxBufferedBytes, redisUrl: options.redisUrl });
  const server = new grpc.Server(GRPC_SERVER_OPTIONS);
  service.register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.host}:${options.port}`, grpcServerCredentials(options.tls), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  log.info({ host: options.host, port, store: store.kind, maxBufferedBytes: service.buffers.capBytes, tls: options.tls ? (options.tls.clientCa ? 'mutual' : 'server') : 'off' }, 'filter service listening');
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
      if (!pipelines && (policy.pipelines ?? []).length > 0 && !warned) {
        warned = true;
        log.warn({ pipelines: policy.pipelines?.map((p) => p.name) }, 'the policy has pipelines but this filter service runs no pipeline service (--pipelines-listen); another replica must');
      }
    },
    stop: async () => {
      await pipelines?.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 3000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await store.close();
      await service.close();
    },
  };
}
