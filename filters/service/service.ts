import type * as grpc from '@grpc/grpc-js';
import type { FilterPolicy } from '../../src/contract/filter-policy.js';
import { errorMessage } from '../../src/errors.js';
import type { CheckRequest } from '../../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { ProcessingRequest__Output as ProcessingRequest } from '../../src/generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
import type { RateLimitRequest } from '../../src/generated/envoy/service/ratelimit/v3/RateLimitRequest.js';
import { logger } from '../../src/observability/log.js';
import { BufferBudget } from '../extproc/buffer-budget.js';
import type { CounterStore } from '../store/counters/store.js';
import type { AuditLog } from './audit.js';
import { FilterEngine } from './engine.js';
import { AUTHORIZATION_SERVICE, EXTERNAL_PROCESSOR_SERVICE, RATE_LIMIT_SERVICE } from './grpc.js';
import { check } from './handlers/authz.js';
import { handleProcessStream } from './handlers/extproc-stream.js';
import { shouldRateLimit } from './handlers/ratelimit.js';
import { handleLlmStream, type LlmState } from './handlers/llm-stream.js';
import { batchedHistogramChild, callLatency, type BatchedHistogramChild } from './metrics.js';
import { failure } from './responses.js';
import type { UnaryMethod } from './grpc-unary.js';
import { reshapeCheck, reshapeProcessing } from './api-format.js';
import { API_CONTEXT_KEY, API_METADATA_KEY, apiKindOf, ExtprocRole, EXTPROC_ROLE_METADATA_KEY } from '../../src/contract/filter-wire.js';
import { Cooldowns } from '../llm/cooldown.js';
import { Credentials } from '../llm/credentials.js';
import { AnswerCaches } from '../llm/cache.js';
import { MemoryBudgets, RedisBudgets, type BudgetStore } from '../store/budgets.js';

/**
 * The filter service: Envoy's ext_authz (Check), rate limit (ShouldRateLimit) and ext_proc (Process) calls,
 * judged by the current FilterEngine, which is swapped whole when a new policy arrives. Every malformed input
 * gets a 4xx decision, never a crash; with no policy yet, calls fail with UNAVAILABLE so that Envoy applies
 * the route's fail-closed (or fail-open) setting.
 */

const log = logger('filters');

// Observed in plain numbers (metrics.ts): prom-client's observe() validates and hashes its labels on every call.
const checkLatency = batchedHistogramChild(callLatency, { method: 'Check' });
const rateLimitLatency = batchedHistogramChild(callLatency, { method: 'ShouldRateLimit' });

export interface FilterServiceOptions {
  readonly store: CounterStore;
  readonly audit: AuditLog;
  /** The Redis the counters use, which `llm.cache: { store: redis }` shares. */
  readonly redisUrl?: string | undefined;
  /** The most body bytes all ext_proc exchanges together may hold (default DEFAULT_MAX_BUFFERED_BYTES). */
  readonly maxBufferedBytes?: number | undefined;
}

export class FilterService {
  private engine: FilterEngine | undefined;
  /** Every body byte the ext_proc exchanges hold, together. */
  readonly buffers: BufferBudget;
  /** Outlives policy versions: a cooldown started under one policy still holds under the next. */
  private readonly llm: LlmState;
  /** LLM spending against budgets: Redis (shared by replicas) when configured, else this replica's memory. */
  private readonly budgets: BudgetStore;

  constructor(private readonly options: FilterServiceOptions) {
    this.buffers = new BufferBudget(options.maxBufferedBytes);
    this.llm = { cooldowns: new Cooldowns(), credentials: new Credentials(), answers: new AnswerCaches(options.redisUrl), audit: options.audit };
    this.budgets = options.redisUrl ? new RedisBudgets(options.redisUrl) : new MemoryBudgets();
  }

  /** Closes what the service opened itself (the answer cache's Redis connection). */
  async close(): Promise<void> {
    await this.llm.answers.close();
    await this.budgets.close();
  }

  /** The policy version now deciding, if any. */
  get version(): string | undefined {
    return this.engine?.version;
  }

  /** The engine deciding now (tests, benchmarks). */
  current(): FilterEngine | undefined {
    return this.engine;
  }

