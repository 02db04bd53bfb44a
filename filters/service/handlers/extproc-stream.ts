import type * as grpc from '@grpc/grpc-js';
import { Header, MODEL_METADATA_KEY, VERSION_METADATA_KEY } from '../../../src/contract/filter-wire.js';
import { errorMessage } from '../../../src/errors.js';
import type { ProcessingRequest__Output as ProcessingRequest } from '../../../src/generated/envoy/service/ext_proc/v3/ProcessingRequest.js';
import { logger } from '../../../src/observability/log.js';
import { untrusted } from '../../../src/observability/untrusted.js';
import { bufferRefusals, type BudgetPhase, type BufferBudget, type ExchangeShare } from '../../extproc/buffer-budget.js';
import { overloaded, type Exchange, type ExchangeOutcome, type HeaderChanges, type PhaseResult, type ProcessorRun, type Refusal } from '../../extproc/processor.js';
import { PROCESSORS, VERSION_PROCESSORS } from '../../extproc/processors/index.js';
import type { AuditLog } from '../audit.js';
import type { FilterEngine } from '../engine.js';
import { struct } from '../../../src/proto/codec.js';
import { headerMapToRecord, setRawHeaders } from '../grpc.js';
import { callLatency, decisions } from '../metrics.js';
import { immediate, jsonBody } from '../responses.js';
import { bodyIsBuffered, decodedCap, DECODED_BODY_HEADERS, readsBody, WireBody, type Direction } from './wire-body.js';

/**
 * One ext_proc stream (one HTTP exchange): each message Envoy sends is handed to the model's processors in
 * order and answered strictly in order (Envoy pairs each answer with the message it sent). Around them:
 *  - bodies are decoded first (wire-body.ts): processors read plain bytes, a coding that cannot be read is
 *    refused, and a rewritten body goes back decoded and reframed;
 *  - every byte an exchange keeps is counted in the process-wide buffer budget; with no room, the exchange is
 *    refused with 503 (counted) instead of growing the process;
 *  - how it ended is told to the processors: an answer Envoy's earlier filters made (401, 403, 429: ext_proc
 *    sees its response but never saw the request) or a refusal on the request is `refused`, and is charged
 *    to no one; an exchange cut short is `aborted`.
 * A refusal becomes an immediate response; a processor that throws is logged and the exchange is refused
 * with 500.
 */

const log = logger('filters');

type Phase = 'request_headers' | 'request_body' | 'response_headers' | 'response_body';

/** The ext_proc attribute Envoy sends with the response headers (ExternalProcessor.response_attributes). */
const CODE_DETAILS = 'response.code_details';

/** Handles one Process stream with the engine current when it opened. */
export function handleProcessStream(call: grpc.ServerDuplexStream<ProcessingRequest, object>, engine: FilterEngine | undefined, audit: AuditLog, budget: BufferBudget): void {
  const model = String(call.metadata.get(MODEL_METADATA_KEY)[0] ?? '');
  const rules = engine?.model(model);
  // A version's cluster-level filter names its version; a route's filter does not.
  const versionValue = call.metadata.get(VERSION_METADATA_KEY)[0];
  const version = versionValue === undefined ? undefined : String(versionValue);
  const share = engine && rules ? budget.open() : undefined;
  const exchange: Exchange | undefined =
    engine && rules && share
      ? {
          model,
          version,
          rules,
          engine,
          audit,
          consumer: undefined,
          requestId: undefined,
          requestHeaders: {},
          requestBody: undefined,
          responseStatus: undefined,
          responseHeaders: {},
          responseFromUpstream: undefined,
          keep: (part, bytes) => share.resize(part, bytes),
          usage: undefined,
          startedAt: performance.now(),
          processingMs: 0,
        }
      : undefined;
  const state = exchange && share ? new StreamState(exchange, share, (version === undefined ? PROCESSORS : VERSION_PROCESSORS).flatMap((p) => p.open(exchange) ?? [])) : undefined;

  let chain: Promise<void> = Promise.resolve();
  call.on('data', (msg: ProcessingRequest) => {
    chain = chain.then(async () => {
      const end = callLatency.startTimer({ method: 'Process' });
      const started = performance.now();
      try {
        let res: object | undefined;
        if (state) res = await state.process(msg);
        else if (engine && rules) res = immediate(503, jsonBody('filter_overloaded', 'the filter service holds as many body bytes as it may; try again shortly'), { 'retry-after': '1' });
        else res = immediate(503, jsonBody('unavailable', 'the filter service has no policy for this model yet'));
        if (res && !call.writableEnded) call.write(res);
      } catch (err) {
        log.error({ model, requestId: untrusted(exchange?.requestId), err: untrusted(errorMessage(err)) }, 'ext_proc message failed');
        state?.refused(msg.request === 'request_headers' || msg.request === 'request_body' ? 'request' : 'response');
        if (!call.writableEnded) call.write(immediate(500, jsonBody('filter_error', 'the filter service failed on this request')));
      } finally {
        if (exchange) exchange.processingMs += performance.now() - started;
        end();
      }
    });
  });
  const close = (): void => {
    void chain.then(() => state?.finish('aborted'));
  };
  call.on('end', () => {
    close();
    void chain.then(() => call.end());
  });
  call.on('cancelled', close);
  call.on('error', close);
}

