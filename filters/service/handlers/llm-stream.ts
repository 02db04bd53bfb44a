import type * as grpc from '@grpc/grpc-js';
import { API_METADATA_KEY, apiKindOf, ExtprocRole, LLM_ENDPOINT_METADATA_KEY, LLM_ENDPOINTS } from '../../../src/contract/filter-wire.js';
import { errorMessage } from '../../../src/errors.js';
import type { ProcessingRequest__Output as ProcessingRequest } from '../../../src/generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
import { logger } from '../../../src/observability/log.js';
import { AdapterRun } from '../../llm/adapter.js';
import { errorReply, processingResponse, type LlmAnswer } from '../../llm/answers.js';
import { llmCatalog } from '../../llm/catalog.js';
import type { Cooldowns } from '../../llm/cooldown.js';
import type { Credentials } from '../../llm/credentials.js';
import { RouterRun } from '../../llm/router.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { headerMapToRecord } from '../grpc.js';
import { callLatency, llmCacheResults } from '../metrics.js';
import type { AnswerCaches } from '../../llm/cache.js';

/**
 * One ext_proc stream of the LLM router (in front of the OpenAI API's routes) or of the LLM adapter (in an
 * LLM cluster's upstream filters, one stream per attempt). Messages are answered strictly in order; a failure
 * of the gateway's own is a 500 (router) or 503 (adapter, so a fallback chain moves on) in the API's shape.
 *
 * The stream is ended from here as soon as no message can follow (the router after the body, the adapter
 * after the last phase its mode asked for): Envoy then lets the exchange go on without the filter service.
 * Left open, Envoy resets each stream when its request ends, and at a few dozen resets a second the HTTP/2
 * stack of the filter service takes the flood of RST_STREAMs for a rapid-reset attack and drops the whole
 * connection, with every exchange on it.
 */

const log = logger('filters');

/** What the LLM streams share across requests: the cooldowns their adapters start and the router reads, and the key reader. */
export interface LlmState {
  readonly cooldowns: Cooldowns;
  readonly credentials: Credentials;
  /** The answer caches of the models with `llm.cache`. */
  readonly answers: AnswerCaches;
  /** The audit log (the router writes the prompt version it rendered). */
  readonly audit?: AuditLog;
}

type Role = (typeof ExtprocRole)[keyof typeof ExtprocRole];

/** The string values of the ext_proc attributes Envoy sent (`attributes['envoy.filters.http.ext_proc']`). */
function attributeStrings(msg: ProcessingRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const struct of Object.values(msg.attributes ?? {})) {
    for (const [key, value] of Object.entries(struct?.fields ?? {})) if (typeof value?.stringValue === 'string') out[key] = value.stringValue;
  }
  return out;
}

/** Handles one Process stream of an LLM role with the engine current when it opened. */
export function handleLlmStream(call: grpc.ServerDuplexStream<ProcessingRequest, object>, engine: FilterEngine | undefined, role: Role, state: LlmState): void {
  const api = apiKindOf(call.metadata.get(API_METADATA_KEY)[0] ?? 'openai');
  const catalog = engine && llmCatalog(engine);
  const endpoint = LLM_ENDPOINTS.find((e) => e === String(call.metadata.get(LLM_ENDPOINT_METADATA_KEY)[0] ?? ''));
  const router = engine && catalog && role === ExtprocRole.llmRouter ? new RouterRun(engine, catalog, state.cooldowns, api === 'flowgate' ? 'openai' : api, endpoint, state.audit) : undefined;
  const adapter = catalog && role === ExtprocRole.llmUpstream ? new AdapterRun(catalog, state.cooldowns, state.credentials, state.answers, (model, result) => llmCacheResults.inc({ model, result })) : undefined;
  const failed = (status: number): LlmAnswer => errorReply(api === 'flowgate' ? 'openai' : api, status, 'gateway_error', 'the gateway failed on this request');

  const answer = async (msg: ProcessingRequest): Promise<object> => {
    const phase = msg.request;
    if (phase !== 'request_headers' && phase !== 'request_body' && phase !== 'response_headers' && phase !== 'response_body') {
      return phase === 'request_trailers' ? { request_trailers: {} } : { response_trailers: {} };
    }
    if (!router && !adapter) return processingResponse(phase, errorReply('openai', 503, 'unavailable', 'the filter service has no policy yet'));
    let out: LlmAnswer;
    switch (phase) {
      case 'request_headers': {
        const headers = headerMapToRecord(msg.request_headers?.headers);
        out = router ? await router.requestHeaders(headers, msg.request_headers?.end_of_stream === true) : (adapter as AdapterRun).requestHeaders(headers, attributeStrings(msg));
        break;
      }
      case 'request_body':
        out = router ? router.requestBody(msg.request_body?.body ?? Buffer.alloc(0)) : await (adapter as AdapterRun).requestBody(msg.request_body?.body ?? Buffer.alloc(0));
        break;
      case 'response_headers': {
        const headers = headerMapToRecord(msg.response_headers?.headers);
        const status = Number(headers[':status']);
        out = adapter ? adapter.responseHeaders(Number.isInteger(status) ? status : undefined, headers, msg.response_headers?.end_of_stream === true) : { kind: 'continue' };
        break;
      }
      case 'response_body':
        out = adapter ? await adapter.responseBody(msg.response_body?.body ?? Buffer.alloc(0)) : { kind: 'continue' };
        break;
    }
    return processingResponse(phase, out);
  };

  let chain: Promise<void> = Promise.resolve();
  call.on('data', (msg: ProcessingRequest) => {
    chain = chain.then(async () => {
      const end = callLatency.startTimer({ method: role === ExtprocRole.llmRouter ? 'LlmRoute' : 'LlmAdapt' });
      try {
        const res = await answer(msg);
        if (!call.writableEnded) call.write(res);
        if ('immediate_response' in res || router?.finished === true || adapter?.finished === true) call.end();
      } catch (err) {
        log.error({ role, err: errorMessage(err) }, 'LLM ext_proc message failed');
        if (!call.writableEnded) {
          call.write(processingResponse('request_headers', failed(router ? 500 : 503)));
          call.end();
        }
      } finally {
        end();
      }
    });
  });
  call.on('end', () => {
    void chain.then(() => {
      if (!call.writableEnded) call.end();
    });
  });
}