  /** Swaps in a new policy; a policy that does not compile (e.g. a regex) throws and the current one stays. */
  setPolicy(policy: FilterPolicy, version: string): void {
    if (this.engine?.version === version) return;
    this.engine = new FilterEngine(policy, version, this.options.store, this.budgets);
    // Remote JWKS are fetched now rather than on the first request, whose Check has a short deadline.
    void this.engine.authorizer.jwt.prefetch().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'JWKS prefetch failed'));
    log.info({ version, models: policy.models.length, consumers: policy.consumers.length }, 'filter policy applied');
  }

  /** ext_authz Check with the current policy; a denial in the shape of the API the route serves. */
  async check(req: CheckRequest): Promise<object> {
    const api = apiKindOf(req.attributes?.context_extensions?.[API_CONTEXT_KEY]);
    return reshapeCheck(api, await check(this.engine, this.options.audit, req));
  }

  /** ShouldRateLimit with the current policy. */
  shouldRateLimit(req: RateLimitRequest): Promise<object> {
    return shouldRateLimit(this.engine, this.options.audit, req);
  }

  /**
   * The unary methods by path, for a transport that serves them itself (h2-transport.ts): each call timed,
   * and a failure turned into the gRPC error Envoy sees.
   */
  unaryMethods(): Map<string, UnaryMethod> {
    const methods = new Map<string, UnaryMethod>();
    const add = (definition: grpc.MethodDefinition<unknown, object>, name: string, latency: BatchedHistogramChild, call: (req: never) => Promise<object>): void => {
      methods.set(definition.path, {
        decode: definition.requestDeserialize,
        encode: definition.responseSerialize,
        handle: (req) => {
          const start = performance.now();
          return call(req as never).then(
            (res) => {
              latency.observe((performance.now() - start) / 1000);
              return res;
            },
            (err: unknown) => {
              latency.observe((performance.now() - start) / 1000);
              throw failure(name, err);
            },
          );
        },
      });
    };
    add(AUTHORIZATION_SERVICE.Check as grpc.MethodDefinition<unknown, object>, 'Check', checkLatency, (req: CheckRequest) => this.check(req));
    add(RATE_LIMIT_SERVICE.ShouldRateLimit as grpc.MethodDefinition<unknown, object>, 'ShouldRateLimit', rateLimitLatency, (req: RateLimitRequest) => this.shouldRateLimit(req));
    return methods;
  }

  /** Registers the services on a grpc-js server: all of them, or (`streamingOnly`) ext_proc alone. */
  register(server: grpc.Server, streamingOnly = false): void {
    if (!streamingOnly) {
      const unary = this.unaryMethods();
      for (const [definition, name] of [
        [AUTHORIZATION_SERVICE, 'Check'],
        [RATE_LIMIT_SERVICE, 'ShouldRateLimit'],
      ] as const) {
        const method = unary.get((definition[name] as grpc.MethodDefinition<unknown, object>).path) as UnaryMethod;
        server.addService(definition, {
          [name]: (call: grpc.ServerUnaryCall<unknown, object>, done: grpc.sendUnaryData<object>) => {
            method.handle(call.request).then((res) => done(null, res), (err: grpc.ServiceError) => done(err));
          },
        });
      }
    }
    server.addService(EXTERNAL_PROCESSOR_SERVICE, { Process: (call: grpc.ServerDuplexStream<ProcessingRequest, object>) => this.process(call) });
  }

  /** One ext_proc Process stream (grpc-js's, or a transport's stand-in with the same events and methods). */
  process(call: grpc.ServerDuplexStream<ProcessingRequest, object>): void {
    const role = call.metadata.get(EXTPROC_ROLE_METADATA_KEY)[0];
    if (role === ExtprocRole.llmRouter || role === ExtprocRole.llmUpstream) {
      handleLlmStream(call, this.engine, role, this.llm);
      return;
    }
    const api = apiKindOf(call.metadata.get(API_METADATA_KEY)[0]);
    if (api !== 'flowgate') {
      // The body processors answer in Flowgate's shape; on an LLM API their refusals take that API's.
      const write = call.write.bind(call);
      call.write = ((msg: object, ...rest: unknown[]) => write(reshapeProcessing(api, msg), ...(rest as []))) as typeof call.write;
    }
    handleProcessStream(call, this.engine, this.options.audit, this.buffers);
  }
}