/** One exchange's processors, wire bodies, budget share and outcome. */
class StreamState {
  private requestSeen = false;
  /** Answered by Envoy's earlier filters: nothing to read, nothing to charge. */
  private localReply = false;
  private outcome: ExchangeOutcome | undefined;
  private finished = false;
  private answeredImmediately = false;
  private requestWire: WireBody | undefined;
  private responseWire: WireBody | undefined;

  constructor(
    private readonly ex: Exchange,
    private readonly share: ExchangeShare,
    private readonly runs: readonly ProcessorRun[],
  ) {}

  /**
   * The answer to one message, or nothing once the exchange was answered with an immediate response: Envoy
   * ends the exchange on it, and body chunks it had already sent are neither read nor counted again.
   */
  async process(msg: ProcessingRequest): Promise<object | undefined> {
    if (this.answeredImmediately) return undefined;
    const answer = await this.answer(msg);
    if ('immediate_response' in answer) this.refused(msg.request === 'request_headers' || msg.request === 'request_body' ? 'request' : 'response');
    return answer;
  }

  /** The exchange was answered with a refusal: on the request nobody did any work; on the answer the upstream did. */
  refused(direction: Direction): void {
    this.answeredImmediately = true;
    this.outcome ??= direction === 'request' ? 'refused' : 'aborted';
  }

