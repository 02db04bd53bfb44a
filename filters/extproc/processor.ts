import type { ModelRules } from '../../src/contract/filter-policy.js';
import type { AuditLog } from '../service/audit.js';
import type { FilterEngine } from '../service/engine.js';

/**
 * The ext_proc work for one HTTP exchange is a chain of processors (masking, token usage, and the LLM
 * features after them), each in one file under processors/. The stream handler opens every processor for
 * the exchange's model, feeds each phase to them in order, applies the body and header changes they make
 * (each one sees the body as the processors before it left it), and stops at the first refusal.
 */

/** What the processors of one exchange share: its model, its caller and what has been seen so far. */
export interface Exchange {
  readonly model: string;
  /**
   * The model version, on the stream of a version's cluster-level ext_proc (signature validation, protocol
   * conversion); undefined on a route's stream, whose processors run before Envoy picks the version.
   */
  readonly version?: string | undefined;
  readonly rules: ModelRules;
  readonly engine: FilterEngine;
  readonly audit: AuditLog;
  consumer: string | undefined;
  requestId: string | undefined;
  /** Request headers (lower-cased names), once seen. */
  requestHeaders: Readonly<Record<string, string>>;
  /** The request body as it goes upstream (after every processor's changes), once seen. */
  requestBody: Buffer | undefined;
  /** The response's HTTP status and headers, once seen. */
  responseStatus: number | undefined;
  responseHeaders: Readonly<Record<string, string>>;
  /** Whether the answer came from the upstream (false: Envoy made it, e.g. a timeout); undefined until known or when Envoy does not say. */
  responseFromUpstream: boolean | undefined;
  /**
   * Tells the filter service's buffer budget that `part` now keeps `bytes` (0 when it lets go). False means
   * there is no room: the processor must not keep them, and should refuse with `overloaded()`.
   */
  keep(part: string, bytes: number): boolean;
  /**
   * The exchange's token usage and cost, once the usage processor has settled them (at the last response
   * byte, or at the end of an exchange cut short); later processors read it.
   */
  usage: SettledUsage | undefined;
  /** performance.now() when the request headers arrived. */
  readonly startedAt: number;
  /** Milliseconds the filter service spent on this exchange's messages so far (its own time, no waiting). */
  processingMs: number;
}

/** What an exchange used and cost, and on which model and version (the ones that served it). */
export interface SettledUsage {
  readonly input: number;
  readonly output: number;
  readonly total: number;
  readonly estimated: boolean;
  readonly model: string;
  readonly version: string | undefined;
  readonly cost: { readonly amount: number; readonly currency: string } | undefined;
}

/**
 * How an exchange ended: `complete` after the last response byte; `aborted` when it ended before that
 * (client gone, upstream reset, an answer refused after the upstream made it); `refused` when it was answered
 * without the upstream doing any work (a refusal of Envoy's own filters or of a processor on the request).
 */
export type ExchangeOutcome = 'complete' | 'aborted' | 'refused';

/** A refusal: Envoy answers the client with this instead of going on. */
export interface Refusal {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly extra?: Readonly<Record<string, unknown>>;
  /** The whole answer body, when it is not Flowgate's `{error, message}` (an answer in the model's own protocol). */
  readonly body?: string;
}

/** The refusal of an exchange the buffer budget has no room for. */
export function overloaded(): Refusal {
  return { status: 503, code: 'filter_overloaded', message: 'the filter service holds as many body bytes as it may; try again shortly', headers: { 'retry-after': '1' } };
}

/** Header changes for the message being processed. */
export interface HeaderChanges {
  readonly set?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

/** What a processor does with one phase: nothing, change the body and/or headers, or refuse. */
export type PhaseResult =
  | void
  | { readonly refuse: Refusal }
  | {
      readonly body?: Buffer;
      readonly headers?: HeaderChanges;
      readonly modeOverride?: object;
      /** Envoy dynamic metadata to set, by namespace (the routes' ext_proc filter must accept the namespace). */
      readonly metadata?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
    };

/** One processor's handling of one exchange; every hook is optional. */
export interface ProcessorRun {
  requestHeaders?(headers: Readonly<Record<string, string>>): PhaseResult | Promise<PhaseResult>;
  /** The whole request body (routes buffer it). */
  requestBody?(body: Buffer): PhaseResult | Promise<PhaseResult>;
  responseHeaders?(status: number | undefined, headers: Readonly<Record<string, string>>, endOfStream: boolean): PhaseResult | Promise<PhaseResult>;
  /**
   * A response chunk (streamed routes) or the whole response (buffered routes, `last` true). An empty body
   * drops the chunk. A `modeOverride` returned from a headers hook changes the rest of the exchange's
   * processing mode (the routes' filter allows it where a processor needs it).
   */
  responseBody?(chunk: Buffer, last: boolean): PhaseResult | Promise<PhaseResult>;
  /** The exchange is over (see ExchangeOutcome). */
  end?(outcome: ExchangeOutcome): void | Promise<void>;
}

export interface Processor {
  readonly name: string;
  /** A run for this exchange, or undefined when the processor has nothing to do for its model. */
  open(exchange: Exchange): ProcessorRun | undefined;
}
