import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { untrusted } from '../../src/observability/untrusted.js';
import { auditDropped } from './metrics.js';

/**
 * The audit log: one JSON line per authorization, rate-limit, quota, masking, signature and pipeline decision, to stdout or a file
 * (Gateway.audit). It names the model, the consumer, the decision and why, the request id, and for masking
 * the rule and JSON path that fired; never a credential, and never a value that was masked. Which decisions
 * are written is the operator's choice (`flowgate filters --audit-decisions all|deny|none`,
 * `--audit-sample-allows`): refusals and masking findings are written unless `none`.
 */

export interface AuditEvent {
  readonly kind: 'authz' | 'ratelimit' | 'quota' | 'masking' | 'usage' | 'body' | 'signature' | 'pipeline' | 'guardrail' | 'budget' | 'prompt';
  readonly model: string;
  /** The model version (signature checks), or the failed step (pipelines). */
  readonly version?: string;
  readonly step?: string;
  readonly consumer?: string | undefined;
  readonly decision: 'allow' | 'deny' | 'masked' | 'charged';
  readonly code?: string;
  readonly status?: number;
  readonly requestId?: string | undefined;
  readonly findings?: readonly { readonly rule: string; readonly path: string }[];
  readonly tokens?: { readonly input: number; readonly output: number; readonly total: number; readonly estimated: boolean };
  /** Guardrails: the rule that fired and on which side (never the text it matched). */
  readonly rule?: string;
  readonly direction?: 'input' | 'output';
  readonly action?: 'block' | 'mask' | 'monitor';
  /** Usage of a priced model: the answer's cost, in the price table's currency. */
  readonly cost?: number;
  readonly currency?: string;
  /** Budgets: the budget that refused (as written in the policy). */
  readonly budget?: string | undefined;
  /** Prompts: the prompt version rendered into the request, NAME/VERSION. */
  readonly prompt?: string;
  /** Usage: how the exchange ended (an aborted one is charged an estimate). */
  readonly outcome?: 'complete' | 'aborted';
}

export interface AuditLog {
  write(event: AuditEvent): void;
}

/** Which decisions are written: every one, only refusals (and masking findings), or none. */
export type AuditDecisions = 'all' | 'deny' | 'none';

export const AUDIT_DECISIONS: readonly AuditDecisions[] = ['all', 'deny', 'none'];

export interface AuditOptions {
  /** Default `all`. */
  readonly decisions?: AuditDecisions | undefined;
  /** With `all`: the fraction of allowed (and charged) decisions written, 0..1 (default 1); refusals are always written. */
  readonly sampleAllows?: number | undefined;
  /** The random source of the sampling (tests). */
  readonly random?: () => number;
}

/** Lines are written once this many bytes are buffered, or every AUDIT_FLUSH_MS, whichever comes first. */
const AUDIT_BUFFER_BYTES = 8 * 1024;
const AUDIT_FLUSH_MS = 200;
/** Past this many buffered bytes (the sink does not keep up), new lines are dropped and counted. */
const AUDIT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/**
 * An audit log to stdout or to an absolute file path (appended). Lines are buffered and written in batches
 * (one write per 8 KB or per 200 ms, and whatever is left when the process exits), never one synchronous
 * write per decision; a sink that cannot keep up loses lines (counted in flowgate_audit_dropped_total) rather
 * than growing the process.
 */
export function openAuditLog(sink: 'stdout' | 'file', path?: string, options: AuditOptions = {}): AuditLog {
  const select = auditSelector(options);
  if (select === undefined) return { write: () => undefined };
  // Buffers, not strings: in its string mode the sink appends each line to the last buffered string and
  // measures that string's byte length, which flattens it, up to 8 KB copied per line (a fifth of what
  // a ShouldRateLimit call allocated). Here each line is copied once, into a shared chunk (lineBytes).
  const buffering = { sync: false, minLength: AUDIT_BUFFER_BYTES, maxLength: AUDIT_MAX_BUFFERED_BYTES, periodicFlush: AUDIT_FLUSH_MS, contentMode: 'buffer' as const };
  let destination: ReturnType<typeof pino.destination>;
  if (sink === 'file' && path) {
    mkdirSync(dirname(path), { recursive: true });
    destination = pino.destination({ dest: path, append: true, mkdir: true, ...buffering });
  } else {
    destination = pino.destination({ fd: 1, ...buffering });
  }
  destination.on('drop', () => auditDropped.inc());
  // pino.destination flushes what is buffered when the process exits; the lines are built by auditLine.
  // The request id is the client's x-request-id when Envoy keeps it: cut like any text a client chose.
  return {
    write: (event) => {
      if (!select(event)) return;
      // (typed for strings; in buffer mode the sink takes the bytes as given)
      destination.write(lineBytes(auditLine(event.requestId === undefined ? event : { ...event, requestId: untrusted(event.requestId) })) as unknown as string);
    },
  };
}

/** Lines are copied into chunks of this size, each handed to the sink as a view; a full chunk is never reused. */
const LINE_CHUNK_BYTES = 64 * 1024;
let chunk = Buffer.allocUnsafe(LINE_CHUNK_BYTES);
let chunkUsed = 0;

/** The line's UTF-8 bytes: a view into the current chunk (a long line gets its own buffer). */
export function lineBytes(line: string): Buffer {
  const length = Buffer.byteLength(line);
  if (length > LINE_CHUNK_BYTES / 4) return Buffer.from(line, 'utf8');
  if (chunkUsed + length > LINE_CHUNK_BYTES) {
    chunk = Buffer.allocUnsafe(LINE_CHUNK_BYTES);
    chunkUsed = 0;
  }
  const start = chunkUsed;
  chunkUsed += chunk.write(line, start, 'utf8');
  return chunk.subarray(start, chunkUsed);
}

/** `{"level":"info","time":"` + the ISO time of the millisecond it was last asked for (lines in one ms share it). */
let clockMs = Number.NaN;
let linePrefix = '';

/**
 * One audit line, with the fields and order pino wrote them in before (`level`, `time`, `log`, then the
 * event's fields as given): the event is serialised by JSON.stringify in one native call instead of pino's
 * per-field serialisation, and the time string is built once per millisecond.
 */
export function auditLine(event: AuditEvent, now: number = Date.now()): string {
  if (now !== clockMs) {
    clockMs = now;
    linePrefix = `{"level":"info","time":"${new Date(now).toISOString()}","log":"flowgate.audit"`;
  }
  const fields = JSON.stringify(event);
  return fields.length > 2 ? `${linePrefix},${fields.slice(1)}\n` : `${linePrefix}}\n`;
}

/** Whether an event is written under these options; undefined when none ever is. */
export function auditSelector(options: AuditOptions): ((event: AuditEvent) => boolean) | undefined {
  const decisions = options.decisions ?? 'all';
  const sample = options.sampleAllows ?? 1;
  if (!(sample >= 0 && sample <= 1)) throw new RangeError(`the audit sampling of allowed decisions is a fraction from 0 to 1 (got ${sample})`);
  if (decisions === 'none') return undefined;
  const random = options.random ?? Math.random;
  const allowed = (event: AuditEvent): boolean => event.decision === 'allow' || event.decision === 'charged';
  if (decisions === 'deny' || sample === 0) return (event) => !allowed(event);
  if (sample === 1) return () => true;
  return (event) => !allowed(event) || random() < sample;
}

/** An audit log that keeps events in memory (tests, benchmarks). */
export class MemoryAuditLog implements AuditLog {
  readonly events: AuditEvent[] = [];
  write(event: AuditEvent): void {
    this.events.push(event);
  }
}
