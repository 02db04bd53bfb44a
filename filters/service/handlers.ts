import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { Counter, Histogram } from 'prom-client';
import { errorMessage } from '../../src/errors.js';
import { logger } from '../../src/observability/log.js';
import { metricsRegistry } from '../../src/observability/metrics.js';
import { checkBodySize } from '../extproc/masking.js';
import { estimateRequestTokens, estimateTokens } from '../extproc/tokenizer.js';
import { SseUsageReader, usageFromJson, type Usage } from '../extproc/usage.js';
import type { RateLimitDescriptor } from '../ratelimit/limiter.js';
import type { CounterStore } from '../store/counters/store.js';
import type { AuditLog } from './audit.js';
import { FilterEngine } from './engine.js';
import { AUTHORIZATION_SERVICE, EXTERNAL_PROCESSOR_SERVICE, headerMapToRecord, RATE_LIMIT_SERVICE, setHeaders } from './grpc.js';
import type { FilterPolicy } from './policy.js';
import type { CheckRequest } from '../../src/generated/envoy/service/auth/v3/CheckRequest.js';
import type { ProcessingRequest__Output as ProcessingRequest } from '../../src/generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
import type { RateLimitRequest } from '../../src/generated/envoy/service/ratelimit/v3/RateLimitRequest.js';

/**
 * The filter service: Envoy's ext_authz (Check), rate limit (ShouldRateLimit) and ext_proc (Process) calls,
 * judged by the current FilterEngine. Every malformed input gets a 4xx decision, never a crash; with no policy
 * yet, calls fail with UNAVAILABLE so that Envoy applies the route's fail-closed (or fail-open) setting.
 */

const log = logger('filters');

/** The gRPC metadata Envoy's ext_proc sends per route (ExtProcPerRoute grpc_initial_metadata): the model name. */
export const MODEL_METADATA = 'x-flowgate-model';
/** The context extension Envoy's ext_authz sends per route (ExtAuthzPerRoute check_settings): the model name. */
export const MODEL_CONTEXT = 'model';
const CONSUMER_HEADER = 'x-flowgate-consumer';
/** Read by the weighted split of a sticky model (src/translate/routes.ts). */
export const STICKY_HASH_HEADER = 'x-flowgate-sticky-hash';

/** A stable number from the caller's sticky key (Envoy takes it modulo the split's total weight). */
export function stickyHash(model: string, key: string): string {
  return createHash('sha256').update(model).update('\u0000').update(key).digest().readBigUInt64BE(0).toString();
}

const latency = new Histogram({
  name: 'flowgate_filter_grpc_seconds',
  help: 'Time to answer one filter-service call (Check, ShouldRateLimit, or one ext_proc message).',
  labelNames: ['method'] as const,
  buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  registers: [metricsRegistry],
});

const decisions = new Counter({
  name: 'flowgate_filter_decisions_total',
  help: 'Filter decisions by stage (authz, quota, ratelimit, masking) and result (allow, deny, error).',
  labelNames: ['stage', 'result', 'reason'] as const,
  registers: [metricsRegistry],
});

const STATUS_NAMES: Readonly<Record<number, string>> = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 413: 'payload_too_large', 429: 'too_many_requests', 503: 'unavailable' };

function jsonBody(error: string, message: string, extra: Record<string, unknown> = {}): string {
  return `${JSON.stringify({ error, message, ...extra })}\n`;
}

/** A failed call as the gRPC error Envoy sees (its route's failure mode then decides); unexpected ones are logged. */
function failure(method: string, err: unknown): grpc.ServiceError {
  if (err instanceof Error && 'code' in err && typeof (err as grpc.ServiceError).code === 'number') return err as grpc.ServiceError;
  log.error({ method, err: errorMessage(err) }, 'filter call failed; Envoy applies the route failure mode');
  return unavailable(errorMessage(err));
}