  /** Ends the exchange once: processors hear how, the budget gets its bytes back. */
  async finish(outcome: ExchangeOutcome): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    const final = this.localReply ? 'refused' : (this.outcome ?? outcome);
    this.requestWire?.close();
    this.responseWire?.close();
    for (const run of this.runs) {
      try {
        await run.end?.(final);
      } catch (err) {
        log.error({ model: this.ex.model, requestId: this.ex.requestId, err: errorMessage(err) }, 'ext_proc processor failed at the end of the exchange');
      }
    }
    this.share.release();
  }

  private async answer(msg: ProcessingRequest): Promise<object> {
    const ex = this.ex;
    const bodies = ex.rules.bodies;
    switch (msg.request) {
      case 'request_headers': {
        this.requestSeen = true;
        const headers = headerMapToRecord(msg.request_headers?.headers);
        ex.requestHeaders = headers;
        ex.consumer = headers[Header.consumer];
        ex.requestId = headers[Header.requestId];
        this.requestWire = new WireBody('request', headers['content-encoding'], decodedCap(ex.engine, ex.model, 'request'));
        const unreadable = readsBody(bodies, 'request') ? this.requestWire.unsupported() : undefined;
        if (unreadable) return this.refusal('request_headers', unreadable);
        return phaseAnswer('request_headers', await runPhase(this.runs, (r) => r.requestHeaders?.(headers)));
      }
      case 'request_body': {
        const wire = (this.requestWire ??= new WireBody('request', undefined, decodedCap(ex.engine, ex.model, 'request')));
        const read = await wire.read(msg.request_body?.body ?? Buffer.alloc(0), true);
        if ('refuse' in read) return this.refusal('request_body', read.refuse);
        // The request body is kept for the whole exchange (token estimates read it at the end).
        if (!ex.keep('request', read.body.length)) return this.overBudget('request_body');
        let body = read.body;
        ex.requestBody = body;
        const out = await runPhase(this.runs, (r) => r.requestBody?.(body), (next) => {
          body = next;
          ex.requestBody = next;
          // A rewritten body replaces the one kept; masking changes its size by little, so this one may go over.
          ex.keep('request', next.length);
        });
        return phaseAnswer('request_body', this.reframed(out, wire, 'request'));
      }
      case 'response_headers': {
        const headers = headerMapToRecord(msg.response_headers?.headers);
        const status = Number(headers[':status']);
        ex.responseStatus = Number.isInteger(status) ? status : undefined;
        ex.responseHeaders = headers;
        const details = codeDetails(msg.attributes);
        if (details !== undefined) ex.responseFromUpstream = details === 'via_upstream';
        const eos = msg.response_headers?.end_of_stream === true;
        if (!this.requestSeen) {
          // A reply Envoy's authorization or rate-limit filter made before ext_proc saw the request.
          this.localReply = true;
          if (eos) await this.finish('complete');
          return { response_headers: { response: {} } };
        }
        this.responseWire = new WireBody('response', headers['content-encoding'], decodedCap(ex.engine, ex.model, 'response'));
        const unreadable = readsBody(bodies, 'response') ? this.responseWire.unsupported() : undefined;
        if (unreadable) return this.refusal('response_headers', unreadable);
        const out = await runPhase(this.runs, (r) => r.responseHeaders?.(ex.responseStatus, headers, eos));
        if (eos) await this.finish('complete');
        return phaseAnswer('response_headers', out);
      }
      case 'response_body': {
        const last = msg.response_body?.end_of_stream === true;
        if (this.localReply) {
          if (last) await this.finish('complete');
          return { response_body: { response: {} } };
        }
        const wire = (this.responseWire ??= new WireBody('response', undefined, decodedCap(ex.engine, ex.model, 'response')));
        const read = await wire.read(msg.response_body?.body ?? Buffer.alloc(0), last);
        if ('refuse' in read) return this.refusal('response_body', read.refuse);
        let chunk = read.body;
        const out = await runPhase(this.runs, (r) => r.responseBody?.(chunk, last), (next) => {
          chunk = next;
        });
        if (out.refusal?.code === 'filter_overloaded') bufferRefusals.inc({ phase: 'response_body' });
        const answer = phaseAnswer('response_body', this.reframed(out, wire, 'response'));
        if (last) await this.finish('complete');
        return answer;
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

  /**
   * A body the processors rewrote replaces an encoded one decoded: Envoy must drop the content-encoding and
   * the length. Only a buffered body's answer can change headers; an encoded stream is read, never rewritten.
   */
  private reframed(out: PhaseOutcome, wire: WireBody, direction: Direction): PhaseOutcome {
    if (out.refusal || !out.body || !wire.encoded) return out;
    if (!bodyIsBuffered(this.ex.rules.bodies, direction)) throw new Error(`a processor rewrote an encoded ${direction} stream, which cannot be reframed`);
    for (const h of DECODED_BODY_HEADERS) if (!out.headers.remove.includes(h)) out.headers.remove.push(h);
    return out;
  }

  private refusal(phase: Phase, refusal: Refusal): object {
    decisions.inc({ stage: 'extproc', result: 'deny', reason: refusal.code });
    this.ex.audit.write({ kind: 'body', model: this.ex.model, consumer: this.ex.consumer, decision: 'deny', code: refusal.code, status: refusal.status, requestId: this.ex.requestId });
    return phaseAnswer(phase, { refusal, body: undefined, headers: { set: {}, remove: [] } });
  }

  private overBudget(phase: BudgetPhase & Phase): object {
    bufferRefusals.inc({ phase });
    return this.refusal(phase, overloaded());
  }
}

/** The `response.code_details` Envoy attached (`via_upstream` for an upstream's answer), if any. */
function codeDetails(attributes: ProcessingRequest['attributes'] | undefined): string | undefined {
  for (const struct of Object.values(attributes ?? {})) {
    const value = (struct as { fields?: Record<string, { stringValue?: string; string_value?: string }> } | null)?.fields?.[CODE_DETAILS];
    const text = value?.stringValue ?? value?.string_value;
    if (typeof text === 'string') return text;
  }
  return undefined;
}

interface PhaseOutcome {
  readonly refusal: Refusal | undefined;
  readonly body: Buffer | undefined;
  readonly headers: { set: Record<string, string>; remove: string[] };
  /** The processing mode for the rest of the exchange (headers phases only). */
  readonly modeOverride?: object;
  readonly metadata?: Record<string, Record<string, unknown>>;
}

/** Runs one phase through every processor: bodies chain, header changes merge, the first refusal stops it. */
async function runPhase(runs: readonly ProcessorRun[], step: (run: ProcessorRun) => PhaseResult | Promise<PhaseResult>, onBody?: (body: Buffer) => void): Promise<PhaseOutcome> {
  const headers = { set: {} as Record<string, string>, remove: [] as string[] };
  let body: Buffer | undefined;
  let modeOverride: object | undefined;
  let metadata: Record<string, Record<string, unknown>> | undefined;
  for (const run of runs) {
    const result = await step(run);
    if (!result) continue;
    if ('refuse' in result) return { refusal: result.refuse, body: undefined, headers };
    if (result.body) {
      body = result.body;
      onBody?.(result.body);
    }
    mergeHeaders(headers, result.headers);
    if ('modeOverride' in result && result.modeOverride) modeOverride = result.modeOverride;
    if ('metadata' in result && result.metadata) {
      metadata ??= {};
      for (const [ns, fields] of Object.entries(result.metadata)) metadata[ns] = { ...metadata[ns], ...fields };
    }
  }
  return { refusal: undefined, body, headers, ...(modeOverride && { modeOverride }), ...(metadata && { metadata }) };
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
  // An empty body drops the chunk: empty bytes are not encoded, so Envoy is told to clear it.
  if (out.body) response.body_mutation = out.body.length === 0 ? { clear_body: true } : { body: out.body };
  return { [phase]: { response }, ...(out.modeOverride && { mode_override: out.modeOverride }), ...(out.metadata && { dynamic_metadata: struct(out.metadata) }) };
}
