import type * as grpc from '@grpc/grpc-js';
import { Header, MODEL_METADATA_KEY, VERSION_METADATA_KEY } from '../../../src/contract/filter-wire.js';
import { errorMessage } from '../../../src/errors.js';
import type { ProcessingRequest__Output as ProcessingRequest } from '../../../src/generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
import { logger } from '../../../src/observability/log.js';
import type { Exchange, HeaderChanges, PhaseResult, ProcessorRun, Refusal } from '../../extproc/processor.js';
import { PROCESSORS, VERSION_PROCESSORS } from '../../extproc/processors/index.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { headerMapToRecord, setRawHeaders } from '../grpc.js';
import { callLatency, decisions } from '../metrics.js';
import { immediate, jsonBody } from '../responses.js';

/**
 * One ext_proc stream (one HTTP exchange): each message Envoy sends is handed to the model's processors in
 * order and answered strictly in order (Envoy pairs each answer with the message it sent). A refusal becomes
 * an immediate response; a processor that throws is logged and the exchange is refused with 500. When the
 * stream ends before the response did (client abort, upstream reset), the processors hear `aborted`.
 */

const log = logger('filters');

type Phase = 'request_headers' | 'request_body' | 'response_headers' | 'response_body';

/** Handles one Process stream with the engine current when it opened. */
export function handleProcessStream(call: grpc.ServerDuplexStream<ProcessingRequest, object>, engine: FilterEngine | undefined, audit: AuditLog): void {
  const model = String(call.metadata.get(MODEL_METADATA_KEY)[0] ?? '');
  const rules = engine?.model(model);
  // A version's cluster-level filter names its version; a route's filter does not.
  const versionValue = call.metadata.get(VERSION_METADATA_KEY)[0];
  const version = versionValue === undefined ? undefined : String(versionValue);
  const exchange: Exchange | undefined =
    engine && rules
      ? { model, version, rules, engine, audit, consumer: undefined, requestId: undefined, requestHeaders: {}, requestBody: undefined, responseStatus: undefined, responseHeaders: {} }
      : undefined;
  const runs: ProcessorRun[] = exchange ? (version === undefined ? PROCESSORS : VERSION_PROCESSORS).flatMap((p) => p.open(exchange) ?? []) : [];
  let finished = false;
  const finish = async (outcome: 'complete' | 'aborted'): Promise<void> => {
    if (finished) return;
    finished = true;
    for (const run of runs) {
      try {
        await run.end?.(outcome);
      } catch (err) {
        log.error({ model, requestId: exchange?.requestId, err: errorMessage(err) }, 'ext_proc processor failed at the end of the exchange');
      }
    }
  };

  let chain: Promise<void> = Promise.resolve();
  call.on('data', (msg: ProcessingRequest) => {
    chain = chain.then(async () => {
      const end = callLatency.startTimer({ method: 'Process' });
      try {
        const res = exchange ? await processMessage(exchange, runs, msg, finish) : immediate(503, jsonBody('unavailable', 'the filter service has no policy for this model yet'));
        if (!call.writableEnded) call.write(res);
      } catch (err) {
        log.error({ model, requestId: exchange?.requestId, err: errorMessage(err) }, 'ext_proc message failed');
        if (!call.writableEnded) call.write(immediate(500, jsonBody('filter_error', 'the filter service failed on this request')));
      } finally {
        end();
      }
    });
  });
  const close = (): void => {
    void chain.then(() => finish('aborted'));
  };
  call.on('end', () => {
    close();
    void chain.then(() => call.end());
  });
  call.on('cancelled', close);
  call.on('error', close);
}

async function processMessage(ex: Exchange, runs: readonly ProcessorRun[], msg: ProcessingRequest, finish: (o: 'complete') => Promise<void>): Promise<object> {
  switch (msg.request) {
    case 'request_headers': {
      const headers = headerMapToRecord(msg.request_headers?.headers);
      ex.requestHeaders = headers;
      ex.consumer = headers[Header.consumer];
      ex.requestId = headers[Header.requestId];
      return phaseAnswer('request_headers', await runPhase(runs, (r) => r.requestHeaders?.(headers)));
    }
    case 'request_body': {
      let body = msg.request_body?.body ?? Buffer.alloc(0);
      ex.requestBody = body;
      const out = await runPhase(runs, (r) => r.requestBody?.(body), (next) => {
        body = next;
        ex.requestBody = next;
      });
      return phaseAnswer('request_body', out);
    }
    case 'response_headers': {
      const headers = headerMapToRecord(msg.response_headers?.headers);
      const status = Number(headers[':status']);
      ex.responseStatus = Number.isInteger(status) ? status : undefined;
      ex.responseHeaders = headers;
      const eos = msg.response_headers?.end_of_stream === true;
      const out = await runPhase(runs, (r) => r.responseHeaders?.(ex.responseStatus, headers, eos));
      if (eos) await finish('complete');
      return phaseAnswer('response_headers', out);
    }
    case 'response_body': {
      let chunk = msg.response_body?.body ?? Buffer.alloc(0);
      const last = msg.response_body?.end_of_stream === true;
      const out = await runPhase(runs, (r) => r.responseBody?.(chunk, last), (next) => {
        chunk = next;
      });
      if (last) await finish('complete');
      return phaseAnswer('response_body', out);
    }
    case 'request_trailers':
      return { request_trailers: {} };
    case 'response_trailers':
      return { response_trailers: {} };
    default:
      decisions.inc({ stage: 'extproc', result: 'deny', reason: 'bad_request' });
      return immediate(400, jsonBody('bad_request', 'unexpected ext_proc message'));
  }
}

interface PhaseOutcome {
  readonly refusal: Refusal | undefined;
  readonly body: Buffer | undefined;
  readonly headers: { set: Record<string, string>; remove: string[] };
}

/** Runs one phase through every processor: bodies chain, header changes merge, the first refusal stops it. */
async function runPhase(runs: readonly ProcessorRun[], step: (run: ProcessorRun) => PhaseResult | Promise<PhaseResult>, onBody?: (body: Buffer) => void): Promise<PhaseOutcome> {
  const headers = { set: {} as Record<string, string>, remove: [] as string[] };
  let body: Buffer | undefined;
  for (const run of runs) {
    const result = await step(run);
    if (!result) continue;
    if ('refuse' in result) return { refusal: result.refuse, body: undefined, headers };
    if (result.body) {
      body = result.body;
      onBody?.(result.body);
    }
    mergeHeaders(headers, result.headers);
  }
  return { refusal: undefined, body, headers };
}

function mergeHeaders(into: { set: Record<string, string>; remove: string[] }, changes: HeaderChanges | undefined): void {
  if (!changes) return;
  Object.assign(into.set, changes.set ?? {});
  for (const h of changes.remove ?? []) if (!into.remove.includes(h)) into.remove.push(h);
}

function phaseAnswer(phase: Phase, out: PhaseOutcome): object {
  if (out.refusal) {
    const r = out.refusal;
    return immediate(r.status, r.body ?? jsonBody(r.code, r.message, r.extra), r.headers);
  }
  const response: Record<string, unknown> = {};
  const hasHeaders = Object.keys(out.headers.set).length > 0 || out.headers.remove.length > 0;
  if (hasHeaders) response.header_mutation = { ...(Object.keys(out.headers.set).length > 0 && { set_headers: setRawHeaders(out.headers.set) }), ...(out.headers.remove.length > 0 && { remove_headers: out.headers.remove }) };
  if (out.body) response.body_mutation = { body: out.body };
  return { [phase]: { response } };
}