function unavailable(message: string): grpc.ServiceError {
  return Object.assign(new Error(message), { code: grpc.status.UNAVAILABLE, details: message, metadata: new grpc.Metadata() });
}



export interface FilterServiceOptions {
  readonly store: CounterStore;
  readonly audit: AuditLog;
}

export class FilterService {
  private engine: FilterEngine | undefined;

  constructor(private readonly options: FilterServiceOptions) {}

  /** The policy version now deciding, if any. */
  get version(): string | undefined {
    return this.engine?.version;
  }

  /** Swaps in a new policy; a policy that does not compile (e.g. a regex) is refused and the current one stays. */
  setPolicy(policy: FilterPolicy, version: string): void {
    if (this.engine?.version === version) return;
    this.engine = new FilterEngine(policy, version, this.options.store);
    // Remote JWKS are fetched now rather than on the first request, whose Check has a short deadline.
    void this.engine.authorizer.jwt.prefetch().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'JWKS prefetch failed'));
    log.info({ version, models: policy.models.length, consumers: policy.consumers.length }, 'filter policy applied');
  }

  register(server: grpc.Server): void {
    server.addService(AUTHORIZATION_SERVICE, {
      Check: (call: grpc.ServerUnaryCall<CheckRequest, object>, done: grpc.sendUnaryData<object>) => {
        const end = latency.startTimer({ method: 'Check' });
        this.check(call.request)
          .then((res) => done(null, res), (err: unknown) => done(failure('Check', err)))
          .finally(() => end());
      },
    });
    server.addService(RATE_LIMIT_SERVICE, {
      ShouldRateLimit: (call: grpc.ServerUnaryCall<RateLimitRequest, object>, done: grpc.sendUnaryData<object>) => {
        const end = latency.startTimer({ method: 'ShouldRateLimit' });
        this.shouldRateLimit(call.request)
          .then((res) => done(null, res), (err: unknown) => done(failure('ShouldRateLimit', err)))
          .finally(() => end());
      },
    });
    server.addService(EXTERNAL_PROCESSOR_SERVICE, {
      Process: (call: grpc.ServerDuplexStream<ProcessingRequest, object>) => this.process(call),
    });
  }

  // ---- ext_authz ------------------------------------------------------------------------------------------

  async check(req: CheckRequest): Promise<object> {
    const engine = this.engine;
    if (!engine) throw unavailable('the filter service has no policy yet');
    const http = req.attributes?.request?.http;
    const model = req.attributes?.context_extensions?.[MODEL_CONTEXT];
    if (!http || !model) {
      decisions.inc({ stage: 'authz', result: 'deny', reason: 'bad_request' });
      return denied(400, jsonBody('bad_request', 'the check request has no HTTP attributes or no model'), {});
    }
    const headers = http.headers ?? {};
    const aliases = engine.aliases(model);
    const decision = await engine.authorizer.authorize({
      model,
      headers,
      ...(headers['x-model-version'] !== undefined && { pinnedVersion: headers['x-model-version'] }),
      ...(headers['x-model-alias'] !== undefined && { pinnedAlias: headers['x-model-alias'] }),
      aliasesOfVersion: (version) => Object.keys(aliases).filter((a) => aliases[a] === version),
      versionOfAlias: (alias) => aliases[alias],
    });
    const requestId = headers['x-request-id'];
    if (!decision.allow) {
      decisions.inc({ stage: 'authz', result: 'deny', reason: decision.code });
      this.options.audit.write({ kind: 'authz', model, consumer: decision.consumer, decision: 'deny', code: decision.code, status: decision.status, requestId });
      return denied(decision.status, decision.body, decision.headers);
    }
    const quota = await engine.quotas.check({ consumer: decision.consumer, model });
    if (!quota.allowed) {
      const status = quota.storeError ? 503 : 429;
      const code = quota.storeError ? 'store_unavailable' : 'token_quota_exhausted';
      decisions.inc({ stage: 'quota', result: 'deny', reason: code });
      this.options.audit.write({ kind: 'quota', model, consumer: decision.consumer, decision: 'deny', code, status, requestId });
      const message = quota.storeError ? 'the quota store is unavailable' : `token quota exhausted: ${quota.tightest?.name ?? ''}`;
      return denied(status, jsonBody(code, message, quota.retryAfterSeconds !== undefined ? { retry_after_seconds: quota.retryAfterSeconds } : {}), quota.headers);
    }
    decisions.inc({ stage: 'authz', result: 'allow', reason: decision.consumer ? 'consumer' : 'anonymous' });
    this.options.audit.write({ kind: 'authz', model, consumer: decision.consumer, decision: 'allow', requestId });
    const toSet: Record<string, string> = { ...decision.headersToSet };
    const toRemove = [...decision.headersToRemove];
    const sticky = engine.model(model)?.traffic.sticky;
    if (sticky) {
      // Never the client's own value: a caller must not choose its version through the hash.
      const key = headers[sticky.header];
      if (key) toSet[STICKY_HASH_HEADER] = stickyHash(model, key);
      else toRemove.push(STICKY_HASH_HEADER);
    }
    return {
      status: { code: grpc.status.OK },
      ok_response: { headers: setHeaders(toSet), headers_to_remove: toRemove, response_headers_to_add: setHeaders(quota.headers) },
    };
  }

  // ---- rate limit -----------------------------------------------------------------------------------------

  async shouldRateLimit(req: RateLimitRequest): Promise<object> {
    const engine = this.engine;
    if (!engine) throw unavailable('the filter service has no policy yet');
    const descriptors: RateLimitDescriptor[] = (req.descriptors ?? []).map((d) => ({ entries: (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' })) }));
    const answer = await engine.limiter.shouldRateLimit(req.domain ?? '', descriptors, req.hits_addend ?? 0);
    const entry = (key: string): string | undefined => descriptors.flatMap((d) => d.entries).find((e) => e.key === key)?.value;
    const model = entry('model') ?? '-';
    if (answer.storeError && answer.overallCode === 'OVER_LIMIT') {
      decisions.inc({ stage: 'ratelimit', result: 'error', reason: 'store_unavailable' });
      throw unavailable('the rate-limit store is unavailable');
    }
    const over = answer.overallCode === 'OVER_LIMIT';
    decisions.inc({ stage: 'ratelimit', result: over ? 'deny' : 'allow', reason: over ? 'over_limit' : 'ok' });
    this.options.audit.write({ kind: 'ratelimit', model, consumer: entry('consumer'), decision: over ? 'deny' : 'allow', ...(over && { status: 429, code: 'rate_limited' }) });
    const headers = { ...answer.headers, ...(over && { 'content-type': 'application/json' }) };
    return {
      overall_code: answer.overallCode,
      statuses: answer.statuses.map((s) => ({
        code: s.code,
        ...(s.currentLimit && { current_limit: { requests_per_unit: s.currentLimit.requestsPerUnit, unit: s.currentLimit.unit } }),
        limit_remaining: s.limitRemaining,
        duration_until_reset: { seconds: String(Math.ceil(s.durationUntilResetMs / 1000)), nanos: 0 },
      })),
      response_headers_to_add: Object.entries(headers).map(([key, value]) => ({ key, value })),
      ...(over && { raw_body: Buffer.from(jsonBody('rate_limited', 'rate limit exceeded', { retry_after_seconds: Number(answer.headers['retry-after'] ?? answer.headers['Retry-After'] ?? 0) })) }),
    };
  }

  // ---- ext_proc -------------------------------------------------------------------------------------------

  private process(call: grpc.ServerDuplexStream<ProcessingRequest, object>): void {
    const model = String(call.metadata.get(MODEL_METADATA)[0] ?? '');
    const state = new ExchangeState(model);
    // Messages are answered strictly in order: Envoy pairs each answer with the message it sent.
    let chain: Promise<void> = Promise.resolve();
    call.on('data', (msg: ProcessingRequest) => {
      chain = chain.then(async () => {
        const end = latency.startTimer({ method: 'Process' });
        try {
          const res = await this.processMessage(state, msg);
          if (!call.writableEnded) call.write(res);
        } catch (err) {
          log.error({ model, requestId: state.requestId, err: errorMessage(err) }, 'ext_proc message failed');
          if (!call.writableEnded) call.write(immediate(500, jsonBody('filter_error', 'the filter service failed on this request')));
        } finally {
          end();
        }
      });
    });
    call.on('end', () => void chain.then(() => call.end()));
    call.on('error', () => undefined);
  }

  private async processMessage(state: ExchangeState, msg: ProcessingRequest): Promise<object> {
    const engine = this.engine;
    if (!engine) return immediate(503, jsonBody('unavailable', 'the filter service has no policy yet'));
    const masking = engine.maskingOf(state.model);
    switch (msg.request) {
      case 'request_headers': {
        const headers = headerMapToRecord(msg.request_headers?.headers);
        state.consumer = headers[CONSUMER_HEADER];
        state.requestId = headers['x-request-id'];
        // A rewritten body has a new length; Envoy frames it again without the old header.
        return { request_headers: { response: masking?.request ? { header_mutation: { remove_headers: ['content-length'] } } : {} } };
      }
      case 'request_body': {
        const body = msg.request_body?.body ?? Buffer.alloc(0);
        state.requestBody = body;
        if (!masking?.request) return { request_body: { response: {} } };
        const tooLarge = checkBodySize(body.length, masking.maxBodyBytes);
        if (tooLarge) return this.refuse(state, 'request', tooLarge.status, tooLarge.error, tooLarge.message);
        const masked = masking.request.maskJson(body);
        if (!masked.ok) return this.refuse(state, 'request', masked.status, masked.error, masked.message);
        this.auditMasking(state, masked.findings);
        return masked.changed ? { request_body: { response: { body_mutation: { body: Buffer.from(masked.body) } } } } : { request_body: { response: {} } };
      }
      case 'response_headers': {
        const headers = headerMapToRecord(msg.response_headers?.headers);
        state.responseType = headers['content-type'] ?? '';
        if (state.responseType.includes('text/event-stream')) state.sse = new SseUsageReader();
        if (msg.response_headers?.end_of_stream) await this.charge(engine, state);
        return { response_headers: { response: masking?.response ? { header_mutation: { remove_headers: ['content-length'] } } : {} } };
      }
      case 'response_body': {
        const body = msg.response_body?.body ?? Buffer.alloc(0);
        const last = msg.response_body?.end_of_stream === true;
        state.observeResponse(body);
        let response: object = { response_body: { response: {} } };
        if (masking?.response && last) {
          const whole = state.responseBytes();
          const tooLarge = checkBodySize(whole.length, masking.maxBodyBytes);
          if (tooLarge) return this.refuse(state, 'response', tooLarge.status, tooLarge.error, tooLarge.message);
          const masked = state.responseType.includes('json') ? masking.response.maskJson(whole) : { ok: true as const, ...masking.response.maskText(whole.toString('utf8')) };
          if (!masked.ok) return this.refuse(state, 'response', 502, 'bad_upstream_json', 'the model answered with JSON that cannot be masked');
          this.auditMasking(state, masked.findings);
          const text = 'body' in masked ? masked.body : masked.text;
          if (masked.changed) response = { response_body: { response: { body_mutation: { body: Buffer.from(text) } } } };
        }
        if (last) await this.charge(engine, state);
        return response;
      }
      case 'request_trailers':
        return { request_trailers: {} };
      case 'response_trailers':
        return { response_trailers: {} };
      default:
        decisions.inc({ stage: 'masking', result: 'deny', reason: 'bad_request' });
        return immediate(400, jsonBody('bad_request', 'unexpected ext_proc message'));
    }
  }

  private refuse(state: ExchangeState, direction: 'request' | 'response', status: number, code: string, message: string): object {
    decisions.inc({ stage: 'masking', result: 'deny', reason: code });
    this.options.audit.write({ kind: 'masking', model: state.model, consumer: state.consumer, decision: 'deny', code: `${direction}_${code}`, status, requestId: state.requestId });
    return immediate(status, jsonBody(code, message));
  }

  private auditMasking(state: ExchangeState, findings: readonly { rule: string; path: string }[]): void {
    if (findings.length === 0) return;
    decisions.inc({ stage: 'masking', result: 'allow', reason: 'masked' });
    this.options.audit.write({ kind: 'masking', model: state.model, consumer: state.consumer, decision: 'masked', findings, requestId: state.requestId });
  }

  /** Charges the answer's token usage to the consumer's quotas (once per exchange). */
  private async charge(engine: FilterEngine, state: ExchangeState): Promise<void> {
    if (state.charged || !engine.model(state.model)) return;
    state.charged = true;
    const usage = state.usage();
    if (!usage || usage.total === 0) return;
    await engine.quotas.charge({ consumer: state.consumer, model: state.model, usage });
    this.options.audit.write({ kind: 'usage', model: state.model, consumer: state.consumer, decision: 'charged', tokens: usage, requestId: state.requestId });
  }
}

/** What one ext_proc stream (one HTTP exchange) has seen so far. */
class ExchangeState {
  consumer: string | undefined;
  requestId: string | undefined;
  requestBody: Buffer | undefined;
  responseType = '';
  sse: SseUsageReader | undefined;
  charged = false;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** Response bytes kept for usage and masking; past this, only an SSE stream is still read (incrementally). */
  private static readonly KEEP = 8 * 1024 * 1024;

  constructor(readonly model: string) {}

  observeResponse(chunk: Buffer): void {
    if (this.sse) {
      this.sse.push(chunk);
      return;
    }
    if (this.size + chunk.length <= ExchangeState.KEEP) this.chunks.push(chunk);
    this.size += chunk.length;
  }

  responseBytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Reported usage, else an estimate from the request and response text. */
  usage(): Usage | undefined {
    let reported: Usage | undefined;
    if (this.sse) {
      this.sse.end();
      reported = this.sse.result();
    } else if (this.size > 0 && this.size <= ExchangeState.KEEP) {
      reported = usageFromJson(this.responseBytes());
    }
    if (reported && !reported.estimated) return reported;
    const input = this.inputEstimate();
    const output = reported?.output ?? (this.size > 0 ? estimateTokens(this.responseBytes().toString('utf8')) : 0);
    return { input, output, total: input + output, estimated: true };
  }

  private inputEstimate(): number {
    if (!this.requestBody || this.requestBody.length === 0) return 0;
    try {
      return estimateRequestTokens(JSON.parse(this.requestBody.toString('utf8')));
    } catch {
      return estimateTokens(this.requestBody.toString('utf8'));
    }
  }
}

function denied(status: number, body: string, headers: Readonly<Record<string, string>>): object {
  return {
    status: { code: status === 401 ? grpc.status.UNAUTHENTICATED : status === 429 || status === 503 ? grpc.status.UNAVAILABLE : grpc.status.PERMISSION_DENIED, message: STATUS_NAMES[status] ?? 'denied' },
    denied_response: { status: { code: status }, headers: setHeaders({ 'content-type': 'application/json', ...headers }), body },
  };
}

function immediate(status: number, body: string): object {
  return {
    immediate_response: {
      status: { code: status },
      headers: { set_headers: setHeaders({ 'content-type': 'application/json' }) },
      body: Buffer.from(body),
      details: STATUS_NAMES[status] ?? 'refused',
    },
  };
}


